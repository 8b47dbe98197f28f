using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// HLT (exit reason 12). With interrupts enabled the vCPU blocks until an interrupt is pending
    /// (<see cref="Events.Halt"/>). With interrupts disabled only an NMI, an INIT (to an AP) or the
    /// VM's end can wake it: the vCPU parks until then. That is how an SMP guest stops its other
    /// CPUs before it powers off or reboots. When no vCPU is left that could run (each parked or
    /// never started), the VM stops with that reason instead of hanging.
    /// </summary>
    internal static unsafe class HltExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            e.Skip();
            Events.EndInterruptShadow();
            if ((Vmcs.Read(VmcsField.GuestRflags) & (1UL << 9)) == 0)
                return Park(v);
            return Events.Halt(v);
        }

        private static ExitAction Park(Vcpu v)
        {
            Vm vm = v.Vm;
            v.Vm.FlushPartialSerial();
            int parked = System.Threading.Interlocked.Increment(ref vm.ParkedVcpus);
            int idle = parked;
            for (int i = 0; i < vm.Vcpus.Length; i++)
            {
                if (!vm.Vcpus[i].Started)
                    idle++;
            }
            if (idle >= vm.Vcpus.Length)
            {
                vm.Stop(255, vm.Vcpus.Length == 1
                    ? "the guest halted with interrupts disabled (cli; hlt): nothing can wake it"
                    : "every vCPU halted with interrupts disabled or never started: nothing can wake them");
                return ExitAction.Stop;
            }
            Devices.PcPlatform p = v.Platform;
            Devices.LocalApic apic = p.Lapics[v.Index];
            while (!vm.Stopped)
            {
                // Whoever sends the NMI or INIT kicks this thread (the APIC bus), so the wait ends
                // at once; the 100 ms bound only covers the VM's end.
                p.Lock.Enter();
                bool wake = apic.NmiPending || apic.InitPending;
                p.Lock.Exit();
                if (wake)
                {
                    System.Threading.Interlocked.Decrement(ref vm.ParkedVcpus);
                    v.ParkWakes++;
                    v.EntryWork = true;
                    return ExitAction.Resume;
                }
                KvmHost.BlockThread(Native.Rdtsc() + KvmHost.TscPerSecond / 10);
            }
            return ExitAction.Stop;
        }
    }
}
