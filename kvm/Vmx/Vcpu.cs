using Tandem.Arch.X86;
using Tandem.Kvm.Vmx.Exits;

namespace Tandem.Kvm.Vmx
{
    /// <summary>A virtual CPU: its VMCS, guest registers, FPU/SSE area, VPID and exit statistics.</summary>
    public sealed unsafe class Vcpu
    {
        public readonly Vm Vm;
        public readonly ulong VmcsPhysical;
        public readonly GuestRegisters* Registers;
        public readonly byte* FxArea;
        public readonly ushort Vpid;
        public readonly ulong* ExitCounts;

        /// <summary>The CPUID answers computed when the vCPU was made, one slot per basic leaf (<see cref="CpuidExit"/>).</summary>
        internal readonly CpuidExit.Answer4* CpuidCache;

        /// <summary>The VMCS is launched: the next entry is a VMRESUME (kept beside the registers, where the entry stub tests and sets it).</summary>
        public bool Launched
        {
            get => Registers->Launched != 0;
            set => Registers->Launched = value ? 1UL : 0;
        }

        public int LoadedOnCpu = -1;
        public ulong Exits;

        /// <summary>The VMCS has the preemption timer on (optional: without it devices are polled at the exits the guest makes anyway).</summary>
        public bool PreemptionTimer;
        /// <summary>The value last written to the preemption-timer field (it is not saved on exit, so it is the next entry's).</summary>
        public uint TimerValue;
        public bool WindowRequested;
        /// <summary>NMI-window exiting is on: an NMI waits for the guest's NMI blocking to end.</summary>
        public bool NmiWindowRequested;

        /// <summary>Entries since the run loop last let pending host interrupts in (it does every 8th).</summary>
        public uint EntriesSincePoll;
        /// <summary>The VMCS uses TSC offsetting; <see cref="TscOffset"/> is added to the host TSC for the guest (set by a write to IA32_TSC).</summary>
        public bool TscOffsetting;
        public ulong TscOffset;

        /// <summary>The host TSC at which this vCPU's RDTSC read <paramref name="guestTsc"/> (the guest's TSC is the host's plus <see cref="TscOffset"/> when offsetting is on): for comparing guest stamps with host ones.</summary>
        public ulong HostTscOf(ulong guestTsc) => TscOffsetting ? guestTsc - TscOffset : guestTsc;
        /// <summary>The VMCS has virtual NMIs and NMI-window exiting (<see cref="VmcsSetup"/>).</summary>
        public bool VirtualNmis;
        /// <summary>NMIs injected; wakes of a vCPU parked in <c>cli; hlt</c> (by an NMI or INIT); INITs that reset a started AP.</summary>
        public ulong NmisInjected, ParkWakes, InitResets;
        /// <summary>The vCPU's APIC ID (CPUID, the local APIC, the MADT): its index in the VM.</summary>
        public int ApicId;
        /// <summary>The VM's devices (the same object as <c>Vm.Platform</c>, one load closer on the exit path).</summary>
        public readonly Devices.PcPlatform Platform;
        /// <summary>
        /// The next entry must look at the devices (<see cref="Events.BeforeEntry"/>): a device may
        /// have changed (port I/O, host input), a timer is armed, an interrupt or window is pending.
        /// </summary>
        public bool EntryWork = true;

        /// <summary>The vCPU's index in its VM (its APIC ID); vCPU 0 is the bootstrap processor.</summary>
        public readonly int Index;

        /// <summary>An AP (index above 0) waits for INIT and a start-up IPI; the BSP starts at once.</summary>
        public bool Started;

        /// <summary>The kernel thread running the vCPU (0 before it first runs).</summary>
        public ulong Thread;

        /// <summary>
        /// 1 from just before the entry checks until the VM exit (set with interrupts off). A kicker
        /// that sets <see cref="EntryWork"/> and then sees 1 sends the vCPU's CPU an IPI: pending
        /// across the entry (interrupts are off), it makes the guest exit at once (KVM's
        /// IN_GUEST_MODE handshake; docs/scheduler.md, "Kicks").
        /// </summary>
        public int InGuest;

        /// <summary>VMCLEARs run on the CPU the VMCS was last active on because the vCPU moved, and those of them that ran elsewhere (a bug: always 0).</summary>
        public ulong RemoteClears, MisplacedClears;

