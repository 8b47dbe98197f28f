using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Tests
{
    /// <summary>Issue 11 §4 on Bochs: the postcopy move of a running guest (kernel/Virt/PostcopyMove.cs).</summary>
    internal static unsafe class PostcopyTests
    {
        // tools/StubGen/Guests/PostcopyGuest.cs
        private const ulong GuestPages = 16UL << 20 >> 12;

        /// <summary>
        /// postcopy32 runs on its own vCPU thread in VM A: it fills 2 MiB, then rewrites every dword
        /// six times, checking the last round's value each time. Soon after its fill the host moves
        /// it: A is paused and its vCPU state taken, VM B gets that state and A's devices, with its
        /// RAM empty (a userfault region), and runs at once. B's first touches of pages wait for the
        /// handler thread, which copies them from A, while a pusher copies the rest. The guest in B
        /// must find every dword, the UART's scratch register and its SSE counter as they were
        /// (exit 0); the move must have been made mid-round (A's saved state: round ≥ 1), with pages
        /// on demand and pushed, each of the 4096 exactly once; then A is released, and after B
        /// every frame is back.
        /// </summary>
        public static void MoveOfARunningGuest(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            int freeBefore = FuzzCampaign.MmFreeFrames();
            Vm? a = VmxTests.Start(t, "postcopy32");
            if (a == null)
                return;
            VmThreads.Start(a, 0);
            ulong deadline = Native.Rdtsc() + 60 * Timer.TscPerSecond;
            while (Volatile.Read(ref a.LastPhase) < 1 && !a.Stopped && Native.Rdtsc() < deadline)
                Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 1000);
            // Into its first rounds: the move catches it with data of two rounds in memory.
            Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 50);
            if (!t.Check(Volatile.Read(ref a.LastPhase) == 1 && !a.Stopped, a.StopReason ?? "postcopy32 did not reach its phase 1 (the fill) in 60 s", (ulong)a.ExitStatus))
            {
                a.Stop(255, "the test gave up");
                VmThreads.WaitAndReport(a);
                a.Release();
                return;
            }
            PostcopyMove? move = PostcopyMove.Start(a, out string? problem);
            if (move == null)
            {
                t.Fail(problem ?? "the move did not start");
                a.Stop(255, "the move did not start");
                VmThreads.WaitAndReport(a);
                a.Release();
                return;
            }
            Vm b = move.Target!;
            VcpuState moved = a.Vcpus[0].SavedState!;
            bool complete = move.Finish();                 // every page arrived; A released
            VmThreads.WaitAndReport(b);
            long onDemand = move.PagesOnDemand, pushed = move.PagesPushed;
            ulong round = moved.Registers.Rbp, left = moved.Registers.Rcx;
            ulong resumeUs = (move.ResumedTsc - move.PausedTsc) * 1_000_000 / Timer.TscPerSecond;
            int bStatus = b.ExitStatus;
            string? bReason = b.StopReason;
            b.Release();
            IsolationTests.WaitForFrames(freeBefore);
            int freeAfter = FuzzCampaign.MmFreeFrames();
            Log.Info($"postcopy: moved at rip {moved.Rip:x} in round {round} with {left} dwords of it left; on demand {(ulong)onDemand}, pushed {(ulong)pushed}, resumed after {resumeUs} us; free frames {(ulong)freeAfter} (before {(ulong)freeBefore})");
            t.Check(complete, move.Error ?? "the move did not complete");
            t.Check(bStatus == 0, bReason ?? "the guest found its memory (1), its device (2) or its SSE state (3) wrong after the move", (ulong)bStatus);
            t.Check(round >= 1 && round <= 6, "the move did not catch the guest in its rounds (rbp = the round)", round);
            t.Check(onDemand > 0, "no page came on demand: the target did not run before the pages were copied");
            t.Check(pushed > 0, "no page was pushed in the background");
            t.Check(onDemand + pushed == (long)GuestPages, "the pages did not arrive exactly once each", (ulong)(onDemand + pushed));
            t.Check(freeAfter >= freeBefore, "frames of the two VMs did not come back", (ulong)(freeBefore - freeAfter));
        }
    }
}
