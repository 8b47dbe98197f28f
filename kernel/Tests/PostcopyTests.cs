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
        /// on demand and pushed, each of the 4096 once at most, the pages A never had left out of the
        /// push; A gives each page back as it moves and is released at the end; after B every frame
        /// is back.
        /// </summary>
        public static void MoveOfARunningGuest(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            int freeBefore = FuzzCampaign.MmFreeFrames();
            Vm? a = VmxTests.Start(t, "postcopy32");
            if (a == null)
                return;
            StartAndWaitForPhase1(a);
            // Into its first rounds: the move catches it with data of two rounds in memory.
            Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 50);
            if (!t.Check(Volatile.Read(ref a.LastPhase) == 1 && !a.Stopped, a.StopReason ?? "postcopy32 did not reach its phase 1 (the fill) in 60 s", (ulong)a.ExitStatus))
            {
                GiveUp(a, "the test gave up");
                return;
            }
            PostcopyMove? move = PostcopyMove.Start(a, out string? problem);
            if (move == null)
            {
                t.Fail(problem ?? "the move did not start");
                GiveUp(a, "the move did not start");
                return;
            }
            Vm b = move.Target!;
            VcpuState moved = a.Vcpus[0].SavedState!;
            bool complete = move.Finish();                 // every page arrived; A released
            VmThreads.WaitAndReport(b);
            long onDemand = move.PagesOnDemand, pushed = move.PagesPushed, untouched = move.PagesNeverTouched;
            ulong round = moved.Registers.Rbp, left = moved.Registers.Rcx;
            ulong resumeUs = (move.ResumedTsc - move.PausedTsc) * 1_000_000 / Timer.TscPerSecond;
            int bStatus = b.ExitStatus;
            string? bReason = b.StopReason;
            b.Release();
            IsolationTests.WaitForFrames(freeBefore);
            int freeAfter = FuzzCampaign.MmFreeFrames();
            Log.Info($"postcopy: moved at rip {moved.Rip:x} in round {round} with {left} dwords of it left; on demand {(ulong)onDemand}, pushed {(ulong)pushed}, never touched {(ulong)untouched}, resumed after {resumeUs} us; free frames {(ulong)freeAfter} (before {(ulong)freeBefore})");
            t.Check(complete, move.Error ?? "the move did not complete");
            t.Check(bStatus == 0, bReason ?? "the guest found its memory (1), its device (2) or its SSE state (3) wrong after the move", (ulong)bStatus);
            t.Check(round >= 1 && round <= 6, "the move did not catch the guest in its rounds (rbp = the round)", round);
            t.Check(onDemand > 0, "no page came on demand: the target did not run before the pages were copied");
            t.Check(pushed > 0, "no page was pushed in the background");
            // Each page arrives once at most (an install never replaces one); with the pages the
            // source never had, they cover the RAM (a page can be counted twice there only when a
            // fault moved it in the instant between the push's two looks).
            t.Check(onDemand + pushed <= (long)GuestPages && onDemand + pushed + untouched >= (long)GuestPages,
                "the pages did not arrive once each", (ulong)(onDemand + pushed + untouched));
            t.Check(untouched > 0, "no page the source never had was left out of the push");
            t.Check(freeAfter >= freeBefore, "frames of the two VMs did not come back", (ulong)(freeBefore - freeAfter));
        }

        /// <summary>
        /// The monitor's <c>move</c> on a paused VM: <c>pause A; move A; move A</c> (refused: A has
        /// stopped), then <c>resume B</c>. B stays paused until resumed, runs postcopy32 to its end
        /// (exit 0: every dword, the device and the SSE state right), and the move's figures come
        /// before the test ends.
        /// </summary>
        public static void MonitorMovesAPausedVm(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            int freeBefore = FuzzCampaign.MmFreeFrames();
            Vm? a = VmxTests.Start(t, "postcopy32");
            if (a == null)
                return;
            StartAndWaitForPhase1(a);
            byte* script = stackalloc byte[64];
            int n = Format(script, "pause ", (ulong)a.Id, ";move ", (ulong)a.Id, ";move ", (ulong)a.Id);
            Monitor.MonitorShell.RunScript(script, n);
            Vm? b = Volatile.Read(ref a.MovedTo);
            if (!t.Check(b != null, "the monitor's move did not move the VM"))
            {
                GiveUp(a, "the test gave up");
                return;
            }
            Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 20);
            bool stayedPaused = b!.Paused && b.Vcpus[0].Exits == 0;
            n = Format(script, "resume ", (ulong)b.Id, null, 0, null, 0);
            Monitor.MonitorShell.RunScript(script, n);
            b.Waiter = (ulong)Sched.Scheduler.Current;
            VmThreads.WaitAndReport(b);
            PostcopyMove.WaitUntilNoneActive();
            int status = b.ExitStatus;
            b.Release();
            IsolationTests.WaitForFrames(freeBefore);
            t.Check(stayedPaused, "the VM the paused one moved to did not stay paused until resumed");
            t.Check(status == 0, "postcopy32 found its memory, device or SSE state wrong after the monitor's move", (ulong)status);
            t.Check(FuzzCampaign.MmFreeFrames() >= freeBefore, "frames of the two VMs did not come back");
        }

        /// <summary>
        /// A guest that waits in <c>sti; hlt</c> is moved: timer32 counts PIT interrupts at 1 kHz
        /// while halted between them. The pause takes its vCPU in the host's halt (marked halted,
        /// RIP past the HLT); the VM that takes over halts it again and the PIT, its state moved
        /// with the devices, wakes it. The guest must reach its tick count and exit 0 there.
        /// </summary>
        public static void MoveOfAHaltedGuest(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            int freeBefore = FuzzCampaign.MmFreeFrames();
            Vm? a = VmxTests.Start(t, "timer32");
            if (a == null)
                return;
            VmThreads.Start(a, 0);
            Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 50);
            ulong haltsBefore = a.Vcpus[0].Halts;
            PostcopyMove? move = PostcopyMove.Start(a, out string? problem);
            if (move == null)
            {
                t.Fail(problem ?? "the move did not start");
                GiveUp(a, "the move did not start");
                return;
            }
            Vm b = move.Target!;
            bool takenHalted = a.Vcpus[0].SavedState!.Halted;
            bool complete = move.Finish();
            VmThreads.WaitAndReport(b);
            int status = b.ExitStatus;
            ulong halts = b.Vcpus[0].Halts;
            b.Release();
            IsolationTests.WaitForFrames(freeBefore);
            Log.Info($"postcopy: timer32 moved after {haltsBefore} halts, taken {(takenHalted ? "halted" : "running")}; {halts} halts in the VM it moved to");
            t.Check(complete, move.Error ?? "the move did not complete");
            t.Check(status == 0, b.StopReason ?? "timer32 did not count its ticks after the move", (ulong)status);
            t.Check(haltsBefore > 0 && halts > 0, "the guest did not halt before and after the move");
            t.Check(FuzzCampaign.MmFreeFrames() >= freeBefore, "frames of the two VMs did not come back");
        }

        // tools/StubGen/Guests/NmiInitGuest.cs and SmpGuests.cs: AP 1's NMI count and start count, its parked and done flags.
        private const uint NmiCountAp1 = 0x6080 + 4, StartsAp1 = 0x6060 + 4, NmiParked = 0x60F0, NmiDone = 0x60F4;

        /// <summary>
        /// An AP parked in <c>cli; hlt</c> is moved: nmiinit32 with 2 vCPUs, moved in the 200 ms its
        /// BSP waits after AP 1 says it parks (AP 1's second start, 2 NMIs taken) before it sends
        /// the NMI. The pause takes AP 1 in the host's park (marked parked, RIP past the HLT) and
        /// the BSP between its timer ticks; the VM that takes over parks AP 1 again, counted there
        /// (with the BSP running, that is no reason to stop it). There the BSP's NMI must wake AP 1
        /// (the guest's step 8) and its INIT-SIPI restart it (step 9): the guest exits 0 in B,
        /// AP 1 with 3 NMIs and 3 starts, the NMI injected and the park left twice in B.
        /// </summary>
        public static void MoveOfAParkedVcpu(TestContext t) => MoveParked(t, viaMonitor: false);

        /// <summary>
        /// As <see cref="MoveOfAParkedVcpu"/>, through the monitor: <c>pause A</c> while AP 1 is
        /// parked must complete (both vCPUs out of the guest) without stopping the VM, AP 1 still
        /// parked; then <c>move A</c> takes AP 1 out of its park, and <c>resume B</c> runs the guest
        /// on to its exit 0 there.
        /// </summary>
        public static void MonitorMovesAParkedVcpu(TestContext t) => MoveParked(t, viaMonitor: true);

        private static void MoveParked(TestContext t, bool viaMonitor)
        {
            if (VmxTests.Unavailable(t))
                return;
            int freeBefore = FuzzCampaign.MmFreeFrames();
            Vm? a = VmxTests.Start(t, "nmiinit32", 2);
            if (a == null)
                return;
            VmThreads.Start(a, 0);
            // AP 1 said it parks (second start, before the NMI), and the host has it in its park.
            ulong deadline = Native.Rdtsc() + 120 * Timer.TscPerSecond;
            while (!(Guest(a, NmiParked) == 1 && Guest(a, NmiCountAp1) == 2 && Volatile.Read(ref a.ParkedVcpus) == 1) && !a.Stopped && Native.Rdtsc() < deadline)
                Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 1000);
            if (!t.Check(Volatile.Read(ref a.ParkedVcpus) == 1 && !a.Stopped, a.StopReason ?? "nmiinit32's AP 1 did not park in 120 s", (ulong)a.ExitStatus))
            {
                GiveUp(a, "the test gave up");
                return;
            }
            PostcopyMove? move = null;
            Vm? b;
            bool pauseHeld = true;
            string? problem = null;
            byte* script = stackalloc byte[64];
            if (viaMonitor)
            {
                int n = Format(script, "pause ", (ulong)a.Id, null, 0, null, 0);
                Monitor.MonitorShell.RunScript(script, n);
                // The plain pause completes with AP 1 left in its park: both vCPUs are out of the
                // guest, AP 1 still counted parked, and the paused VM is not taken for one that
                // nothing can wake (no stop).
                Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 20);
                pauseHeld = Volatile.Read(ref a.Vcpus[0].InGuest) == 0 && Volatile.Read(ref a.Vcpus[1].InGuest) == 0
                    && Volatile.Read(ref a.ParkedVcpus) == 1 && !a.Stopped;
                n = Format(script, "move ", (ulong)a.Id, null, 0, null, 0);
                Monitor.MonitorShell.RunScript(script, n);
                b = Volatile.Read(ref a.MovedTo);
            }
            else
            {
                move = PostcopyMove.Start(a, out problem);
                b = move?.Target;
            }
            if (b == null)
            {
                t.Fail(problem ?? a.StopReason ?? "the VM with a parked vCPU was not moved (the monitor said why)");
                GiveUp(a, "the move did not start");
                return;
            }
            VcpuState ap = a.Vcpus[1].SavedState!;
            bool apParked = ap.Parked && !ap.Halted, bspHalted = a.Vcpus[0].SavedState!.Halted;
            bool complete = true;
            if (viaMonitor)
            {
                int n = Format(script, "resume ", (ulong)b.Id, null, 0, null, 0);
                Monitor.MonitorShell.RunScript(script, n);
                b.Waiter = (ulong)Sched.Scheduler.Current;
            }
            else
                complete = move!.Finish();
            VmThreads.WaitAndReport(b);
            if (viaMonitor)
                PostcopyMove.WaitUntilNoneActive();
            int status = b.ExitStatus;
            string? reason = b.StopReason;
            uint nmis = Guest(b, NmiCountAp1), starts = Guest(b, StartsAp1), done = Guest(b, NmiDone);
            Vcpu bAp = b.Vcpus[1];
            ulong injected = bAp.NmisInjected, wakes = bAp.ParkWakes, resets = bAp.InitResets;
            b.Release();
            IsolationTests.WaitForFrames(freeBefore);
            Log.Info($"postcopy: nmiinit32 moved with AP 1 {(apParked ? "parked" : "not parked")} at rip {ap.Rip:x}, the BSP {(bspHalted ? "halted" : "running")}; in vm {(ulong)b.Id}: {injected} NMIs injected into AP 1, {wakes} wakes from its park, {resets} INIT resets; AP 1 took {nmis} NMIs and {starts} starts in all");
            t.Check(pauseHeld, "the monitor's pause did not hold the VM with AP 1 parked (or stopped it)");
            t.Check(complete, move?.Error ?? "the move did not complete");
            t.Check(apParked, "the pause did not take AP 1 parked (the move came too late, or the state does not say so)");
            t.Check(status == 0 && reason == null, reason ?? "nmiinit32 failed after the move (8 no NMI wake from cli;hlt, 9 no INIT restart while parked)", (ulong)status);
            t.Check(nmis == 3 && starts == 3 && done == 1, "AP 1 did not take 3 NMIs and 3 starts in all", nmis);
            t.Check(injected == 1 && wakes >= 2 && resets == 1, "AP 1 was not woken from its park by the NMI and the INIT in the VM it moved to", wakes);
            t.Check(FuzzCampaign.MmFreeFrames() >= freeBefore, "frames of the two VMs did not come back");
        }

        /// <summary>The guest's dword at <paramref name="gpa"/>.</summary>
        private static uint Guest(Vm vm, uint gpa)
        {
            uint value = 0;
            vm.Memory.Read(gpa, (byte*)&value, 4);
            return value;
        }

        /// <summary>Starts <paramref name="vm"/> on its vCPU threads and waits (at most 60 s) until its guest reports phase 1 or stops.</summary>
        private static void StartAndWaitForPhase1(Vm vm)
        {
            VmThreads.Start(vm, 0);
            ulong deadline = Native.Rdtsc() + 60 * Timer.TscPerSecond;
            while (Volatile.Read(ref vm.LastPhase) < 1 && !vm.Stopped && Native.Rdtsc() < deadline)
                Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 1000);
        }

        /// <summary>A test that cannot go on: stops <paramref name="vm"/>, waits for its threads and releases it.</summary>
        private static void GiveUp(Vm vm, string reason)
        {
            vm.Stop(255, reason);
            VmThreads.WaitAndReport(vm);
            vm.Release();
        }

        /// <summary>Writes "A{x}B{y}C{z}" (decimal numbers; a null text ends it) at <paramref name="to"/>; returns its length.</summary>
        private static int Format(byte* to, string a, ulong x, string? b, ulong y, string? c, ulong z)
        {
            int n = 0;
            n = Append(to, n, a, x);
            if (b != null)
                n = Append(to, n, b, y);
            if (c != null)
                n = Append(to, n, c, z);
            return n;
        }

        private static int Append(byte* to, int n, string text, ulong value)
        {
            for (int i = 0; i < text.Length; i++)
                to[n++] = (byte)text[i];
            byte* digits = stackalloc byte[20];
            int d = 0;
            do
            {
                digits[d++] = (byte)('0' + value % 10);
                value /= 10;
            }
            while (value != 0);
            while (d > 0)
                to[n++] = digits[--d];
            return n;
        }
    }
}