        /// <summary>The physical CPUs the vCPU has run on (bit i = CPU index i).</summary>
        public ulong CpusUsed;

        /// <summary>
        /// The time stamps of an in-kernel benchmark that watches this vCPU (kernel/Bench/SmpBench.cs);
        /// null otherwise. Looked at on the kick, switch-in, injection and yield paths only, never on
        /// the per-exit fast path.
        /// </summary>
        public VcpuBench? Bench;

        /// <summary>
        /// The VPIDs a vCPU may have: 1 to <see cref="VpidLimit"/> - 1 (VPID 0 is VMX root's, SDM Vol. 3C,
        /// 29.1). One vCPU holds its VPID from <see cref="AllocateVpid"/> until <see cref="Release"/>, so
        /// two live vCPUs never share one, however many were made before (docs/locking.md, "VPIDs").
        /// </summary>
        public const int VpidLimit = 4096;

        /// <summary>The live vCPU of each VPID, for the thread entry and switch-in hook that get only the VPID.</summary>
        private static readonly Vcpu?[] s_all = new Vcpu?[VpidLimit];

        /// <summary>The VPIDs of live vCPUs.</summary>
        private static readonly VpidAllocator s_vpids = new VpidAllocator(VpidLimit);

        /// <summary>Takes a free VPID for a new vCPU, or 0 when all <see cref="VpidLimit"/> - 1 are held by live vCPUs.</summary>
        public static ushort AllocateVpid() => s_vpids.Allocate();

        /// <summary>VPIDs held now (the monitor and tests).</summary>
        public static int VpidsInUse() => s_vpids.InUse();

        /// <summary>Gives back a VPID that no vCPU ever ran with (a VM whose creation failed).</summary>
        public static void ReleaseUnusedVpid(ushort vpid) => s_vpids.Free(vpid);

        /// <summary>Interrupts injected, events re-injected after an exit during their delivery, HLTs that blocked.</summary>
        public ulong Injected, Reinjected, Halts, MmioExits, MsrFaults;

        /// <summary>Faults injected for instructions a guest may not use (VMX instructions, MONITOR, MWAIT, RDPMC).</summary>
        public ulong InstructionFaults;

        /// <summary>A guest's debug registers, kept here and never loaded into the CPU (<see cref="Exits.DrAccessExit"/>).</summary>
        public struct DebugRegisters
        {
            public ulong Dr0, Dr1, Dr2, Dr3, Dr6, Dr7;
        }

        /// <summary>The guest's DR0-DR3, DR6 and DR7.</summary>
        public DebugRegisters DebugRegs;

        /// <summary>MOVs to or from a debug register (each an exit, emulated).</summary>
        public ulong DebugRegisterAccesses;

        /// <summary>Data accesses to guest-physical addresses with no RAM and no device (read as all ones, writes dropped; <see cref="MmioExit"/>).</summary>
        public ulong UnassignedAccesses;

        /// <summary>VMCALLs refused because the guest made them at CPL != 0 (VmcallExit: RAX = -2 back).</summary>
        public ulong RefusedHypercalls;

        /// <summary>The MSRs a vCPU keeps outside the VMCS (read back as written; see MsrExit).</summary>
        public struct MsrValues
        {
            public ulong Star, Lstar, Cstar, Fmask, KernelGsBase, TscAux, Pat, MtrrDefType;
        }

        public MsrValues Msrs;
        /// <summary>The guest's RIP when the host last looked (a host tick, a halt, the run loop's end): the monitor's <c>info vcpus</c>.</summary>
        public ulong LastRip;

        /// <summary>The TSC when <see cref="LastRip"/> was read (0: never), so the monitor can say how old the sample is.</summary>
        public ulong LastRipTsc;

        /// <summary>The vCPU's thread waits in the host because the monitor paused the VM (<see cref="Vm.WaitWhilePaused"/>).</summary>
        public bool HeldByPause;

        /// <summary>The state a pause took (<see cref="Vm.SaveStateOnPause"/>); null before.</summary>
        public VcpuState? SavedState;

        /// <summary>A pause for a move took the vCPU in a guest HLT (RIP past it): the run loop halts it again before its next entry.</summary>
        public bool HaltedAtPause;

