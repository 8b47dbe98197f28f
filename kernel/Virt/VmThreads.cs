using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Sched;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Virt
{
    /// <summary>
    /// Runs VMs as threads: one kernel thread per vCPU (docs/scheduler.md, "vCPU threads"), any
    /// number of VMs at once; waits for them to stop, prints one line per VM and releases it.
    /// </summary>
    public static unsafe class VmThreads
    {
        /// <summary>
        /// Starts a thread for every vCPU of <paramref name="vm"/>, allowed on the CPUs of
        /// <paramref name="pinMask"/> (0: any); the current thread is woken when the last one ends.
        /// </summary>
        public static bool Start(Vm vm, ulong pinMask) => Start(vm, pinMask, null);

        /// <summary>
        /// As <see cref="Start(Vm, ulong)"/>, with vCPU i allowed on the CPUs of
        /// <paramref name="vcpuPins"/>[i] when that array is given and holds an entry for it (the
        /// benchmarks pin each vCPU to its own CPU).
        /// </summary>
        public static bool Start(Vm vm, ulong pinMask, ulong[]? vcpuPins)
        {
            vm.Waiter = (ulong)Scheduler.Current;
            vm.StartTsc = Native.Rdtsc();
            Volatile.Write(ref vm.RunningVcpus, vm.Vcpus.Length);
            for (int i = 0; i < vm.Vcpus.Length; i++)
            {
                ulong pin = vcpuPins != null && i < vcpuPins.Length ? vcpuPins[i] : pinMask;
                if (Scheduler.Spawn(i == 0 ? "vcpu-bsp" : "vcpu-ap", &VcpuMain, vm.Vcpus[i].Vpid, pin, stackPages: 32) == null)
                {
                    vm.Stop(255, "out of memory for a vCPU thread");
                    for (int k = i; k < vm.Vcpus.Length; k++)
                        Finished(vm);
                    return false;
                }
            }
            return true;
        }

        private static void VcpuMain(ulong vpid)
        {
            Vcpu v = Vcpu.FromVpid(vpid);
            Vm vm = v.Vm;
            // A pause (a test's phase handler, the monitor's pause) returns from the loop; threads
            // run to the VM's end.
            do
            {
                vm.WaitWhilePaused(v);
                RunLoop.Run(v);
            }
            while (!vm.Stopped);
            Finished(vm);
        }

        private static void Finished(Vm vm)
        {
            if (Interlocked.Decrement(ref vm.RunningVcpus) == 0)
            {
                vm.EndTsc = Native.Rdtsc();
                Scheduler.Wake((KThread*)vm.Waiter);
            }
        }

        /// <summary>Blocks until every vCPU thread of <paramref name="vm"/> has ended, then prints its line.</summary>
        public static void WaitAndReport(Vm vm)
        {
            Vm[] one = new Vm[1];
            one[0] = vm;
            WaitAll(one, 1);
            Report(vm);
        }

        /// <summary>Blocks until every vCPU thread of every VM in <paramref name="vms"/> has ended.</summary>
        public static void WaitAll(Vm[] vms, int count) => Wait(vms, null, count, untilAny: false);

        /// <summary>Blocks until every vCPU thread of some VM in <paramref name="vms"/> not marked in <paramref name="done"/> has ended.</summary>
        public static void WaitAny(Vm[] vms, bool[] done, int count) => Wait(vms, done, count, untilAny: true);

        private static void Wait(Vm[] vms, bool[]? done, int count, bool untilAny)
        {
            ulong start = Native.Rdtsc();
            ulong nextReport = 30;
            while (true)
            {
                bool running = false, ended = false;
                for (int i = 0; i < count; i++)
                {
                    if (done != null && done[i])
                        continue;
                    if (Volatile.Read(ref vms[i].RunningVcpus) != 0)
                        running = true;
                    else
                        ended = true;
                }
                if (!running || (untilAny && ended))
                    return;
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond);
                ulong seconds = (Native.Rdtsc() - start) / Timer.TscPerSecond;
                if (seconds >= nextReport)
                {
                    // A long wait says where every vCPU is: the one line an operator needs when a
                    // guest seems stuck. A VM without a time budget (an operating system at its
                    // prompt) is not stuck by waiting, and its console stays the user's.
                    nextReport += 30;
                    bool any = false;
                    for (int i = 0; i < count; i++)
                    {
                        if (vms[i].MaxQuanta != 0 && Volatile.Read(ref vms[i].RunningVcpus) != 0)
                        {
                            ReportProgress(vms[i]);
                            any = true;
                        }
                    }
                    if (any)
                        Scheduler.Report();
                }
            }
        }

        /// <summary>One line per vCPU: its thread's state and CPU, guest mode, exits, halts, injections.</summary>
        public static void ReportProgress(Vm vm)
        {
            // A chain: the thread's part (four figures) is there only when the vCPU has a thread,
            // and the vCPUs' lines stay together.
            ulong f = Log.Begin();
            for (int i = 0; i < vm.Vcpus.Length; i++)
            {
                Vcpu v = vm.Vcpus[i];
                KThread* t = (KThread*)Volatile.Read(ref v.Thread);
                Log.Write("vm ");
                Log.Write((ulong)vm.Id);
                Log.Write(" vcpu ");
                Log.Write((ulong)i);
                Log.Write(v.Started ? ": started" : ": waiting for SIPI");
                if (t != null)
                {
                    Log.Write(", thread state ");
                    Log.Write((ulong)t->State);
                    Log.Write(" on cpu ");
                    Log.Write((ulong)t->Cpu);
                    Log.Write(" preempted ");
                    Log.Write(t->Preemptions);
                    Log.Write(" migrated ");
                    Log.Write(t->Migrations);
                }
                Log.Write(", in guest ");
                Log.Write((ulong)v.InGuest);
                Log.Write(", exits ");
                Log.Write(v.Exits);
                Log.Write(", halts ");
                Log.Write(v.Halts);
                Log.Write(", injected ");
                Log.Write(v.Injected);
                Log.Write(", external ");
                Log.Write(v.ExitCount(ExitReason.ExternalInterrupt));
                Log.Write(", preemption timer ");
                Log.Write(v.ExitCount(ExitReason.PreemptionTimer));
                Log.WriteChar('\n');
            }
            Log.End(f);
        }

        /// <summary>
        /// Writes "name n, name n" for every exit reason with a count (a reason without a name as
        /// reason-N), <paramref name="opening"/> before the first; false when every count is 0.
        /// Inside a <see cref="Log.Begin"/> section.
        /// </summary>
        public static bool WriteExitCounts(System.ReadOnlySpan<ulong> counts, string opening)
        {
            bool first = true;
            for (int reason = 0; reason < counts.Length; reason++)
            {
                if (counts[reason] == 0)
                    continue;
                Log.Write(first ? opening : ", ");
                first = false;
                string? name = ExitReason.Name(reason);
                if (name != null)
                    Log.Write(name);
                else
                {
                    Log.Write("reason-");
                    Log.Write((ulong)reason);
                }
                Log.WriteChar(' ');
                Log.Write(counts[reason]);
            }
            return !first;
        }

        /// <summary>
        /// One line per VM: its exit status (and the host's reason), run time, and its exits by
        /// reason name over all its vCPUs.
        /// </summary>
        public static void Report(Vm vm)
        {
            // A chain: the exits by reason are a variable number of items on the line.
            ulong f = Log.Begin();
            Log.Write("vm ");
            Log.Write((ulong)vm.Id);
            Log.Write(": exit status ");
            Log.Write(vm.ExitStatus);
            if (vm.StopReason != null)
            {
                Log.Write(" (stopped by the host: ");
                Log.Write(vm.StopReason);
                Log.Write(")");
            }
            Log.Write(", ");
            Log.Write((ulong)vm.Vcpus.Length);
            Log.Write(vm.Vcpus.Length == 1 ? " vcpu, " : " vcpus, ");
            ulong ms = vm.EndTsc > vm.StartTsc ? (vm.EndTsc - vm.StartTsc) * 1000 / Timer.TscPerSecond : 0;
            Log.Write(ms);
            Log.Write(" ms, exits");
            ulong total = 0;
            for (int i = 0; i < vm.Vcpus.Length; i++)
                total += vm.Vcpus[i].Exits;
            Log.WriteChar(' ');
            Log.Write(total);
            ulong* counts = stackalloc ulong[ExitReason.Count];
            for (int reason = 0; reason < ExitReason.Count; reason++)
            {
                counts[reason] = 0;
                for (int i = 0; i < vm.Vcpus.Length; i++)
                    counts[reason] += vm.Vcpus[i].ExitCount(reason);
            }
            if (WriteExitCounts(new System.ReadOnlySpan<ulong>(counts, ExitReason.Count), " ("))
                Log.WriteChar(')');
            Log.Write(", ");
            Log.Write(vm.Memory.FaultsHandled);
            Log.Write(" EPT faults");
            if (vm.UnassignedAccesses != 0)
            {
                Log.Write(", ");
                Log.Write(vm.UnassignedAccesses);
                Log.Write(" unassigned accesses");
            }
            // Where port I/O exits went: the ports a guest polls most.
            for (int rank = 0; rank < 3 && vm.TopPort(rank, out ushort port, out long count); rank++)
            {
                Log.Write(rank == 0 ? ", top ports " : ", ");
                Log.Hex(port);
                Log.WriteChar(' ');
                Log.Write(count);
            }
            Log.WriteChar('\n');
            Log.End(f);
        }
    }
}
