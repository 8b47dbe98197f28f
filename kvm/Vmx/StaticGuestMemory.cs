using System.Threading;
using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// Guest RAM backed by one physically contiguous allocation, mapped into EPT on demand: each EPT
    /// violation inside RAM installs the 4 KiB leaf for that page (EPT tables per SDM Vol. 3C 29.3.2,
    /// tables 29-1 to 29-6). Used while the mm-backed EPT shadow is not wired into the kernel.
    /// </summary>
    public sealed unsafe class StaticGuestMemory : IGuestMemory
    {
        private const ulong ReadWriteExecute = 7, WriteBack = 6UL << 3;
        private const ulong AddressMask = 0x000F_FFFF_FFFF_F000;

        private readonly ulong _backing;
        private readonly ulong _size;
        private readonly ulong _root;
        private ulong _faults;

        public static StaticGuestMemory? Create(ulong size)
        {
            ulong backing = KvmHost.AllocatePages(size / 4096);
            ulong root = KvmHost.AllocatePage();
            if (backing == 0 || root == 0)
                return null;
            return new StaticGuestMemory(backing, size, root);
        }

        private StaticGuestMemory(ulong backing, ulong size, ulong root)
        {
            _backing = backing;
            _size = size;
            _root = root;
        }

        // Write-back memory type, 4-level walk (length - 1 = 3), accessed/dirty flags enabled (bit 6).
        public ulong EptPointer => _root | 6 | (3 << 3) | (1 << 6);

        public ulong Size => _size;

        public ulong FaultsHandled => Volatile.Read(ref _faults);

        public ulong HostPhysical(ulong gpa) => _backing + gpa;

        public byte* HostPointer(ulong gpa) => gpa < _size ? (byte*)(_backing + gpa) : null;

        public string? HandleViolation(ulong gpa, ulong qualification)
        {
            if (gpa >= _size)
                return "EPT violation outside guest RAM";
            ulong* leaf = Walk(gpa, create: true);
            if (leaf == null)
                return "out of memory for EPT tables";
            *leaf = ((_backing + gpa) & AddressMask) | ReadWriteExecute | WriteBack;
            _faults++;
            return null;
        }

        /// <summary>The leaf entry for <paramref name="gpa"/>, creating the tables on the way if asked.</summary>
        public ulong* Walk(ulong gpa, bool create)
        {
            ulong* table = (ulong*)_root;
            for (int level = 3; level > 0; level--)
            {
                ulong* entry = table + ((gpa >> (12 + 9 * level)) & 511);
                if ((*entry & ReadWriteExecute) == 0)
                {
                    if (!create)
                        return null;
                    ulong page = KvmHost.AllocatePage();
                    if (page == 0)
                        return null;
                    *entry = page | ReadWriteExecute;
                }
                table = (ulong*)(*entry & AddressMask);
            }
            return table + ((gpa >> 12) & 511);
        }

        private const ulong Accessed = 1UL << 8, Dirty = 1UL << 9;

        public ulong InveptCount;
        public ulong DirtyPagesSeen;

        /// <summary>
        /// Zaps the leaves of [start, end) without a lock (the CPU may be setting A/D on them: the
        /// exchange returns the final value, pairing with the hardware's atomic A/D update), notes
        /// dirty pages, then issues one single-context INVEPT for the range.
        /// </summary>
        public int Invalidate(ulong start, ulong end)
        {
            int zapped = 0;
            for (ulong gpa = start & ~0xFFFUL; gpa < end; gpa += 4096)
            {
                ulong* leaf = Walk(gpa, create: false);
                if (leaf == null)
                    continue;
                ulong old = Interlocked.Exchange(ref *leaf, 0);
                if (old == 0)
                    continue;
                zapped++;
                if ((old & Dirty) != 0)
                    DirtyPagesSeen++;
            }
            if (zapped > 0)
                InvalidateEptTlb();
            return zapped;
        }

        /// <summary>INVEPT single-context for this EPT (SDM Vol. 3C 31.3, type 1).</summary>
        public void InvalidateEptTlb()
        {
            ulong* descriptor = stackalloc ulong[2];
            descriptor[0] = EptPointer;
            descriptor[1] = 0;
            Native.InvEpt(1, descriptor);
            InveptCount++;
        }

        /// <summary>Clears the accessed bit of every present leaf in [start, end); returns how many were young.</summary>
        public int ClearYoung(ulong start, ulong end)
        {
            int young = 0;
            for (ulong gpa = start & ~0xFFFUL; gpa < end; gpa += 4096)
            {
                ulong* leaf = Walk(gpa, create: false);
                if (leaf == null)
                    continue;
                // Atomic AND: the CPU may set A/D concurrently; pairs with the hardware's locked update.
                ulong old = Interlocked.And(ref *leaf, ~Accessed);
                if ((old & Accessed) != 0)
                    young++;
            }
            if (young > 0)
                InvalidateEptTlb();   // cached translations would otherwise not set A again
            return young;
        }

        /// <summary>Whether the page's leaf has the accessed bit the CPU sets on use.</summary>
        public bool TestYoung(ulong gpa)
        {
            ulong* leaf = Walk(gpa, create: false);
            return leaf != null && (Volatile.Read(ref *leaf) & Accessed) != 0;
        }
    }
}