        /// <summary>A pause for a move took the vCPU parked in a guest <c>cli; hlt</c> (RIP past it, <see cref="Exits.HltExit"/>): the run loop parks it again before its next entry.</summary>
        public bool ParkedAtPause;

        /// <summary>Guest time charged to the budget, and the TSC up to which it was charged.</summary>
        public ulong UsedTsc, ChargedUntil;

        /// <summary>A vCPU with the VPID <paramref name="vpid"/> from <see cref="AllocateVpid"/> (held until <see cref="Release"/>).</summary>
        public Vcpu(Vm vm, int index, ulong vmcs, ulong registersPage, ushort vpid)
        {
            Vm = vm;
            Index = index;
            ApicId = index;
            Started = index == 0;
            Platform = vm.Platform;
            VmcsPhysical = vmcs;
            Registers = (GuestRegisters*)registersPage;
            FxArea = (byte*)registersPage + GuestRegisters.FxAreaOffset;   // 16-byte aligned, 512 bytes
            Registers->HostRsp = 0;                             // the first entry writes HOST_RSP and HOST_RIP
            Registers->Launched = 0;
            ExitCounts = (ulong*)((byte*)registersPage + 2048); // ExitReason.Count counters (560 bytes)
            CpuidCache = (CpuidExit.Answer4*)((byte*)registersPage + 3072);   // CpuidExit.CacheSize answers (736 bytes)
            *(ushort*)FxArea = 0x037F;                          // x87 control word after FNINIT
            *(uint*)(FxArea + 24) = 0x1F80;                     // MXCSR reset value
            Vpid = vpid;
            System.Threading.Volatile.Write(ref s_all[vpid], this);
            Msrs.Pat = 0x0007_0406_0007_0406;                   // the power-on PAT
            CpuidExit.FillCache(this);
        }

        public ulong ExitCount(int reason) => reason < ExitReason.Count ? ExitCounts[reason] : 0;

        /// <summary>
        /// TSC ticks spent in the host per exit reason (indexed as <see cref="ExitCounts"/>): for each
        /// exit, from the RDTSC right after it to the RDTSC right before the next entry (or the run
        /// loop's end), so the handler, the entry checks and any wait in between (a HLT's sleep, the
        /// thread preempted) count. Written only by the vCPU's own thread, without a lock; the
        /// monitor's <c>info exits</c> sums them per VM (docs/monitor.md).
        /// </summary>
        public readonly ulong[] ExitHostTsc = new ulong[ExitReason.Count];

        /// <summary>TSC ticks spent in the host handling exits of <paramref name="reason"/> (0 for a reason beyond <see cref="ExitReason.Count"/>).</summary>
        public ulong ExitHostTicks(int reason) => (uint)reason < ExitReason.Count ? System.Threading.Volatile.Read(ref ExitHostTsc[reason]) : 0;

        /// <summary>
        /// Makes this vCPU's VMCS current on this CPU. The first time, VMCLEAR initialises it here.
        /// When it was last current on another CPU, VMCLEAR runs there (SDM Vol. 3C, 25.11.1: the
        /// VMCS data may be cached by the processor it was active on, and VMCLEAR on that processor
        /// writes it back) before VMPTRLD here; the next entry is then a VMLAUNCH.
        /// </summary>
        public void MakeCurrent()
        {
            int cpu = KvmHost.CurrentCpu();
            if (LoadedOnCpu != cpu)
            {
                if (LoadedOnCpu < 0)
                    Native.VmClear(VmcsPhysical);
                else if (!KvmHost.RunOnCpu(LoadedOnCpu, &VmClearHere, Vpid))
                    throw new System.InvalidOperationException("VMCLEAR on the vCPU's previous CPU did not run");
                Launched = false;
                LoadedOnCpu = cpu;
            }
            if (Native.VmPtrLd(VmcsPhysical) != 0)
                throw new System.InvalidOperationException("VMPTRLD failed");
        }

        private static void VmClearHere(ulong vpid)
        {
            Vcpu v = s_all[(int)vpid]!;
            Native.VmClear(v.VmcsPhysical);
            SyscallMsrs.Release(v);
            v.RemoteClears++;
            if (KvmHost.CurrentCpu() != v.LoadedOnCpu)
                v.MisplacedClears++;
        }

