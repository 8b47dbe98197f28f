using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Memory;
using Tandem.Kernel.Sched;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;
using Tandem.Mm;

namespace Tandem.Kernel.Tests
{
    /// <summary>
    /// Issue 9 on Bochs: SMP guests whose vCPUs are threads, VMs side by side, kicks, migration and
    /// remote INVEPT. The guests are smp32 and smpspin32 (tools/StubGen/Guests/SmpGuests.cs; the
    /// addresses below are its constants) and crash32.
    /// </summary>
    internal static unsafe class SmpVmTests
    {
        // tools/StubGen/Guests/SmpGuests.cs
        private const uint SmpTicks = 0x6000, SmpIpis = 0x6020, SmpAlive = 0x6040, SmpStarts = 0x6060;
        private const uint NmiCounts = 0x6080;
        private const uint SpinProgress = 0x6080, SpinData = 0x20_0000, SpinIterations = 80;
        private const uint SmpMinTicks = 20, SmpMinIpis = 10;

        private static bool Unavailable(TestContext t, int cpusNeeded)
        {
            if (VmxTests.Unavailable(t))
                return true;
            if (Cpu.Count < cpusNeeded)
            {
                t.Skip(cpusNeeded == 2 ? "needs 2 physical CPUs (run with --cpus 2)" : "needs more physical CPUs");
                return true;
            }
            return false;
        }

        private static Vm? Create(TestContext t, string module, int cpus) => VmxTests.Start(t, module, cpus);

        private static uint Slot(Vm vm, uint table, int index)
        {
            uint value = 0;
            vm.Memory.Read(table + (uint)index * 4, (byte*)&value, 4);
            return value;
        }

        /// <summary>
        /// smp32 with 3 vCPUs on the machine's CPUs (2 under test): the guest starts its APs with
        /// INIT-SIPI-SIPI, every vCPU counts its own LAPIC timer interrupts in <c>sti; hlt</c>, and the
        /// BSP sends each AP fixed IPIs. Every vCPU must have made progress, each must have halted
        /// (blocking HLT), each AP must have started exactly once, and with 2 CPUs both must have run vCPUs.
        /// </summary>
        public static void ThreeVcpusTimersAndIpis(TestContext t)
        {
            if (Unavailable(t, 1))
                return;
            Vm? vm = Create(t, "smp32", 3);
            if (vm == null)
                return;
            VmThreads.Start(vm, 0);
            VmThreads.WaitAndReport(vm);
            if (!t.Check(vm.ExitStatus == 0, "smp32 did not exit with status 0 (1 AP not up, 2 started twice, 5 too few ticks, 6 too few IPIs)", (ulong)vm.ExitStatus))
                return;
            ulong cpusUsed = 0;
            for (int i = 0; i < 3; i++)
            {
                Vcpu v = vm.Vcpus[i];
                cpusUsed |= v.CpusUsed;
                if (!t.Check(Slot(vm, SmpTicks, i) >= SmpMinTicks, "a vCPU counted too few timer interrupts", (ulong)i))
                    return;
                if (!t.Check(Slot(vm, SmpAlive, i) == 1 && Slot(vm, SmpStarts, i) == 1, "a vCPU did not come up exactly once", (ulong)i))
                    return;
                if (i > 0 && !t.Check(Slot(vm, SmpIpis, i) >= SmpMinIpis, "an AP received too few IPIs", (ulong)i))
                    return;
                if (!t.Check(v.Halts > 0 && v.Injected >= SmpMinTicks, "a vCPU never blocked in HLT or got too few injections", (ulong)i))
                    return;
                if (!t.Check(v.MisplacedClears == 0, "a VMCLEAR ran on a CPU other than the one the VMCS was active on", (ulong)i))
                    return;
            }
            if (Cpu.Count >= 2)
                t.Check((cpusUsed & 3) == 3, "with 2 CPUs, the 3 vCPUs all ran on one of them", cpusUsed);
        }

