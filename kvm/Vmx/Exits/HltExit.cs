using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// HLT (exit reason 12). With interrupts enabled the vCPU blocks until an interrupt is pending
    /// (<see cref="Events.Halt"/>). With interrupts disabled only an NMI, an INIT (to an AP) or the
    /// VM's end can wake it: the vCPU parks until then. That is how an SMP guest stops its other
    /// CPUs before it powers off or reboots. When no vCPU is left that could run (each parked or
    /// never started), the VM stops with that reason instead of hanging. A pause for a move takes a
    /// parked vCPU as it is (<see cref="Vcpu.ParkedAtPause"/>): the run loop parks it again, here or
    /// in the VM that takes over.
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

        /// <summary>
        /// Parks <paramref name="v"/> (a HLT with interrupts disabled, RIP past it) until an NMI or
        /// INIT is pending for it (Resume), the VM ends (Stop), or a pause for a move takes it
        /// (Resume with <see cref="Vcpu.ParkedAtPause"/> set: the run loop parks it again before its
        /// next entry). <see cref="Vm.ParkedVcpus"/> counts it while it waits here.
        /// </summary>
        internal static ExitAction Park(Vcpu v)
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
                // Whoever sends the NMI or INIT kicks this thread (the APIC bus), and so does a
                // pause (Vm.Pause, after it set Paused), so the wait ends at once: a kick that comes
                // after these looks leaves the thread's wake token, and the block below returns at
                // once. The 100 ms bound only covers the VM's end.
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
                if (Startup.MovePausing(vm))
                {
                    // A move takes the vCPU where it waits, as Events.Halt does: it leaves the run
                    // loop marked parked (RIP is past the HLT already, its state records it) and is
                    // no longer counted here; the run loop parks it again first, and counts it
                    // again, in this VM or in the one that takes over, where an NMI or INIT wakes
                    // it as before. A pending NMI or INIT was looked at first: it is not lost, and
                    // one that comes later wakes the re-parked vCPU (the devices move with it).
                    System.Threading.Interlocked.Decrement(ref vm.ParkedVcpus);
                    v.ParkedAtPause = true;
                    return ExitAction.Resume;
                }
                KvmHost.BlockThread(Native.Rdtsc() + KvmHost.TscPerSecond / 10);
            }
            return ExitAction.Stop;
        }
    }
}