        /// <summary>
        /// Makes the vCPU's VMCS current here, with this CPU's host state and in the EPT's CPU mask:
        /// once when its thread starts running it, and again from the thread's switch-in hook each time
        /// the scheduler switches it back in (another vCPU's VMCS may be current, or this is another CPU).
        /// </summary>
        public void Load()
        {
            int cpu = KvmHost.CurrentCpu();
            MakeCurrent();
            SyscallMsrs.Acquire(this);
            if (_hostCpu != cpu)
            {
                _hostCpu = cpu;
                CpusUsed |= 1UL << cpu;
                // This CPU may cache the VM's EPT translations from the first entry on: it must be in
                // the EPT's CPU mask before it, or a remote INVEPT would skip it (a bit is never cleared).
                Vm.Memory.ActivateOn(cpu);
                VmcsSetup.WriteHostState();
            }
        }

        /// <summary>
        /// The VM is over: VMCLEAR (where the VMCS was last active), INVVPID on every CPU the vCPU ran
        /// on, then the VPID and the pages go back. The INVVPID comes first because a CPU may still
        /// cache linear translations tagged with this VPID; the next vCPU to get the VPID must not
        /// find them (SDM Vol. 3C, 29.4.3.3: software must invalidate before it reuses a VPID).
        /// </summary>
        public void Release()
        {
            if (LoadedOnCpu >= 0 && !KvmHost.RunOnCpu(LoadedOnCpu, &VmClearHere, Vpid))
                throw new System.InvalidOperationException("VMCLEAR on the vCPU's last CPU did not run");
            LoadedOnCpu = -1;
            ulong cpus = CpusUsed;
            while (cpus != 0)
            {
                int cpu = System.Numerics.BitOperations.TrailingZeroCount(cpus);
                cpus &= cpus - 1;
                if (!KvmHost.RunOnCpu(cpu, &InvalidateVpidHere, Vpid))
                    throw new System.InvalidOperationException("INVVPID on a CPU the vCPU ran on did not run");
            }
            VpidInvalidations += (ulong)System.Numerics.BitOperations.PopCount(CpusUsed);
            System.Threading.Volatile.Write(ref s_all[Vpid], null);
            s_vpids.Free(Vpid);
            KvmHost.FreePages(VmcsPhysical, 1);
            KvmHost.FreePages((ulong)Registers, 1);
        }

        /// <summary>INVVPIDs <see cref="Release"/> ran (one per CPU the vCPU had used).</summary>
        public ulong VpidInvalidations;

        /// <summary>
        /// INVVPID of one VPID on this CPU: single-context (type 1) where the CPU has it, else
        /// all-context (type 2, every VPID but 0); IA32_VMX_EPT_VPID_CAP bits 41 and 42.
        /// </summary>
        private static void InvalidateVpidHere(ulong vpid)
        {
            ulong* descriptor = stackalloc ulong[2];
            descriptor[0] = vpid;                   // bits 15:0 the VPID, the rest reserved (0)
            descriptor[1] = 0;                      // the linear address (type 0 only)
            ulong type = VmxCpu.InvVpidSingleContext ? 1UL : 2UL;
            if (Native.InvVpid(type, descriptor) != 0)
                throw new System.InvalidOperationException("INVVPID failed");
        }

        /// <summary>The live vCPU with <paramref name="vpid"/>.</summary>
        public static Vcpu FromVpid(ulong vpid) => s_all[(int)vpid]!;

        /// <summary>The CPU whose host state the VMCS holds and whose EPT-mask bit is set (by <see cref="Load"/>).</summary>
        private int _hostCpu = -1;

        /// <summary>The switch-in hook of a thread running a vCPU (its argument is the VPID).</summary>
        public static void OnSwitchIn(ulong vpid)
        {
            Vcpu v = s_all[(int)vpid]!;
            if (v.Bench != null)
                v.Bench.OnSwitchIn();       // the thread runs again: the end of a benchmark's "wake"
            v.Load();
        }

        /// <summary>Interrupts off (the run loop's state); returns the flags for <see cref="RestoreInterrupts"/>.</summary>
        public static ulong DisableInterrupts()
        {
            ulong flags = Native.ReadRflags();
            Native.Cli();
            return flags;
        }

        public static void RestoreInterrupts(ulong flags)
        {
            if ((flags & 0x200) != 0)
                Native.Sti();
        }
    }
}
