using Tandem.Arch.X86;

namespace Tandem.Kernel.Memory
{
    /// <summary>
    /// Adjustments to the boot stub's identity map (0-4 GiB in 2 MiB pages): the local APIC's page
    /// must be uncached (Intel SDM Vol. 3A, 12.4.1), so its 2 MiB entry gets PCD|PWT.
    /// </summary>
    public static unsafe class BootPaging
    {
        private const ulong Present = 1, PageWriteThrough = 1 << 3, PageCacheDisable = 1 << 4, Huge = 1 << 7;
        private const ulong AddressMask = 0x000F_FFFF_FFFF_F000;

        public static void MakeUncached(ulong physical)
        {
            ulong* pml4 = (ulong*)(Native.ReadCr3() & AddressMask);
            ulong pml4e = pml4[(physical >> 39) & 511];
            if ((pml4e & Present) == 0)
                return;
            ulong* pdpt = (ulong*)(pml4e & AddressMask);
            ulong pdpte = pdpt[(physical >> 30) & 511];
            if ((pdpte & Present) == 0 || (pdpte & Huge) != 0)
                return;
            ulong* pd = (ulong*)(pdpte & AddressMask);
            ref ulong pde = ref pd[(physical >> 21) & 511];
            if ((pde & (Present | Huge)) != (Present | Huge))
                return;
            pde |= PageCacheDisable | PageWriteThrough;
            Native.InvLpg(physical & ~0x1FFFFFUL);
        }
    }
}
