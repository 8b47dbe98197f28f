using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Sched;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Tests
{
    /// <summary>
    /// Issue 13 §2: a VM's serial flood or exit storm does not stop another VM, nor the host, from
    /// making progress. The guests are progress32, serialflood32 and exitstorm32
    /// (tools/StubGen/Guests/FloodGuests.cs), each counting its rounds in a dword of its RAM.
    /// </summary>
    internal static unsafe class FloodTests
    {
        // tools/StubGen/Guests/FloodGuests.cs: TestGuests.FloodCounter
        private const uint Counter = 0x7000;

        /// <summary>Each measurement window, in host time (TSC).</summary>
        private const ulong WindowMs = 2000;

        /// <summary>How long a VM may take to start counting, and to end once the host stopped it.</summary>
        private const ulong StartSeconds = 10, StopSeconds = 5;

        private static uint ReadCounter(Vm vm)
        {
            uint value = 0;
            vm.Memory.Read(Counter, (byte*)&value, 4);
            return value;
        }

        /// <summary>Waits until <paramref name="vm"/> counts (true), or it stopped or did not count within <see cref="StartSeconds"/>.</summary>
        private static bool WaitCounting(Vm vm)
        {
            ulong deadline = Native.Rdtsc() + StartSeconds * Timer.TscPerSecond;
            while (ReadCounter(vm) == 0)
            {
                if (vm.Stopped || Native.Rdtsc() >= deadline)
                    return false;
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            }
            return !vm.Stopped;
        }

        /// <summary>Stops <paramref name="vm"/> as the host and waits for all its vCPU threads to end: false when they did not within <see cref="StopSeconds"/>.</summary>
        private static bool StopAndWait(Vm vm, string reason)
        {
            vm.Stop(0, reason);
            ulong deadline = Native.Rdtsc() + StopSeconds * Timer.TscPerSecond;
            while (Volatile.Read(ref vm.RunningVcpus) != 0)
            {
                if (Native.Rdtsc() >= deadline)
                    return false;
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            }
            return true;
        }

        /// <summary>
        /// The mm pool's free frames, waiting up to a second for them to reach <paramref name="expected"/>
        /// (a teardown another thread still holds up gives its frames back a little later; see FuzzCampaign.CheckHost).
        /// </summary>
        private static int FreeFramesAfterRelease(int expected)
        {
            int free = SmpVmTests.PoolFreeFrames();
            ulong deadline = Native.Rdtsc() + Timer.TscPerSecond;
            while (free < expected && Native.Rdtsc() < deadline)
            {
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
                free = SmpVmTests.PoolFreeFrames();
            }
            return free;
        }

        /// <summary>What one window measured.</summary>
        private struct Window
        {
            public ulong Tsc;
            public ulong Progress, Flood, FloodExits;

            public readonly ulong PerSecond(ulong count) => Tsc == 0 ? 0 : count * Timer.TscPerSecond / Tsc;
        }

        /// <summary>
        /// Blocks for <see cref="WindowMs"/> of host time and counts what progress32 (and the
        /// flooder, when there is one, with its exits of <paramref name="floodReason"/>) did meanwhile.
        /// </summary>
        private static Window Measure(Vm progress, Vm? flooder, int floodReason)
        {
            uint p0 = ReadCounter(progress);
            uint f0 = flooder != null ? ReadCounter(flooder) : 0;
            ulong e0 = flooder != null ? flooder.Vcpus[0].ExitCount(floodReason) : 0;
            ulong start = Native.Rdtsc();
            ulong end = start + WindowMs * Timer.TscPerSecond / 1000;
            // A VM this thread started wakes it when it ends: block again until the window is over.
            while (Native.Rdtsc() < end)
                Scheduler.Block(end);
            Window w;
            w.Progress = ReadCounter(progress) - p0;         // uint differences: the counters wrap
            w.Flood = flooder != null ? ReadCounter(flooder) - f0 : 0;
            w.FloodExits = flooder != null ? flooder.Vcpus[0].ExitCount(floodReason) - e0 : 0;
            w.Tsc = Native.Rdtsc() - start;
            return w;
        }

        /// <summary>
        /// Runs <paramref name="module"/> (muted, no time budget) beside the running progress VM for
        /// one window, then stops it as the host and releases it. Checks that it flooded, that the
        /// progress VM went on, that the flooder stopped when told and gave every mm frame back.
        /// </summary>
        private static bool BesideFlooder(TestContext t, Vm progress, string module, int floodReason, out Window w)
        {
            w = default;
            int freeBefore = SmpVmTests.PoolFreeFrames();
            Vm? flooder = VmxTests.Start(t, module);
            if (flooder == null)
                return false;
            flooder.MuteSerial = true;      // its bytes still go through the UART, to Vm.SerialOut, which counts them
            flooder.MaxQuanta = 0;          // no budget: only the host's Stop ends it
            VmThreads.Start(flooder, 0);
            if (!WaitCounting(flooder))
            {
                t.Fail("the flooder did not start flooding", (ulong)flooder.ExitStatus);
                if (StopAndWait(flooder, "it did not start flooding"))
                    flooder.Release();
                return false;
            }
            w = Measure(progress, flooder, floodReason);
            bool flooderRan = !flooder.Stopped;
            const string reason = "the flood window ended";
            bool stopped = StopAndWait(flooder, reason);
            if (!t.Check(stopped, "the flooder's vCPU did not end within 5 s of the host's Stop"))
                return false;
            VmThreads.Report(flooder);
            if (!t.Check(flooderRan && (object?)flooder.StopReason == (object)reason, "the flooder stopped before the host stopped it", (ulong)flooder.ExitStatus))
                return false;
            ulong muted = flooder.MutedSerialBytes;
            ulong total = ReadCounter(flooder);
            flooder.Release();
            int freeAfter = FreeFramesAfterRelease(freeBefore);
            if (!t.Check(freeAfter == freeBefore, "mm frames of the released flooder did not come back", (ulong)(long)(freeBefore - freeAfter)))
                return false;
            if (!t.Check(w.Flood > 0 && w.FloodExits >= w.Flood, "the flooder did not flood during the window (or its floods did not exit)", w.Flood))
                return false;
            // serialflood32 counts each byte after its OUT: every one of them reached Vm.SerialOut
            // through the UART (and the greeting's bytes too).
            if (floodReason == ExitReason.IoInstruction && !t.Check(muted > total, "the flood's bytes did not all go through the UART emulation", muted))
                return false;
            if (!t.Check(w.Progress > 0, "progress32 made no progress beside the flooder"))
                return false;
            return t.Check(!progress.Stopped, "progress32 stopped beside the flooder", (ulong)progress.ExitStatus);
        }

        /// <summary>
        /// progress32 runs alone for a 2 s window, then beside serialflood32 (COM1 writes as fast as
        /// it can) for one, then beside exitstorm32 (CPUID in a tight loop) for one, while the host's
        /// ticker thread wakes every 10 ms. Prints progress32's rate in each window and the ratios to
        /// its rate alone (the measurement issue 13 asks for). Fails if progress32 made no progress
        /// beside a flooder, or its rate fell below a share of its rate alone that the CPU count makes
        /// certain (see <c>boundPercent</c>), or a flooder did not stop when the host stopped it or did
        /// not give its frames back, or the ticker lost its rate (more than 10 % of its wake-ups over
        /// 5 ms late, or fewer wake-ups than 10 ms periods in the windows).
        /// </summary>
        public static void FloodBesideAnotherVmKeepsItsProgress(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            // With 1 CPU the two VMs' vCPU threads share it round robin (10 ms quanta,
            // docs/scheduler.md), so progress32 should keep about half of its rate alone, a little
            // less for the ticker and the flooder's exits handled on the shared CPU: 20 % is far
            // below that (a 2 s window holds 200 quanta, so quantum boundaries cost at most 1 %),
            // and fails when the flooder takes four quanta of every five. With 2 CPUs each vCPU
            // can have a CPU to itself and about 100 % is expected; 40 % is still below the 50 % of
            // the worst placement (both threads on one CPU until the idle one steals one).
            //
            // The bounds are starvation bounds, not fairness ones: CI runs measured 22 % to 49 %
            // beside the serial flood with 1 CPU (the uneven split is open, docs/security.md), so
            // 1 CPU fails under 10 %. The hand mutation of a 100 ms spin per UART byte gave 1 %.
            ulong boundPercent = Cpu.Count >= 2 ? 40UL : 10UL;
            int freeStart = SmpVmTests.PoolFreeFrames();
            Vm? progress = VmxTests.Start(t, "progress32");
            if (progress == null)
                return;
            progress.MaxQuanta = 0;
            VmThreads.Start(progress, 0);
            if (!t.Check(WaitCounting(progress), "progress32 did not start counting", (ulong)progress.ExitStatus))
                return;
            if (!t.Check(SmpVmTests.StartTicker(), "could not spawn the ticker"))
                return;
            Window alone = Measure(progress, null, 0);
            bool ok = t.Check(alone.Progress > 0, "progress32 made no progress alone");
            Window serial = default, storm = default;
            ok = ok && BesideFlooder(t, progress, "serialflood32", ExitReason.IoInstruction, out serial);
            ok = ok && BesideFlooder(t, progress, "exitstorm32", ExitReason.Cpuid, out storm);
            SmpVmTests.StopTicker(out ulong wakes, out ulong late);
            if (!t.Check(StopAndWait(progress, "the measurement ended"), "progress32's vCPU did not end within 5 s of the host's Stop"))
                return;
            VmThreads.Report(progress);
            progress.Release();
            if (!ok)
                return;
            ulong aloneRate = alone.PerSecond(alone.Progress);
            if (!t.Check(aloneRate > 0, "progress32's rate alone rounds to 0 counts/s"))
                return;
            ulong serialRate = serial.PerSecond(serial.Progress), stormRate = storm.PerSecond(storm.Progress);
            ulong serialPercent = serialRate * 100 / aloneRate, stormPercent = stormRate * 100 / aloneRate;
            Log.Info($"flood: {(ulong)Cpu.Count} cpus, 2 s windows: progress32 alone {aloneRate} counts/s; beside serialflood32 ({serial.PerSecond(serial.Flood)} bytes/s through COM1) {serialRate} counts/s = {serialPercent} %; beside exitstorm32 ({storm.PerSecond(storm.FloodExits)} CPUID exits/s) {stormRate} counts/s = {stormPercent} %; bound {boundPercent} %; host ticker {wakes} wakes, {late} late");
            int freeEnd = FreeFramesAfterRelease(freeStart);
            if (!t.Check(freeEnd == freeStart, "mm frames of the released VMs did not come back", (ulong)(long)(freeStart - freeEnd)))
                return;
            if (!t.Check(serialPercent >= boundPercent, "progress32's rate beside the serial flood fell below the bound (percent of its rate alone)", serialPercent))
                return;
            if (!t.Check(stormPercent >= boundPercent, "progress32's rate beside the exit storm fell below the bound (percent of its rate alone)", stormPercent))
                return;
            ulong periods = (alone.Tsc + serial.Tsc + storm.Tsc) / (Timer.TscPerSecond / 100);
            if (!t.Check(wakes >= periods, "the host's ticker woke fewer times than 10 ms periods passed in the windows", wakes))
                return;
            // Late wake-ups (over 5 ms) came in bursts (CI runs saw 0 to 400 of about 606): a
            // sleeper that woke within 1 ms of a quantum start waited for the next tick, and then
            // woke on the tick again. The timer is now armed for the end of the granularity
            // (docs/scheduler.md, sched.a_woken_sleeper_preempts_after_the_granularity).
            // Half of them late is starvation; the UART-spin mutation made 403 of 413 late.
            t.Check(late * 2 <= wakes, "more than half of the host ticker's wake-ups were over 5 ms late beside the floods", late);
        }
    }
}
