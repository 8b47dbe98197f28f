using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// A vCPU's architectural state, taken from a paused vCPU and given to a vCPU of another VM
    /// (the in-host postcopy move, docs/reclaim.md "Postcopy"): the guest-state fields of the VMCS,
    /// the general registers, the x87/SSE area, the MSRs and debug registers the host keeps for the
    /// guest, the TSC offset and whether the vCPU was started (an AP may still wait for its SIPI).
    /// What KVM's KVM_GET_REGS/SREGS/FPU/MSRS return, as one object. The controls, host state, EPT
    /// pointer and VPID are not state of the guest: the restoring VM writes its own.
    /// </summary>
    public sealed unsafe class VcpuState
    {
        /// <summary>The guest-state fields copied (SDM Vol. 3C, 25.4), plus the CR0/CR4 read shadows and a pending event injection.</summary>
        private static readonly ulong[] s_fields =
        {
            VmcsField.GuestRip, VmcsField.GuestRsp, VmcsField.GuestRflags,
            VmcsField.GuestCr0, VmcsField.GuestCr3, VmcsField.GuestCr4, VmcsField.Cr0ReadShadow, VmcsField.Cr4ReadShadow,
            VmcsField.GuestDr7, VmcsField.GuestIa32Efer, VmcsField.GuestIa32Pat,
            VmcsField.GuestEsSelector, VmcsField.GuestEsBase, VmcsField.GuestEsLimit, VmcsField.GuestEsAccessRights,
            VmcsField.GuestCsSelector, VmcsField.GuestCsBase, VmcsField.GuestCsLimit, VmcsField.GuestCsAccessRights,
            VmcsField.GuestSsSelector, VmcsField.GuestSsBase, VmcsField.GuestSsLimit, VmcsField.GuestSsAccessRights,
            VmcsField.GuestDsSelector, VmcsField.GuestDsBase, VmcsField.GuestDsLimit, VmcsField.GuestDsAccessRights,
            VmcsField.GuestFsSelector, VmcsField.GuestFsBase, VmcsField.GuestFsLimit, VmcsField.GuestFsAccessRights,
            VmcsField.GuestGsSelector, VmcsField.GuestGsBase, VmcsField.GuestGsLimit, VmcsField.GuestGsAccessRights,
            VmcsField.GuestLdtrSelector, VmcsField.GuestLdtrBase, VmcsField.GuestLdtrLimit, VmcsField.GuestLdtrAccessRights,
            VmcsField.GuestTrSelector, VmcsField.GuestTrBase, VmcsField.GuestTrLimit, VmcsField.GuestTrAccessRights,
            VmcsField.GuestGdtrBase, VmcsField.GuestGdtrLimit, VmcsField.GuestIdtrBase, VmcsField.GuestIdtrLimit,
            VmcsField.GuestPendingDebug, VmcsField.GuestInterruptibility, VmcsField.GuestActivityState,
            VmcsField.GuestSysenterCs, VmcsField.GuestSysenterEsp, VmcsField.GuestSysenterEip,
            VmcsField.EntryInterruptionInfo, VmcsField.EntryExceptionErrorCode, VmcsField.EntryInstructionLength,
        };

        /// <summary>IA-32e mode guest (VM-entry controls bit 9): the restoring VMCS needs it with EFER.LMA.</summary>
        private const ulong EntryIa32eGuest = 1 << 9;

        private readonly ulong[] _values = new ulong[s_fields.Length];
        private readonly byte[] _fx = new byte[512];

        /// <summary>The general registers and CR2 (as the entry stub keeps them).</summary>
        public GuestRegisters Registers;

        /// <summary>The host-kept MSRs of the guest (<see cref="Vcpu.Msrs"/>).</summary>
        public Vcpu.MsrValues Msrs;

        /// <summary>The guest's debug registers (<see cref="Vcpu.DebugRegs"/>).</summary>
        public Vcpu.DebugRegisters DebugRegs;

        /// <summary>Added to the host TSC for the guest: the same offset keeps the guest's TSC running on (one host, one TSC).</summary>
        public ulong TscOffset;

        /// <summary>The vCPU had started (the BSP, or an AP after its start-up IPI).</summary>
        public bool Started;

        /// <summary>The guest was in IA-32e mode.</summary>
        public bool Long64;

        /// <summary>The vCPU was halted in a guest HLT (RIP past it): it halts again where it is restored.</summary>
        public bool Halted;

        /// <summary>The vCPU was parked in a guest HLT with interrupts disabled (RIP past it): it parks again where it is restored, and only an NMI or INIT wakes it.</summary>
        public bool Parked;

        /// <summary>The guest's RIP (for reports).</summary>
        public ulong Rip => _values[0];

        /// <summary>
        /// Takes the state of <paramref name="v"/>. On the vCPU's own thread, between two runs of
        /// its run loop, with interrupts off (so the VMCS stays current here and the CPU keeps the
        /// guest's SYSCALL MSRs while they are read).
        /// </summary>
        public static VcpuState Capture(Vcpu v)
        {
            var s = new VcpuState();
            v.Load();
            for (int i = 0; i < s_fields.Length; i++)
                s._values[i] = Vmcs.Read(s_fields[i]);
            s.Long64 = (Vmcs.Read(VmcsField.EntryControls) & EntryIa32eGuest) != 0;
            SyscallMsrs.Release(v);                     // KERNEL_GS_BASE back from the CPU (SWAPGS changes it without an exit)
            s.Registers = *v.Registers;
            for (int i = 0; i < 512; i++)
                s._fx[i] = v.FxArea[i];
            s.Msrs = v.Msrs;
            s.DebugRegs = v.DebugRegs;
            s.TscOffset = v.TscOffset;
            s.Started = v.Started;
            s.Halted = v.HaltedAtPause;
            s.Parked = v.ParkedAtPause;
            return s;
        }

        /// <summary>
        /// Gives <paramref name="v"/> (a vCPU that never ran) this state: its VMCS gets its own
        /// controls and host state, then the guest fields. Returns null, or why the VM cannot run
        /// here (the controls it needs are missing).
        /// </summary>
        public string? Restore(Vcpu v)
        {
            ulong flags = Vcpu.DisableInterrupts();
            v.MakeCurrent();
            v.TscOffset = TscOffset;                    // the controls write it into the VMCS
            string? problem = VmcsSetup.InitializeControls(v, Long64);
            if (problem == null)
            {
                for (int i = 0; i < s_fields.Length; i++)
                    Vmcs.Write(s_fields[i], _values[i]);
                ulong launched = v.Registers->Launched, hostRsp = v.Registers->HostRsp;
                *v.Registers = Registers;
                v.Registers->Launched = launched;       // the new VMCS is launched by its own first entry
                v.Registers->HostRsp = hostRsp;
                for (int i = 0; i < 512; i++)
                    v.FxArea[i] = _fx[i];
                v.Msrs = Msrs;
                v.DebugRegs = DebugRegs;
                v.Started = Started;
                v.HaltedAtPause = Halted;
                v.ParkedAtPause = Parked;
            }
            Vcpu.RestoreInterrupts(flags);
            return problem;
        }
    }
}
