using Tandem.Arch.X86;

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
        public bool Launched;
        public int LoadedOnCpu = -1;
        public ulong Exits;

        /// <summary>The VMCS has the preemption timer on (optional: without it devices are polled at the exits the guest makes anyway).</summary>
        public bool PreemptionTimer;
        /// <summary>The value last written to the preemption-timer field (it is not saved on exit, so it is the next entry's).</summary>
        public uint TimerValue;
        public bool WindowRequested;
        /// <summary>The vCPU's APIC ID (CPUID, the local APIC, the MADT): its index in the VM.</summary>
        public int ApicId;
        /// <summary>The VM's devices (the same object as <c>Vm.Platform</c>, one load closer on the exit path).</summary>
        public readonly Devices.PcPlatform Platform;
        /// <summary>
        /// The next entry must look at the devices (<see cref="Events.BeforeEntry"/>): a device may
        /// have changed (port I/O, host input), a timer is armed, an interrupt or window is pending.
        /// </summary>
        public bool EntryWork = true;
        /// <summary>Interrupts injected, events re-injected after an exit during their delivery, HLTs that blocked.</summary>
        public ulong Injected, Reinjected, Halts, MmioExits, MsrFaults;

        /// <summary>The MSRs a vCPU keeps outside the VMCS (read back as written; see MsrExit).</summary>
        public struct MsrValues
        {
            public ulong Star, Lstar, Cstar, Fmask, KernelGsBase, TscAux, Pat, MtrrDefType;
        }

        public MsrValues Msrs;
        /// <summary>Guest time charged to the budget, and the TSC up to which it was charged.</summary>
        public ulong UsedTsc, ChargedUntil;

        private static int s_nextVpid;

        public Vcpu(Vm vm, ulong vmcs, ulong registersPage)
        {
            Vm = vm;
            Platform = vm.Platform;
            VmcsPhysical = vmcs;
            Registers = (GuestRegisters*)registersPage;
            FxArea = (byte*)registersPage + 1024;               // 16-byte aligned, 512 bytes
            ExitCounts = (ulong*)((byte*)registersPage + 2048); // ExitReason.Count counters
            *(ushort*)FxArea = 0x037F;                          // x87 control word after FNINIT
            *(uint*)(FxArea + 24) = 0x1F80;                     // MXCSR reset value
            Vpid = (ushort)System.Threading.Interlocked.Increment(ref s_nextVpid);
            Msrs.Pat = 0x0007_0406_0007_0406;                   // the power-on PAT
        }

        public ulong ExitCount(int reason) => reason < ExitReason.Count ? ExitCounts[reason] : 0;

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
                else if (!KvmHost.RunOnCpu(LoadedOnCpu, &VmClearHere, VmcsPhysical))
                    throw new System.InvalidOperationException("VMCLEAR on the vCPU's previous CPU did not run");
                Launched = false;
                LoadedOnCpu = cpu;
            }
            if (Native.VmPtrLd(VmcsPhysical) != 0)
                throw new System.InvalidOperationException("VMPTRLD failed");
        }

        private static void VmClearHere(ulong vmcs) => Native.VmClear(vmcs);
    }
}
