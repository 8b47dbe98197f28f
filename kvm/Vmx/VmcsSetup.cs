using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx
{
    /// <summary>The mode a guest starts in.</summary>
    public enum GuestMode
    {
        Protected32 = 32,
        Long64 = 64,
    }

    /// <summary>
    /// Fills a VMCS: execution controls from the TRUE capability MSRs (refusing, with a clear
    /// message, when a required one is missing), host state for the current CPU, and guest state
    /// for a flat 32-bit protected-mode or 64-bit long-mode guest (SDM Vol. 3C, chapter 25; the
    /// checks of chapter 27.3).
    /// </summary>
    public static unsafe class VmcsSetup
    {
        // Pin-based (SDM 25.6.1)
        private const uint PinExternalInterruptExiting = 1 << 0, PinNmiExiting = 1 << 3, PinVirtualNmis = 1 << 5, PinPreemptionTimer = 1 << 6;
        // Primary processor-based (25.6.2)
        private const uint ProcNmiWindow = 1u << 22, ProcTscOffsetting = 1u << 3;
        private const uint ProcCr8LoadExiting = 1u << 19, ProcCr8StoreExiting = 1u << 20;
        private const uint ProcMwaitExiting = 1u << 10, ProcRdpmcExiting = 1u << 11, ProcMonitorExiting = 1u << 29, ProcMovDrExiting = 1u << 23;
        private const uint ProcHltExiting = 1u << 7, ProcUseIoBitmaps = 1u << 25, ProcUseMsrBitmaps = 1u << 28, ProcSecondary = 1u << 31;
        // Secondary processor-based
        private const uint Proc2Ept = 1 << 1, Proc2Vpid = 1 << 5, Proc2WbinvdExiting = 1 << 6, Proc2UnrestrictedGuest = 1 << 7;
        // Exit (25.7.1) and entry (25.8.1) controls
        private const uint ExitHostAddressSpace = 1 << 9, ExitSaveEfer = 1 << 20, ExitLoadEfer = 1 << 21;
        private const uint EntryIa32eGuest = 1 << 9, EntryLoadEfer = 1 << 15;

        private const uint MsrTruePin = 0x48D, MsrTrueProc = 0x48E, MsrTrueExit = 0x48F, MsrTrueEntry = 0x490, MsrProc2 = 0x48B;

        /// <summary>Every I/O port and MSR access exits: shared all-ones bitmaps (4 KiB each).</summary>
        private static ulong s_ioBitmapA, s_ioBitmapB, s_msrBitmap;

        /// <summary>Sets up the current VMCS. Returns null or why the VM cannot run here.</summary>
        public static string? Initialize(Vcpu vcpu, in Boot.BootEntry boot)
        {
            string? problem = Controls(vcpu, boot.Mode == Boot.BootMode.Long64, out ulong cr0Fixed0, out ulong cr4Fixed0);
            if (problem != null)
                return problem;
            WriteHostState();
            WriteGuestState(boot, cr0Fixed0, cr4Fixed0);
            return null;
        }

        /// <summary>
        /// Sets up the controls and host state of the current VMCS for a guest whose state comes
        /// from elsewhere (<see cref="VcpuState.Restore"/>): the caller writes every guest field after.
        /// </summary>
        public static string? InitializeControls(Vcpu vcpu, bool long64)
        {
            string? problem = Controls(vcpu, long64, out _, out _);
            if (problem != null)
                return problem;
            WriteHostState();
            return null;
        }

        /// <summary>
        /// Sets up the current VMCS for an application processor that got a start-up IPI with
        /// <paramref name="vector"/>: the state after INIT (SDM Vol. 3A 10.1.1, table 10-1) in real
        /// mode, with CS = vector &lt;&lt; 8 (base vector &lt;&lt; 12) and IP 0 (10.4.4).
        /// </summary>
        public static string? InitializeStartup(Vcpu vcpu, int vector)
        {
            string? problem = Controls(vcpu, false, out ulong cr0Fixed0, out ulong cr4Fixed0);
            if (problem != null)
                return problem;
            WriteHostState();
            const ulong cr0Reset = 0x6000_0010;                  // CD, NW, ET
            Vmcs.Write(VmcsField.Cr0ReadShadow, cr0Reset);
            Vmcs.Write(VmcsField.Cr4ReadShadow, 0);
            Vmcs.Write(VmcsField.GuestCr0, 0x10 | cr0Fixed0);     // caching stays on underneath
            Vmcs.Write(VmcsField.GuestCr4, cr4Fixed0);
            Vmcs.Write(VmcsField.GuestCr3, 0);
            Vmcs.Write(VmcsField.GuestIa32Efer, 0);
            ResetGuestRegisters(0, 0);
            RealSegment(VmcsField.GuestCsSelector, VmcsField.GuestCsBase, VmcsField.GuestCsLimit, VmcsField.GuestCsAccessRights, (ushort)(vector << 8), 0x9B);
            RealSegment(VmcsField.GuestDsSelector, VmcsField.GuestDsBase, VmcsField.GuestDsLimit, VmcsField.GuestDsAccessRights, 0, 0x93);
            RealSegment(VmcsField.GuestEsSelector, VmcsField.GuestEsBase, VmcsField.GuestEsLimit, VmcsField.GuestEsAccessRights, 0, 0x93);
            RealSegment(VmcsField.GuestSsSelector, VmcsField.GuestSsBase, VmcsField.GuestSsLimit, VmcsField.GuestSsAccessRights, 0, 0x93);
            RealSegment(VmcsField.GuestFsSelector, VmcsField.GuestFsBase, VmcsField.GuestFsLimit, VmcsField.GuestFsAccessRights, 0, 0x93);
            RealSegment(VmcsField.GuestGsSelector, VmcsField.GuestGsBase, VmcsField.GuestGsLimit, VmcsField.GuestGsAccessRights, 0, 0x93);
            RealSegment(VmcsField.GuestTrSelector, VmcsField.GuestTrBase, VmcsField.GuestTrLimit, VmcsField.GuestTrAccessRights, 0, 0x8B);
            RealSegment(VmcsField.GuestLdtrSelector, VmcsField.GuestLdtrBase, VmcsField.GuestLdtrLimit, VmcsField.GuestLdtrAccessRights, 0, 0x10000);
            Vmcs.Write(VmcsField.GuestGdtrBase, 0);
            Vmcs.Write(VmcsField.GuestGdtrLimit, 0xFFFF);
            Vmcs.Write(VmcsField.GuestIdtrBase, 0);
            Vmcs.Write(VmcsField.GuestIdtrLimit, 0xFFFF);
            return null;
        }

        /// <summary>
        /// RIP and RSP, and the state every start shares: RFLAGS 0x2 (interrupts off), DR7's reset
        /// value, no pending debug exception, no interrupt shadow, active, SYSENTER MSRs 0.
        /// </summary>
        private static void ResetGuestRegisters(ulong rip, ulong rsp)
        {
            Vmcs.Write(VmcsField.GuestDr7, 0x400);
            Vmcs.Write(VmcsField.GuestRflags, 0x2);
            Vmcs.Write(VmcsField.GuestRip, rip);
            Vmcs.Write(VmcsField.GuestRsp, rsp);
            Vmcs.Write(VmcsField.GuestPendingDebug, 0);
            Vmcs.Write(VmcsField.GuestInterruptibility, 0);
            Vmcs.Write(VmcsField.GuestActivityState, 0);
            Vmcs.Write(VmcsField.GuestSysenterCs, 0);
            Vmcs.Write(VmcsField.GuestSysenterEsp, 0);
            Vmcs.Write(VmcsField.GuestSysenterEip, 0);
        }

        /// <summary>A real-mode segment: base selector * 16, limit 64 KiB.</summary>
        private static void RealSegment(ulong selectorField, ulong baseField, ulong limitField, ulong arField, ushort selector, uint accessRights)
        {
            Vmcs.Write(selectorField, selector);
            Vmcs.Write(baseField, (ulong)selector << 4);
            Vmcs.Write(limitField, 0xFFFF);
            Vmcs.Write(arField, accessRights);
        }

        /// <summary>The execution, exit and entry controls, bitmaps, EPT pointer and VPID; the CR0/CR4 bits VMX forces.</summary>
        /// <summary>CR4 bits a guest may never set: OSXSAVE (18) and PKE (22), for state the host does not switch.</summary>
        internal const ulong Cr4HostOwned = (1UL << 18) | (1UL << 22);

        private static string? Controls(Vcpu vcpu, bool long64, out ulong cr0Fixed0, out ulong cr4Fixed0)
        {
            cr0Fixed0 = cr4Fixed0 = 0;
            GuestMode mode = long64 ? GuestMode.Long64 : GuestMode.Protected32;
            if (!Vmcs.AdjustControls(MsrTruePin, PinExternalInterruptExiting | PinNmiExiting, PinPreemptionTimer | PinVirtualNmis, out uint pin, out uint missing))
                return Missing("pin-based", missing);
            if (!Vmcs.AdjustControls(MsrTrueProc, ProcHltExiting | ProcCr8LoadExiting | ProcCr8StoreExiting | ProcMwaitExiting | ProcRdpmcExiting | ProcMonitorExiting | ProcMovDrExiting | ProcUseIoBitmaps | ProcUseMsrBitmaps | ProcSecondary, ProcTscOffsetting, out uint proc, out missing))
                return Missing("processor-based", missing);
            if (!Vmcs.AdjustControls(MsrProc2, Proc2Ept | Proc2UnrestrictedGuest | Proc2Vpid, Proc2WbinvdExiting, out uint proc2, out missing))
                return Missing("secondary processor-based (EPT, unrestricted guest, VPID)", missing);
            if (!Vmcs.AdjustControls(MsrTrueExit, ExitHostAddressSpace | ExitSaveEfer | ExitLoadEfer, 0, out uint exit, out missing))
                return Missing("VM-exit", missing);
            uint entryWanted = EntryLoadEfer | (mode == GuestMode.Long64 ? EntryIa32eGuest : 0);
            if (!Vmcs.AdjustControls(MsrTrueEntry, entryWanted, 0, out uint entryControls, out missing))
                return Missing("VM-entry", missing);
            // CR3-load/store exiting may be forced by the non-TRUE MSR but is clearable via TRUE; keep whatever is left.

            if (s_msrBitmap == 0)
            {
                s_ioBitmapA = KvmHost.AllocatePage();
                s_ioBitmapB = KvmHost.AllocatePage();
                s_msrBitmap = KvmHost.AllocatePage();
                Native.MemSet((void*)s_ioBitmapA, 0xFF, 4096);
                Native.MemSet((void*)s_ioBitmapB, 0xFF, 4096);
                Native.MemSet((void*)s_msrBitmap, 0xFF, 4096);
            }

            Vmcs.Write(VmcsField.PinBasedControls, pin);
            Vmcs.Write(VmcsField.ProcBasedControls, proc);
            Vmcs.Write(VmcsField.SecondaryControls, proc2);
            Vmcs.Write(VmcsField.ExitControls, exit);
            Vmcs.Write(VmcsField.EntryControls, entryControls);
            Vmcs.Write(VmcsField.ExceptionBitmap, 0);
            Vmcs.Write(VmcsField.Cr3TargetCount, 0);
            Vmcs.Write(VmcsField.ExitMsrStoreCount, 0);
            Vmcs.Write(VmcsField.ExitMsrLoadCount, 0);
            Vmcs.Write(VmcsField.EntryMsrLoadCount, 0);
            Vmcs.Write(VmcsField.EntryInterruptionInfo, 0);
            Vmcs.Write(VmcsField.IoBitmapA, s_ioBitmapA);
            Vmcs.Write(VmcsField.IoBitmapB, s_ioBitmapB);
            Vmcs.Write(VmcsField.MsrBitmap, s_msrBitmap);
            Vmcs.Write(VmcsField.EptPointer, vcpu.Vm.Memory.EptPointer);
            Vmcs.Write(VmcsField.Vpid, vcpu.Vpid);
            Vmcs.Write(VmcsField.VmcsLinkPointer, ulong.MaxValue);
            vcpu.PreemptionTimer = (pin & PinPreemptionTimer) != 0;
            Exits.DrAccessExit.Reset(vcpu);                 // power-on and INIT state of the guest's debug registers
            // Virtual NMIs (SDM 24.6.1): the guest's IRET ends the blocking an injected NMI begins,
            // and NMI-window exiting (which needs them) tells when the next one may go in. Without
            // them an NMI is injected only while the guest's NMI blocking is clear.
            vcpu.VirtualNmis = (pin & PinVirtualNmis) != 0 && (Native.ReadMsr(MsrTrueProc) >> 32 & ProcNmiWindow) != 0;
            vcpu.WindowRequested = false;
            vcpu.NmiWindowRequested = false;
            // TSC offsetting: the guest's TSC is the host's plus the vCPU's offset, which a write
            // to IA32_TSC sets (MsrExit). Kept across an INIT, as the TSC is.
            vcpu.TscOffsetting = (proc & ProcTscOffsetting) != 0;
            if (vcpu.TscOffsetting)
                Vmcs.Write(VmcsField.TscOffset, vcpu.TscOffset);
            else
            {
                // No offsetting: the guest reads the host's TSC, and its APIC's TSC-deadline timer must agree.
                vcpu.TscOffset = 0;
                vcpu.Vm.Platform.Lapics[vcpu.Index].TscAtZero = 0;
            }
            if (vcpu.PreemptionTimer)
            {
                PreemptionRate = (int)(Native.ReadMsr(0x485) & 0x1F);    // IA32_VMX_MISC[4:0]
                ulong quantum = (KvmHost.TscPerSecond / 1000) >> PreemptionRate;
                PreemptionQuantum = quantum == 0 ? 1u : quantum > 0xFFFF_FFFFUL ? 0xFFFF_FFFFu : (uint)quantum;
                Vmcs.Write(VmcsField.PreemptionTimerValue, PreemptionQuantum);
            }
            vcpu.TimerValue = PreemptionQuantum;

            // The guest owns CR0/CR4 except the bits VMX forces (those read back as the guest wrote
            // them) and the CR4 bits of state the host does not switch: OSXSAVE (XCR0 and the
            // XSAVE-managed registers, AVX upper halves included) and PKE (PKRU). A MOV to CR4 that
            // sets one exits and gets #GP, as on a CPU without XSAVE or PKU, which is what CPUID
            // shows the guest (CrAccessExit.Cr4Allowed). Without this a guest could set OSXSAVE
            // itself and use AVX registers that carry over between VMs on a CPU.
            cr0Fixed0 = Native.ReadMsr(0x486) & ~(1UL | (1UL << 31));   // PE and PG are free with unrestricted guest
            cr4Fixed0 = Native.ReadMsr(0x488);
            Vmcs.Write(VmcsField.Cr0GuestHostMask, cr0Fixed0);
            Vmcs.Write(VmcsField.Cr4GuestHostMask, cr4Fixed0 | Cr4HostOwned);
            return null;
        }

        /// <summary>The preemption timer counts down once per 2^rate TSC ticks (IA32_VMX_MISC[4:0]).</summary>
        public static int PreemptionRate;

        /// <summary>
        /// Preemption-timer reload, 1 ms of TSC: bounds how long a guest runs between host checks.
        /// It is the scheduler's guest-mode preemption: the exit lets the host's pending interrupts
        /// in (its timer tick, a reschedule IPI), also where an emulator does not exit for them while
        /// the guest runs with interrupts off (Bochs).
        /// </summary>
        public static uint PreemptionQuantum = 2_000_000;

        /// <summary>The unit of a guest's time budget (<see cref="Vm.MaxQuanta"/>), in preemption-timer ticks.</summary>
        public const uint BudgetQuantum = 2_000_000;

        /// <summary>A budget of <paramref name="seconds"/> in <see cref="BudgetQuantum"/> units (rounded up, at least 1).</summary>
        public static ulong BudgetUnits(ulong seconds)
        {
            ulong unitTsc = (ulong)BudgetQuantum << PreemptionRate;
            ulong units = (seconds * KvmHost.TscPerSecond + unitTsc - 1) / unitTsc;
            return units == 0 ? 1 : units;
        }

        private static string Missing(string kind, uint bits)
        {
            ulong f = KvmHost.LogBegin();
            KvmHost.Write("vmx: required ");
            KvmHost.Write(kind);
            KvmHost.Write(" controls missing: bits ");
            KvmHost.WriteHex(bits);
            KvmHost.WriteChar('\n');
            KvmHost.LogEnd(f);
            return "a required VMX control is not supported by this CPU";
        }

        /// <summary>Host state for the current CPU (SDM 25.5): where a VM exit lands.</summary>
        public static void WriteHostState()
        {
            Vmcs.Write(VmcsField.HostCr0, Native.ReadCr0());
            Vmcs.Write(VmcsField.HostCr3, Native.ReadCr3());
            Vmcs.Write(VmcsField.HostCr4, Native.ReadCr4());
            Vmcs.Write(VmcsField.HostCsSelector, Gdt.KernelCode);
            Vmcs.Write(VmcsField.HostSsSelector, Gdt.KernelData);
            Vmcs.Write(VmcsField.HostDsSelector, Gdt.KernelData);
            Vmcs.Write(VmcsField.HostEsSelector, Gdt.KernelData);
            Vmcs.Write(VmcsField.HostFsSelector, Gdt.KernelData);
            Vmcs.Write(VmcsField.HostGsSelector, Gdt.KernelData);
            Vmcs.Write(VmcsField.HostTrSelector, Gdt.TssSelector);
            Vmcs.Write(VmcsField.HostFsBase, Native.ReadMsr(0xC0000100));
            Vmcs.Write(VmcsField.HostGsBase, Native.ReadMsr(0xC0000101));
            DescriptorPointer gdtr, idtr;
            Native.Sgdt(&gdtr);
            Native.Sidt(&idtr);
            Vmcs.Write(VmcsField.HostGdtrBase, gdtr.Base);
            Vmcs.Write(VmcsField.HostIdtrBase, idtr.Base);
            // The TSS base is in the GDT's TSS descriptor (16 bytes at selector 0x18).
            ulong* tssDescriptor = (ulong*)(gdtr.Base + Gdt.TssSelector);
            ulong low = tssDescriptor[0];
            ulong tssBase = ((low >> 16) & 0xFFFFFF) | (((low >> 56) & 0xFF) << 24) | (tssDescriptor[1] << 32);
            Vmcs.Write(VmcsField.HostTrBase, tssBase);
            Vmcs.Write(VmcsField.HostSysenterCs, 0);
            Vmcs.Write(VmcsField.HostSysenterEsp, 0);
            Vmcs.Write(VmcsField.HostSysenterEip, 0);
            Vmcs.Write(VmcsField.HostIa32Efer, Native.ReadMsr(0xC0000080));
        }

        /// <summary>
        /// The guest state of <paramref name="boot"/> (docs/guests.md, "What the VMCS setup takes
        /// from BootEntry"). A loader that wrote no GDT (the flat test images) gets the legacy
        /// layout: GDTR and IDTR at base 0 with limit 0xFFFF, CS 0x08, the data segments 0x10.
        /// </summary>
        private static void WriteGuestState(in Boot.BootEntry boot, ulong cr0Fixed0, ulong cr4Fixed0)
        {
            bool long64 = boot.Mode == Boot.BootMode.Long64;
            ulong cr0 = boot.Cr0;
            ulong cr4 = boot.Cr4;
            Vmcs.Write(VmcsField.Cr0ReadShadow, cr0);
            Vmcs.Write(VmcsField.Cr4ReadShadow, cr4);
            Vmcs.Write(VmcsField.GuestCr0, cr0 | cr0Fixed0);
            Vmcs.Write(VmcsField.GuestCr4, cr4 | cr4Fixed0);
            Vmcs.Write(VmcsField.GuestCr3, boot.Cr3);
            Vmcs.Write(VmcsField.GuestIa32Efer, boot.Efer);
            ResetGuestRegisters(boot.Rip, boot.Rsp);

            bool legacy = boot.GdtLimit == 0;
            ushort codeSelector = legacy ? (ushort)0x08 : boot.CodeSelector;
            ushort dataSelector = legacy ? (ushort)0x10 : boot.DataSelector;
            // Flat segments (access rights: SDM 25.4.1, table 25-2).
            uint code = long64 ? 0xA09Bu : 0xC09Bu;   // present, S, execute/read accessed; L (64) or D/B (32); G
            Segment(VmcsField.GuestCsSelector, VmcsField.GuestCsBase, VmcsField.GuestCsLimit, VmcsField.GuestCsAccessRights, codeSelector, code);
            Segment(VmcsField.GuestDsSelector, VmcsField.GuestDsBase, VmcsField.GuestDsLimit, VmcsField.GuestDsAccessRights, dataSelector, 0xC093);
            Segment(VmcsField.GuestEsSelector, VmcsField.GuestEsBase, VmcsField.GuestEsLimit, VmcsField.GuestEsAccessRights, dataSelector, 0xC093);
            Segment(VmcsField.GuestSsSelector, VmcsField.GuestSsBase, VmcsField.GuestSsLimit, VmcsField.GuestSsAccessRights, dataSelector, 0xC093);
            Segment(VmcsField.GuestFsSelector, VmcsField.GuestFsBase, VmcsField.GuestFsLimit, VmcsField.GuestFsAccessRights, dataSelector, 0xC093);
            Segment(VmcsField.GuestGsSelector, VmcsField.GuestGsBase, VmcsField.GuestGsLimit, VmcsField.GuestGsAccessRights, dataSelector, 0xC093);
            Segment(VmcsField.GuestTrSelector, VmcsField.GuestTrBase, VmcsField.GuestTrLimit, VmcsField.GuestTrAccessRights, 0x18, 0x008B);
            Vmcs.Write(VmcsField.GuestTrLimit, 0x67);
            Segment(VmcsField.GuestLdtrSelector, VmcsField.GuestLdtrBase, VmcsField.GuestLdtrLimit, VmcsField.GuestLdtrAccessRights, 0, 0x10000);
            Vmcs.Write(VmcsField.GuestGdtrBase, legacy ? 0 : boot.GdtBase);
            Vmcs.Write(VmcsField.GuestGdtrLimit, legacy ? 0xFFFFUL : boot.GdtLimit);
            Vmcs.Write(VmcsField.GuestIdtrBase, 0);
            Vmcs.Write(VmcsField.GuestIdtrLimit, legacy ? 0xFFFFUL : 0);
        }

        private static void Segment(ulong selectorField, ulong baseField, ulong limitField, ulong arField, ushort selector, uint accessRights)
        {
            Vmcs.Write(selectorField, selector);
            Vmcs.Write(baseField, 0);
            Vmcs.Write(limitField, 0xFFFFFFFF);
            Vmcs.Write(arField, accessRights);
        }
    }
}
