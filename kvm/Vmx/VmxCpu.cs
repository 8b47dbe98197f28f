using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// Turns VMX operation on for the current CPU (Intel SDM Vol. 3C, 24.7 "Enabling and entering
    /// VMX operation"): checks CPUID and IA32_FEATURE_CONTROL, applies the CR0/CR4 fixed bits
    /// (appendix A.7, A.8), and executes VMXON on a region stamped with the VMCS revision id.
    /// </summary>
    public static unsafe class VmxCpu
    {
        private const int MaxCpus = 64;
        private static ulong* s_regions;

        public static uint RevisionId => (uint)(Native.ReadMsr(VmxFeatures.MsrVmxBasic) & 0x7FFF_FFFF);

        /// <summary>Returns null on success or the reason VMX cannot be used on this CPU.</summary>
        public static string? Enable()
        {
            int cpu = KvmHost.CurrentCpu();
            if (s_regions == null)
                s_regions = (ulong*)KvmHost.AllocatePage();
            if (s_regions[cpu] != 0)
                return null;                                  // already on
            if ((Native.CpuId(1).Ecx & (1u << 5)) == 0)
                return "this CPU has no VT-x (CPUID.1:ECX.VMX is 0)";
            ulong control = Native.ReadMsr(VmxFeatures.MsrFeatureControl);
            if ((control & 1) != 0 && (control & 4) == 0)
                return "IA32_FEATURE_CONTROL is locked with VMX disabled: enable \"Intel Virtualization Technology\" (VT-x) in the firmware setup";
            if ((control & 1) == 0)
                Native.WriteMsr(VmxFeatures.MsrFeatureControl, control | 1 | 4);   // enable VMX outside SMX, then lock

            ulong cr0 = Native.ReadCr0();
            cr0 |= Native.ReadMsr(0x486);                     // IA32_VMX_CR0_FIXED0: bits that must be 1
            cr0 &= Native.ReadMsr(0x487);                     // IA32_VMX_CR0_FIXED1: bits that may be 1
            Native.WriteCr0(cr0);
            ulong cr4 = Native.ReadCr4() | (1UL << 13);       // CR4.VMXE
            cr4 |= Native.ReadMsr(0x488);
            cr4 &= Native.ReadMsr(0x489);
            Native.WriteCr4(cr4);

            ulong region = KvmHost.AllocatePage();
            if (region == 0)
                return "out of memory for the VMXON region";
            *(uint*)region = RevisionId;
            int status = Native.VmxOn(region);
            if (status != 0)
            {
                KvmHost.FreePages(region, 1);
                return status == 1 ? "VMXON failed (VMfailInvalid)" : "VMXON failed (VMfailValid)";
            }
            s_regions[cpu] = region;
            return null;
        }

        /// <summary>INVVPID has the single-context type (IA32_VMX_EPT_VPID_CAP bit 41); without it <see cref="Vcpu"/> uses all-context (bit 42).</summary>
        public static bool InvVpidSingleContext => (Native.ReadMsr(VmxFeatures.MsrEptVpidCap) & (1UL << 41)) != 0;

        public static bool IsEnabled => s_regions != null && s_regions[KvmHost.CurrentCpu()] != 0;
    }
}