        /// <summary>
        /// nmiinit32 with 2 vCPUs: NMIs reach AP 1 while it runs (twice: the first handler's IRET
        /// ends the NMI blocking) and while it is parked in <c>cli; hlt</c>, and INIT-SIPI restarts it
        /// from real mode while it runs and while it is parked. The guest checks each step itself
        /// (exit status 5-9 names the one that failed); the host checks its own counts of the same.
        /// </summary>
        public static void NmiAndInitReachARunningVcpu(TestContext t)
        {
            if (Unavailable(t, 1))
                return;
            Vm? vm = Create(t, "nmiinit32", 2);
            if (vm == null)
                return;
            VmThreads.Start(vm, 0);
            VmThreads.WaitAndReport(vm);
            if (!t.Check(vm.ExitStatus == 0, "nmiinit32 failed (5 no NMI while running, 6 no second NMI, 7 no INIT restart while running, 8 no NMI wake from cli;hlt, 9 no INIT restart while parked)", (ulong)vm.ExitStatus))
                return;
            Vcpu ap = vm.Vcpus[1];
            if (!t.Check(Slot(vm, NmiCounts, 1) == 3 && Slot(vm, SmpStarts, 1) == 3, "AP 1 did not take exactly 3 NMIs and 3 starts", Slot(vm, NmiCounts, 1)))
                return;
            if (!t.Check(ap.NmisInjected == 3, "the host did not inject exactly 3 NMIs into AP 1", ap.NmisInjected))
                return;
            if (!t.Check(ap.InitResets == 2, "the host did not reset AP 1 twice by INIT", ap.InitResets))
                return;
            t.Check(ap.ParkWakes >= 2, "AP 1 was not woken from cli; hlt (by the NMI and by the INIT)", ap.ParkWakes);
        }

        /// <summary>
        /// Two VMs at once: smpspin32 (2 vCPUs, each checksumming its own pages) and crash32 (a
        /// triple fault). crash32 stops alone, with the reason; smpspin32 goes on and verifies all
        /// its checksums after crash32 has ended.
        /// </summary>
        public static void TwoVmsAtOnceOneTripleFaults(TestContext t)
        {
            if (Unavailable(t, 1))
                return;
            Vm? spin = Create(t, "smpspin32", 2);
            Vm? crash = Create(t, "crash32", 1);
            if (spin == null || crash == null)
                return;
            Vm[] both = new Vm[2];
            both[0] = spin;
            both[1] = crash;
            VmThreads.Start(spin, 0);
            VmThreads.Start(crash, 0);
            VmThreads.WaitAll(both, 2);
            VmThreads.Report(spin);
            VmThreads.Report(crash);
            if (!t.Check(crash.ExitStatus == 255 && crash.StopReason != null, "crash32 was not stopped by the host", (ulong)crash.ExitStatus))
                return;
            if (!t.Check(spin.ExitStatus == 0, "smpspin32 failed (5 an AP never finished, 6-8 its pages or checksum are wrong)", (ulong)spin.ExitStatus))
                return;
            for (int i = 0; i < 2; i++)
            {
                if (!t.Check(Slot(spin, SpinProgress, i) == SpinIterations, "a vCPU of smpspin32 did not finish its iterations", (ulong)i))
                    return;
            }
            t.Check(crash.EndTsc < spin.EndTsc, "smpspin32 did not outlive crash32: the two did not run side by side");
        }

