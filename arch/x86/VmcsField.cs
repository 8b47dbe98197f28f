namespace Tandem.Arch.X86
{
    /// <summary>VMCS field encodings (Intel SDM Vol. 3D, appendix B).</summary>
    public static class VmcsField
    {
        // 16-bit control and guest/host state (B.1)
        public const ulong Vpid = 0x0000;
        public const ulong GuestEsSelector = 0x0800, GuestCsSelector = 0x0802, GuestSsSelector = 0x0804, GuestDsSelector = 0x0806;
        public const ulong GuestFsSelector = 0x0808, GuestGsSelector = 0x080A, GuestLdtrSelector = 0x080C, GuestTrSelector = 0x080E;
        public const ulong HostEsSelector = 0x0C00, HostCsSelector = 0x0C02, HostSsSelector = 0x0C04, HostDsSelector = 0x0C06;
        public const ulong HostFsSelector = 0x0C08, HostGsSelector = 0x0C0A, HostTrSelector = 0x0C0C;

        // 64-bit control and guest/host state (B.2)
        public const ulong IoBitmapA = 0x2000, IoBitmapB = 0x2002, MsrBitmap = 0x2004;
        public const ulong EptPointer = 0x201A;
        public const ulong TscOffset = 0x2010;
        public const ulong GuestPhysicalAddress = 0x2400;
        public const ulong VmcsLinkPointer = 0x2800, GuestIa32Efer = 0x2806, GuestIa32Pat = 0x2804;
        public const ulong HostIa32Efer = 0x2C02, HostIa32Pat = 0x2C00;

        // 32-bit fields (B.3)
        public const ulong PinBasedControls = 0x4000, ProcBasedControls = 0x4002, ExceptionBitmap = 0x4004;
        public const ulong Cr3TargetCount = 0x400A, ExitControls = 0x400C, ExitMsrStoreCount = 0x400E, ExitMsrLoadCount = 0x4010;
        public const ulong EntryControls = 0x4012, EntryMsrLoadCount = 0x4014, EntryInterruptionInfo = 0x4016;
        public const ulong EntryExceptionErrorCode = 0x4018, EntryInstructionLength = 0x401A;
        public const ulong SecondaryControls = 0x401E;
        public const ulong InstructionError = 0x4400, ExitReason = 0x4402, ExitInterruptionInfo = 0x4404, ExitInterruptionErrorCode = 0x4406;
        public const ulong IdtVectoringInfo = 0x4408, IdtVectoringErrorCode = 0x440A;
        public const ulong ExitInstructionLength = 0x440C, ExitInstructionInfo = 0x440E;
        public const ulong GuestEsLimit = 0x4800, GuestCsLimit = 0x4802, GuestSsLimit = 0x4804, GuestDsLimit = 0x4806;
        public const ulong GuestFsLimit = 0x4808, GuestGsLimit = 0x480A, GuestLdtrLimit = 0x480C, GuestTrLimit = 0x480E;
        public const ulong GuestGdtrLimit = 0x4810, GuestIdtrLimit = 0x4812;
        public const ulong GuestEsAccessRights = 0x4814, GuestCsAccessRights = 0x4816, GuestSsAccessRights = 0x4818, GuestDsAccessRights = 0x481A;
        public const ulong GuestFsAccessRights = 0x481C, GuestGsAccessRights = 0x481E, GuestLdtrAccessRights = 0x4820, GuestTrAccessRights = 0x4822;
        public const ulong GuestInterruptibility = 0x4824, GuestActivityState = 0x4826, GuestSysenterCs = 0x482A;
        public const ulong PreemptionTimerValue = 0x482E;
        public const ulong HostSysenterCs = 0x4C00;

        // Natural-width fields (B.4)
        public const ulong Cr0GuestHostMask = 0x6000, Cr4GuestHostMask = 0x6002, Cr0ReadShadow = 0x6004, Cr4ReadShadow = 0x6006;
        public const ulong ExitQualification = 0x6400, GuestLinearAddress = 0x640A;
        public const ulong GuestCr0 = 0x6800, GuestCr3 = 0x6802, GuestCr4 = 0x6804;
        public const ulong GuestEsBase = 0x6806, GuestCsBase = 0x6808, GuestSsBase = 0x680A, GuestDsBase = 0x680C;
        public const ulong GuestFsBase = 0x680E, GuestGsBase = 0x6810, GuestLdtrBase = 0x6812, GuestTrBase = 0x6814;
        public const ulong GuestGdtrBase = 0x6816, GuestIdtrBase = 0x6818, GuestDr7 = 0x681A, GuestRsp = 0x681C, GuestRip = 0x681E;
        public const ulong GuestRflags = 0x6820, GuestPendingDebug = 0x6822, GuestSysenterEsp = 0x6824, GuestSysenterEip = 0x6826;
        public const ulong HostCr0 = 0x6C00, HostCr3 = 0x6C02, HostCr4 = 0x6C04, HostFsBase = 0x6C06, HostGsBase = 0x6C08;
        public const ulong HostTrBase = 0x6C0A, HostGdtrBase = 0x6C0C, HostIdtrBase = 0x6C0E;
        public const ulong HostSysenterEsp = 0x6C10, HostSysenterEip = 0x6C12, HostRsp = 0x6C14, HostRip = 0x6C16;
    }

    /// <summary>Basic VM-exit reasons (Intel SDM Vol. 3D, appendix C).</summary>
    public static class ExitReason
    {
        public const int ExceptionOrNmi = 0, ExternalInterrupt = 1, TripleFault = 2, InterruptWindow = 7, NmiWindow = 8, Cpuid = 10, Hlt = 12;
        public const int Invd = 13, Vmcall = 18, CrAccess = 28, DrAccess = 29, IoInstruction = 30, Rdmsr = 31, Wrmsr = 32, InvalidGuestState = 33;
        public const int MsrLoading = 34, EptViolation = 48, EptMisconfiguration = 49, PreemptionTimer = 52, Wbinvd = 54, Xsetbv = 55;
        public const int Getsec = 11, Rdpmc = 15, Vmclear = 19, Vmxon = 27, Mwait = 36, Monitor = 39, Invept = 50, Invvpid = 53, Vmfunc = 59;
        public const int Count = 70;

        /// <summary>
        /// The short name of every basic exit reason below <see cref="Count"/>, indexed by reason
        /// (Intel SDM Vol. 3D, appendix C, table C-1); "reserved-N" for the numbers the SDM leaves unused.
        /// </summary>
        private static readonly string[] s_names =
        [
            "exception", "external-interrupt", "triple-fault", "init", "sipi",                          // 0-4
            "io-smi", "other-smi", "interrupt-window", "nmi-window", "task-switch",                       // 5-9
            "cpuid", "getsec", "hlt", "invd", "invlpg",                                                  // 10-14
            "rdpmc", "rdtsc", "rsm", "vmcall", "vmclear",                                                // 15-19
            "vmlaunch", "vmptrld", "vmptrst", "vmread", "vmresume",                                      // 20-24
            "vmwrite", "vmxoff", "vmxon", "cr-access", "dr-access",                                      // 25-29
            "io", "rdmsr", "wrmsr", "invalid-guest-state", "msr-loading",                                // 30-34
            "reserved-35", "mwait", "monitor-trap-flag", "reserved-38", "monitor",                       // 35-39
            "pause", "machine-check", "reserved-42", "tpr-below-threshold", "apic-access",               // 40-44
            "virtualized-eoi", "gdtr-idtr-access", "ldtr-tr-access", "ept-violation", "ept-misconfig",   // 45-49
            "invept", "rdtscp", "preemption-timer", "invvpid", "wbinvd",                                 // 50-54
            "xsetbv", "apic-write", "rdrand", "invpcid", "vmfunc",                                       // 55-59
            "encls", "rdseed", "pml-full", "xsaves", "xrstors",                                          // 60-64
            "pconfig", "spp-event", "umwait", "tpause", "loadiwkey",                                     // 65-69
        ];

        /// <summary>A short name for an exit reason (SDM Vol. 3D, appendix C), or null for one beyond the table.</summary>
        public static string? Name(int reason) => reason >= 0 && reason < s_names.Length ? s_names[reason] : null;
    }
}
