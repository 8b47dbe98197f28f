namespace Tandem.Arch.X86
{
    /// <summary>
    /// What the CPU offers for virtualisation (Intel SDM Vol. 3D, appendix A): VMX from CPUID.1:ECX[5];
    /// secondary controls, EPT (bit 1) and unrestricted guest (bit 7) from IA32_VMX_PROCBASED_CTLS2's
    /// allowed-1 half; EPT accessed/dirty flags from IA32_VMX_EPT_VPID_CAP bit 21.
    /// The VMX MSRs are read only when CPUID reports VMX (they #GP otherwise).
    /// </summary>
    public struct VmxFeatures
    {
        public bool Vmx;
        public bool Ept;
        public bool UnrestrictedGuest;
        public bool EptAccessedDirty;
        public bool Vpid;
        public bool PreemptionTimer;
        public ulong FeatureControl;

        public const uint MsrFeatureControl = 0x3A;
        public const uint MsrVmxBasic = 0x480;
        public const uint MsrPinBased = 0x481;
        public const uint MsrProcBased = 0x482;
        public const uint MsrProcBased2 = 0x48B;
        public const uint MsrEptVpidCap = 0x48C;
        public const uint MsrTruePinBased = 0x48D;
        public const uint MsrTrueProcBased = 0x48E;

        public static VmxFeatures Detect()
        {
            VmxFeatures f = default;
            f.Vmx = (Native.CpuId(1).Ecx & (1u << 5)) != 0;
            if (!f.Vmx)
                return f;
            f.FeatureControl = Native.ReadMsr(MsrFeatureControl);
            ulong basic = Native.ReadMsr(MsrVmxBasic);
            bool hasTrue = (basic & (1UL << 55)) != 0;
            ulong procBased = Native.ReadMsr(hasTrue ? MsrTrueProcBased : MsrProcBased);
            ulong pinBased = Native.ReadMsr(hasTrue ? MsrTruePinBased : MsrPinBased);
            f.PreemptionTimer = (pinBased & (1UL << (32 + 6))) != 0;
            if ((procBased & (1UL << (32 + 31))) == 0)
                return f;                                   // no secondary controls at all
            ulong procBased2 = Native.ReadMsr(MsrProcBased2);
            f.Ept = (procBased2 & (1UL << (32 + 1))) != 0;
            f.Vpid = (procBased2 & (1UL << (32 + 5))) != 0;
            f.UnrestrictedGuest = (procBased2 & (1UL << (32 + 7))) != 0;
            if (f.Ept || f.Vpid)
            {
                ulong cap = Native.ReadMsr(MsrEptVpidCap);
                f.EptAccessedDirty = f.Ept && (cap & (1UL << 21)) != 0;
            }
            return f;
        }
    }
}