        /// <summary>
        /// smpspin32's 2 vCPUs pinned to the last CPU; the main thread, on CPU 0, write-protects their
        /// pages in the primary MMU again and again while they run. Each protection that changed
        /// entries zaps EPT leaves, and the INVEPT must run on the vCPUs' CPU (it is in the EPT's CPU
        /// mask) before Protect returns. Bochs never caches EPT translations, so the stale
        /// translation itself cannot show here (the host tests' caching TLB shows it); this counts the
        /// INVEPTs that CPU ran for others. The guest verifies its own checksums.
        /// </summary>
        public static void RemoteInveptReachesTheVcpusCpu(TestContext t)
        {
            if (Unavailable(t, 2))
                return;
            Vm? vm = Create(t, "smpspin32", 2);
            if (vm == null)
                return;
            int target = Cpu.Count - 1;
            var memory = (MmGuestMemory)vm.Memory;
            VirtAddr start = memory.HostAddress(SpinData);
            VirtAddr end = memory.HostAddress(SpinData + 2 * 0x1_0000);
            VmThreads.Start(vm, 1UL << target);
            ulong protects = 0, missed = 0;
            while (Volatile.Read(ref vm.RunningVcpus) != 0)
            {
                Scheduler.PreemptDisable();          // the mm core's locks do not disable interrupts
                bool targetInMask = (memory.Ept.CpuMask & (1UL << target)) != 0;
                long before = Volatile.Read(ref KernelEptPlatform.RemoteInveptsOn[target]);
                int changed = memory.Space.Protect(start, end, PageProt.Read);
                long after = Volatile.Read(ref KernelEptPlatform.RemoteInveptsOn[target]);
                Scheduler.PreemptEnable();
                if (changed > 0 && targetInMask)
                {
                    protects++;
                    if (after == before)
                        missed++;
                }
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 1000);
            }
            VmThreads.Report(vm);
            if (!t.Check(vm.ExitStatus == 0, "smpspin32 failed under the invalidations (6-8: its pages or checksum are wrong)", (ulong)vm.ExitStatus))
                return;
            if (!t.Check(protects >= 5, "too few write-protections happened while the vCPUs ran", protects))
                return;
            t.Check(missed == 0, "an invalidation returned without an INVEPT on the vCPUs' CPU", missed);
        }

