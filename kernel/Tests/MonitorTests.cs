using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Monitor;
using Tandem.Kernel.Sched;
using Tandem.Kernel.Virt;
using Tandem.Kvm;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Tests
{
    /// <summary>The serial monitor (docs/monitor.md) on two running VMs, scripted as <c>monitor="cmd;cmd"</c> scripts it.</summary>
    internal static unsafe class MonitorTests
    {
        /// <summary>Text built at run time (VM ids in commands and in the lines to look for): no string concatenation in the kernel.</summary>
        private struct Text
        {
            public fixed byte Bytes[256];
            public int Length;

            public void Add(string s)
            {
                for (int i = 0; i < s.Length && Length < 256; i++)
                    Bytes[Length++] = (byte)s[i];
            }

            public void Add(ulong value)
            {
                byte* digits = stackalloc byte[20];
                int n = 0;
                do
                {
                    digits[n++] = (byte)('0' + value % 10);
                    value /= 10;
                }
                while (value != 0);
                while (n > 0 && Length < 256)
                    Bytes[Length++] = digits[--n];
            }

            public void AddHexByte(int b)
            {
                Bytes[Length++] = (byte)(b >> 4 < 10 ? '0' + (b >> 4) : 'a' + (b >> 4) - 10);
                Bytes[Length++] = (byte)((b & 15) < 10 ? '0' + (b & 15) : 'a' + (b & 15) - 10);
            }
        }

        private static void Run(ref Text script)
        {
            LogCapture.Begin();
            fixed (byte* p = script.Bytes)
                MonitorShell.RunScript(p, script.Length);
            LogCapture.End();
        }

        private static bool Saw(ref Text needle)
        {
            fixed (byte* p = needle.Bytes)
                return LogCapture.Saw(p, needle.Length);
        }

        /// <summary>"vm ID" followed by <paramref name="rest"/>.</summary>
        private static bool SawVm(Vm vm, string rest)
        {
            Text n = default;
            n.Add("vm ");
            n.Add((ulong)vm.Id);
            n.Add(rest);
            return Saw(ref n);
        }

        private static void PauseAtPhase(Vm vm, ulong phase) => vm.Pause();

        private static void Sleep(ulong ms) => Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 1000 * ms);

        private static ulong Exits(Vm vm) => Volatile.Read(ref vm.Vcpus[0].Exits);

        /// <summary>
        /// Two VMs run as threads: spin32 (A, spins until stopped) and isolate32 (B, fills 64 KiB at
        /// 0x500000 with its VM id, then its phase 1 pauses it through the monitor's own pause). Then
        /// scripts go through <see cref="MonitorShell.RunScript"/>, the entry point of
        /// <c>monitor=</c>, and each one's captured output is checked: both VM ids in <c>info vms</c>
        /// with their states, <c>pause</c> really stops A's exits and <c>resume</c> starts them again,
        /// <c>dump</c> shows the bytes B wrote (and the zeros below them), the info commands, keys
        /// through the console switch (Ctrl-A C, a line, Ctrl-A C), one-line errors for an unknown
        /// command, a bad LEN and an unknown VM, and <c>stop</c> ends A while <c>resume</c> lets B finish.
        /// </summary>
        public static void ScriptedCommandsOnTwoVms(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            Vm? a = VmxTests.Start(t, "spin32");
            Vm? b = VmxTests.Start(t, "isolate32");
            if (a == null || b == null)
                return;
            a.MaxQuanta = VmcsSetup.BudgetUnits(600);
            b.MaxQuanta = VmcsSetup.BudgetUnits(600);
            b.PhaseHandler = &PauseAtPhase;
            VmThreads.Start(a, 0);
            VmThreads.Start(b, 0);
            Vm[] both = new Vm[2];
            both[0] = a;
            both[1] = b;
            bool ok = Check(t, a, b);
            if (!ok)
            {
                a.Stop(255, "the monitor test failed");
                b.Stop(255, "the monitor test failed");
            }
            VmThreads.WaitAll(both, 2);
            GuestRunner.Report(a);
            GuestRunner.Report(b);
            if (ok)
            {
                t.Check(a.ExitStatus == 255 && (object?)a.StopReason == (object)MonitorShell.StopReason, "stop did not end vm A with status 255 by the monitor", (ulong)a.ExitStatus);
                t.Check(b.ExitStatus == 0, "vm B (isolate32) did not finish with 0 after resume", (ulong)b.ExitStatus);
            }
            Volatile.Write(ref KvmHost.ConsoleFocus, 0);
            a.Release();
            b.Release();
            t.Check(VmRegistry.Find(a.Id) == null && VmRegistry.Find(b.Id) == null, "a released VM is still listed");
        }

        private static bool Check(TestContext t, Vm a, Vm b)
        {
            // B pauses itself at phase 1 (its pages written); A spins and takes exits.
            ulong start = Native.Rdtsc();
            while (!Volatile.Read(ref b.Vcpus[0].HeldByPause) && !b.Stopped && Native.Rdtsc() - start < 120 * Timer.TscPerSecond)
                Sleep(10);
            if (!t.Check(b.LastPhase == 1 && Volatile.Read(ref b.Vcpus[0].HeldByPause), "isolate32 did not reach its phase 1 and pause", b.LastPhase))
                return false;
            start = Native.Rdtsc();
            while (Exits(a) == 0 && Native.Rdtsc() - start < 30 * Timer.TscPerSecond)
                Sleep(10);

            Text s = default;
            s.Add("info vms;info vcpus");
            Run(ref s);
            if (!t.Check(SawVm(a, ": running, 1 vcpu, 16 MiB, exits "), "info vms did not list vm A running"))
                return false;
            if (!t.Check(SawVm(b, ": paused, 1 vcpu, 16 MiB, exits "), "info vms did not list vm B paused"))
                return false;
            if (!t.Check(SawVm(b, " vcpu 0: cpu ") && LogCapture.Saw(", paused, rip 0x"), "info vcpus did not show vm B's vcpu paused with its RIP"))
                return false;
            if (!CheckRunningRip(t, a))
                return false;

            // pause A: its exits stop; resume: they go on.
            s = default;
            s.Add("pause ");
            s.Add((ulong)a.Id);
            Run(ref s);
            if (!t.Check(SawVm(a, ": paused, vcpus out of the guest 1 of 1"), "pause did not report vm A's vcpu out of the guest"))
                return false;
            Sleep(50);
            ulong before = Exits(a);
            ulong rip = a.Vcpus[0].LastRip;
            Sleep(500);
            if (!t.Check(Exits(a) == before && Volatile.Read(ref a.Vcpus[0].HeldByPause), "vm A took exits while paused", Exits(a) - before))
                return false;
            s = default;
            s.Add("resume ");
            s.Add((ulong)a.Id);
            Run(ref s);
            start = Native.Rdtsc();
            while (Exits(a) == before && Native.Rdtsc() - start < 30 * Timer.TscPerSecond)
                Sleep(10);
            if (!t.Check(SawVm(a, ": resumed") && Exits(a) > before, "vm A took no exit after resume"))
                return false;
            LogPause(rip, before);

            // dump B: 16 zero bytes below its pages, then its id as dwords (what it wrote).
            s = default;
            s.Add("dump ");
            s.Add((ulong)b.Id);
            s.Add(" 0x4ffff0 32");
            Run(ref s);
            Text zeros = default;
            zeros.Add("0x004ffff0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n");
            Text ids = default;
            ids.Add("0x00500000:");
            for (int k = 0; k < 16; k++)
            {
                ids.Add(" ");
                ids.AddHexByte((b.Id >> (8 * (k % 4))) & 0xFF);   // the id as a little-endian dword (ids pass 255 in a full run)
            }
            ids.Add("\n");
            if (!t.Check(SawVm(b, ": 32 bytes at 0x4ffff0") && Saw(ref zeros) && Saw(ref ids), "dump did not show the bytes vm B wrote at 0x500000 (and zeros below)"))
                return false;

            s = default;
            s.Add("info exits ");
            s.Add((ulong)a.Id);
            s.Add(";info exits ");
            s.Add((ulong)b.Id);
            s.Add(";info mem;info aging;info swap;help;stats on 2;stats off;focus ");
            s.Add((ulong)a.Id);
            Run(ref s);
            if (!t.Check(SawVm(a, ": exits ") && SawVm(a, " exit preemption-timer: ") && LogCapture.Saw(" exits, host time ") && LogCapture.Saw(" TSC ticks)\n"), "info exits did not give vm A's exits with their host time"))
                return false;
            if (!t.Check(SawVm(b, " exit io: ") && LogCapture.Saw("exits: host time is from each exit to the next entry"), "info exits did not give vm B's port I/O exits with their host time"))
                return false;
            if (!CheckExitTimes(t, b))
                return false;
            if (!t.Check(LogCapture.Saw("mem: kernel free frames ") && SawVm(b, ": pages 4096, resident "), "info mem did not show vm B's pages"))
                return false;
            if (!t.Check(LogCapture.Saw("aging: generations ") && (LogCapture.Saw("swap: pool ") || LogCapture.Saw("swap: off")), "info aging or info swap printed nothing"))
                return false;
            if (!t.Check(LogCapture.Saw("dump VM GPA LEN") && LogCapture.Saw("stats: on") && LogCapture.Saw("stats: off"), "help or stats gave the wrong text"))
                return false;
            if (!t.Check(SawVm(a, ": has the focus") && Volatile.Read(ref KvmHost.ConsoleFocus) == a.Id, "focus did not give vm A the keyboard"))
                return false;

            // Keys: Ctrl-A C, a command line, Ctrl-A C.
            LogCapture.Begin();
            MonitorShell.OnByte(1);
            MonitorShell.OnByte((byte)'c');
            const string Typed = "info vms\r";
            for (int i = 0; i < Typed.Length; i++)
                MonitorShell.OnByte((byte)Typed[i]);
            MonitorShell.OnByte(1);
            MonitorShell.OnByte((byte)'c');
            LogCapture.End();
            if (!t.Check(LogCapture.Saw("(tandem) info vms\n") && SawVm(a, ": running") && SawVm(a, " again (Ctrl-A C: the monitor)"), "Ctrl-A C and a typed line did not reach the monitor"))
                return false;

            s = default;
            s.Add("frobnicate;dump ");
            s.Add((ulong)b.Id);
            s.Add(" 0 5000;pause 999999");
            Run(ref s);
            if (!t.Check(LogCapture.Saw("monitor: error: unknown command (try 'help'): 'frobnicate'\n"), "an unknown command gave no one-line error"))
                return false;
            if (!t.Check(LogCapture.Saw("monitor: error: LEN must be 1 to 4096 bytes") && LogCapture.Saw("monitor: error: there is no vm 999999"), "a bad LEN or an unknown VM gave no one-line error"))
                return false;

            s = default;
            s.Add("stop ");
            s.Add((ulong)a.Id);
            s.Add(";resume ");
            s.Add((ulong)b.Id);
            Run(ref s);
            if (!t.Check(SawVm(a, ": stopped (exit status 255)") && a.Stopped, "stop did not stop vm A"))
                return false;
            start = Native.Rdtsc();
            while (Volatile.Read(ref a.RunningVcpus) != 0 && Native.Rdtsc() - start < 30 * Timer.TscPerSecond)
                Sleep(10);
            s = default;
            s.Add("info vms");
            Run(ref s);
            return t.Check(SawVm(a, ": stopped (exit status 255)"), "info vms did not show vm A stopped");
        }

        /// <summary>
        /// Running vm A's line in <c>info vcpus</c> (captured): its RIP is a real sample, inside
        /// spin32's code at 1 MiB, said to be a sample with its age; and the sample is fresh (under a
        /// second old: the vCPU's own thread takes one at every host tick and preemption-timer exit).
        /// </summary>
        private static bool CheckRunningRip(TestContext t, Vm a)
        {
            const string InGuest = ", in guest, rip 0x", InHost = ", in the host, rip 0x";
            int at = LogCapture.Find(InGuest), length = InGuest.Length;
            if (at < 0)
            {
                at = LogCapture.Find(InHost);
                length = InHost.Length;
            }
            ulong rip = 0;
            if (!t.Check(at >= 0 && LogCapture.HexAt(at + length, out rip), "info vcpus did not show running vm A's RIP (a 'rip unknown' or no line)"))
                return false;
            if (!t.Check(rip >= 0x10_0000 && rip < 0x10_1000, "running vm A's RIP is not in spin32's code at 1 MiB", rip))
                return false;
            if (!t.Check(LogCapture.Saw(" ago, at its last exit to the host)"), "info vcpus did not say the RIP is a sample and how old"))
                return false;
            ulong age = Native.Rdtsc() - Volatile.Read(ref a.Vcpus[0].LastRipTsc);
            return t.Check(Volatile.Read(ref a.Vcpus[0].LastRipTsc) != 0 && age < Timer.TscPerSecond, "running vm A's RIP sample is older than a second (TSC ticks)", age);
        }

        /// <summary>
        /// The host time per exit reason of paused vm B (its run loop has ended, so every exit is
        /// charged): each reason it took has some host time, and port I/O's mean is under 10 ms (the
        /// time from the exit to the next entry, not the guest's time).
        /// </summary>
        private static bool CheckExitTimes(TestContext t, Vm b)
        {
            Vcpu v = b.Vcpus[0];
            for (int reason = 0; reason < ExitReason.Count; reason++)
            {
                if (v.ExitCount(reason) != 0 && !t.Check(v.ExitHostTicks(reason) != 0, "an exit reason vm B took has no host time (the reason)", (ulong)reason))
                    return false;
            }
            ulong io = v.ExitCount(ExitReason.IoInstruction);
            if (!t.Check(io != 0, "vm B took no port I/O exit"))
                return false;
            ulong mean = v.ExitHostTicks(ExitReason.IoInstruction) / io;
            Console.Log.Info($"monitor test: vm B's port I/O exits: {io}, mean host time {mean} TSC ticks");
            return t.Check(mean < Timer.TscPerSecond / 100, "vm B's port I/O exits took over 10 ms each in the host (mean TSC ticks)", mean);
        }

        private static void LogPause(ulong rip, ulong exits)
        {
            Console.Log.Info($"monitor test: vm A held at rip {rip:x} with {exits} exits for 500 ms, then ran on after resume");
        }
    }
}