        /// <summary>
        /// smp32 with 2 vCPUs, whose threads the main thread moves between CPU 0 and CPU 1 every
        /// 5 ms while the guest runs. Each move makes the VMCS follow: VMCLEAR on the CPU it was
        /// active on, VMPTRLD and VMLAUNCH on the new one. The guest must still pass.
        /// </summary>
        public static void VcpuMigratesWithVmclearOnTheOldCpu(TestContext t)
        {
            if (Unavailable(t, 2))
                return;
            Vm? vm = Create(t, "smp32", 2);
            if (vm == null)
                return;
            VmThreads.Start(vm, 1UL);
            ulong moves = 0;
            while (Volatile.Read(ref vm.RunningVcpus) != 0)
            {
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 200);
                ulong mask = (moves & 1) == 0 ? 2UL : 1UL;
                for (int i = 0; i < 2; i++)
                {
                    ulong thread = Volatile.Read(ref vm.Vcpus[i].Thread);
                    if (thread != 0)
                        Scheduler.SetAffinity((KThread*)thread, mask);
                }
                moves++;
            }
            VmThreads.WaitAndReport(vm);
            if (!t.Check(vm.ExitStatus == 0, "smp32 failed while its vCPUs were moved between CPUs", (ulong)vm.ExitStatus))
                return;
            ulong clears = 0;
            for (int i = 0; i < 2; i++)
            {
                Vcpu v = vm.Vcpus[i];
                clears += v.RemoteClears;
                if (!t.Check(v.MisplacedClears == 0, "a VMCLEAR ran on a CPU other than the one the VMCS was active on", (ulong)i))
                    return;
                if (!t.Check(v.CpusUsed == 3, "a vCPU did not run on both CPUs", (ulong)i))
                    return;
            }
            t.Check(clears >= 2, "the VMCS moved without a VMCLEAR on the old CPU", clears);
        }

        private static int s_tickerStop;
        private static ulong s_tickerWakes, s_tickerLate, s_tickerStart, s_tickerEnd;
        private static int s_tickerRunning;

        private static void Ticker(ulong unused)
        {
            s_tickerStart = Native.Rdtsc();
            ulong period = Timer.TscPerSecond / 100;
            ulong next = s_tickerStart + period;
            while (Volatile.Read(ref s_tickerStop) == 0)
            {
                Scheduler.Block(next);
                ulong now = Native.Rdtsc();
                if (now >= next)
                {
                    s_tickerWakes++;
                    if (now - next > period / 2)
                        s_tickerLate++;
                    next += period;
                    if (next <= now)
                        next = now + period;    // a period lost entirely counts once, as late
                }
            }
            s_tickerEnd = Native.Rdtsc();
            Volatile.Write(ref s_tickerRunning, 0);
        }

        /// <summary>
        /// Spawns the ticker: a host thread that wakes every 10 ms and counts its wake-ups, and those
        /// more than 5 ms late (in <c>s_tickerWakes</c>, <c>s_tickerLate</c>). False when it could not be spawned.
        /// </summary>
        internal static bool StartTicker()
        {
            s_tickerStop = 0;
            s_tickerWakes = 0;
            s_tickerLate = 0;
            s_tickerRunning = 1;
            if (Scheduler.Spawn("ticker", &Ticker, 0) != null)
                return true;
            s_tickerRunning = 0;
            return false;
        }

        /// <summary>Stops the ticker, waits until its thread has ended, and gives its wake-ups and late wake-ups.</summary>
        internal static void StopTicker(out ulong wakes, out ulong late)
        {
            Volatile.Write(ref s_tickerStop, 1);
            while (Volatile.Read(ref s_tickerRunning) != 0)
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            wakes = s_tickerWakes;
            late = s_tickerLate;
        }

        /// <summary>
        /// A host thread that wakes every 10 ms keeps that rate while smpspin32's 3 vCPUs spin with
        /// interrupts off on the machine's CPUs: at most 10 % of its wake-ups are more than 5 ms late.
        /// </summary>
        public static void HostThreadKeepsItsRateBesideSpinningVcpus(TestContext t)
        {
            if (Unavailable(t, 1))
                return;
            Vm? vm = Create(t, "smpspin32", 3);
            if (vm == null)
                return;
            if (!t.Check(StartTicker(), "could not spawn the ticker"))
                return;
            VmThreads.Start(vm, 0);
            VmThreads.WaitAndReport(vm);
            StopTicker(out _, out _);
            if (!t.Check(vm.ExitStatus == 0, "smpspin32 with 3 vCPUs failed", (ulong)vm.ExitStatus))
                return;
            ulong periods = (vm.EndTsc - vm.StartTsc) / (Timer.TscPerSecond / 100);
            if (!t.Check(periods >= 5, "the VM ran for less than 50 ms: too short to measure a rate", periods))
                return;
            if (!t.Check(s_tickerWakes >= periods, "the host thread woke fewer times than 10 ms periods passed while the VM ran", s_tickerWakes))
                return;
            t.Check(s_tickerLate * 10 <= s_tickerWakes, "more than 10 % of the host thread's wake-ups were over 5 ms late beside the spinning vCPUs", s_tickerLate);
        }

        internal static int PoolFreeFrames()
        {
            Scheduler.PreemptDisable();
            KernelMm.Manager!.Frames.DrainCaches();
            int free = KernelMm.Manager.Frames.BuddyFreeFrames;
            Scheduler.PreemptEnable();
            return free;
        }

        /// <summary>
        /// A VM that stopped gives its memory back through the mm core: after smpspin32 (2 vCPUs,
        /// 48 pages written) ends and is released, the mm pool has exactly as many free frames as
        /// before it was created.
        /// </summary>
        public static void StoppedVmReturnsItsMemory(TestContext t)
        {
            if (Unavailable(t, 1))
                return;
            int before = PoolFreeFrames();
            Vm? vm = Create(t, "smpspin32", 2);
            if (vm == null)
                return;
            VmThreads.Start(vm, 0);
            VmThreads.WaitAndReport(vm);
            int during = PoolFreeFrames();
            vm.Release();
            int after = PoolFreeFrames();
            if (!t.Check(vm.ExitStatus == 0, "smpspin32 failed", (ulong)vm.ExitStatus))
                return;
            if (!t.Check(during < before - 32, "the VM did not use pool frames (nothing to give back)", (ulong)(before - during)))
                return;
            t.Check(after == before, "frames of the released VM did not come back to the pool", (ulong)(before - after));
        }
    }
}
