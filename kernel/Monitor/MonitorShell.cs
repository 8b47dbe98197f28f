using System;
using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;
using Tandem.Kernel.Sched;
using Tandem.Kernel.Virt;
using Tandem.Kvm;
using Tandem.Kvm.Monitor;
using Tandem.Kvm.Vmx;
using Tandem.Mm;

namespace Tandem.Kernel.Monitor
{
    /// <summary>
    /// The operator's monitor on the serial console (docs/monitor.md). A kernel thread of its own
    /// reads COM1 every 10 ms, whatever the VMs do, and sorts the bytes with
    /// <see cref="ConsoleSwitch"/>: Ctrl-A C switches the keyboard between the VMs' serial console
    /// (the focused VM, <see cref="KvmHost.ConsoleFocus"/>) and the <c>(tandem) </c> prompt. Bytes for a
    /// VM wait in a ring that its vCPU 0 takes at its next host look (<see cref="KvmHost.ReadConsole"/>).
    /// Commands are parsed by the portable <see cref="MonitorParser"/> and run here; the command
    /// line's <c>monitor="cmd;cmd"</c> runs through <see cref="RunScript"/>, as a test does.
    /// </summary>
    public static unsafe class MonitorShell
    {
        /// <summary>The console owner of the prompt's unfinished line (VM ids are positive).</summary>
        private const int PromptOwner = -1;
        private const string Prompt = "(tandem) ";

        /// <summary>The reason <c>stop VM</c> gives the VM (its report says "stopped by the host: ...").</summary>
        public const string StopReason = "stopped from the monitor";

        private static ConsoleSwitch? s_switch;
        private static int s_busy;
        private static bool s_scriptDone;

        /// <summary>
        /// The queue of bytes typed (or pasted) for the VMs: the focused VM's vCPU 0 takes them only
        /// as its COM1 has room (Events.PollConsole), so a paste waits here while the guest drains
        /// its FIFO. 16 KiB: a long pasted line or a short script; beyond that bytes are dropped,
        /// counted in <see cref="BytesDropped"/> and reported by a <c>console:</c> line.
        /// </summary>
        public const int RingSize = 16384;
        private static byte[]? s_ring;
        private static int s_ringHead, s_ringTail;
        private static Sync.SpinLock s_ringLock;
        private static ulong s_droppedReported, s_nextDropReportTsc;

        private static ulong s_statsEveryTsc, s_nextStatsTsc;
        private static byte[]? s_dump;

        /// <summary>Input bytes read from COM1 by the monitor thread, and those that found the VM ring full.</summary>
        public static ulong BytesRead, BytesDropped;

        /// <summary>The monitor is running: typed bytes for the VMs go through its queue (<see cref="RingSize"/>).</summary>
        public static bool Started => s_started;

        private static bool s_started;

        /// <summary>Bytes typed for the VMs that wait in the queue now.</summary>
        public static int VmInputWaiting
        {
            get
            {
                int n = Volatile.Read(ref s_ringHead) - Volatile.Read(ref s_ringTail);
                return n < 0 ? n + RingSize : n;
            }
        }

        /// <summary>At boot, after the scheduler and <see cref="KvmGlue.Initialize"/>: takes COM1's input and starts the thread.</summary>
        public static void Start()
        {
            s_switch = new ConsoleSwitch();
            s_ring = new byte[RingSize];
            s_dump = new byte[MonitorParser.MaxDump];
            KvmHost.ReadConsole = &ReadVmByte;
            if (Scheduler.Spawn("monitor", &ThreadMain, 0) == null)
            {
                KvmHost.ReadConsole = &Serial.TryRead;
                Log.Line("monitor: no memory for the monitor thread; console input goes to the VMs as before");
            }
            else
                s_started = true;
        }

        /// <summary>
        /// The monitor thread: COM1's input every 10 ms (at most 256 bytes a round, so a stream of
        /// typed bytes never keeps it from its other work), the focus kept valid, the stats lines.
        /// It reads the UART itself, so a guest that floods its serial output delays nothing here but
        /// the console lines (which wait their turn for the log's lock, one guest line at a time).
        /// </summary>
        private static void ThreadMain(ulong argument)
        {
            while (true)
            {
                if (TryEnter())
                {
                    for (int n = 0; n < 256; n++)
                    {
                        int b = Serial.TryRead();
                        if (b < 0)
                            break;
                        BytesRead++;
                        Feed((byte)b);
                    }
                    Leave();
                }
                int focus = Volatile.Read(ref KvmHost.ConsoleFocus);
                if (focus != 0)
                {
                    Vm? vm = VmRegistry.Find(focus);
                    if (vm == null || vm.Stopped)
                        Volatile.Write(ref KvmHost.ConsoleFocus, 0);     // its VM ended: any VM's again
                }
                ReportDrops();
                if (s_statsEveryTsc != 0 && Native.Rdtsc() >= s_nextStatsTsc)
                {
                    s_nextStatsTsc = Native.Rdtsc() + s_statsEveryTsc;
                    PrintStatsLines();
                }
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            }
        }

        /// <summary>
        /// A <c>console:</c> line when bytes typed for the VMs were dropped since the last one (the
        /// queue was full: the focused VM does not read its COM1 as fast as input comes), at most
        /// one a second, so a stuck guest cannot flood the log with them.
        /// </summary>
        private static void ReportDrops()
        {
            ulong dropped = Volatile.Read(ref BytesDropped);
            if (dropped == s_droppedReported || Native.Rdtsc() < s_nextDropReportTsc)
                return;
            s_nextDropReportTsc = Native.Rdtsc() + Timer.TscPerSecond;
            Log.Info($"console: {dropped - s_droppedReported} typed bytes for the VMs dropped: the {(ulong)RingSize}-byte input queue was full (the focused VM is not reading its COM1); {dropped} dropped since boot");
            s_droppedReported = dropped;
        }

        private static bool TryEnter() => Interlocked.CompareExchange(ref s_busy, 1, 0) == 0;

        private static void Enter()
        {
            while (!TryEnter())
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 1000);
        }

        private static void Leave() => Volatile.Write(ref s_busy, 0);

        /// <summary>A byte typed on the console, as the monitor thread hands it over (tests call it too).</summary>
        public static void OnByte(byte b)
        {
            Enter();
            Feed(b);
            Leave();
        }

        private static void Feed(byte b)
        {
            ConsoleSwitch s = s_switch!;
            switch (s.Feed(b))
            {
                case SwitchAction.ToVm:
                    PushVm(b);
                    break;
                case SwitchAction.ToVmAfterCtrlA:
                    PushVm(ConsoleSwitch.CtrlA);
                    PushVm(b);
                    break;
                case SwitchAction.Toggle:
                    if (s.InMonitor)
                    {
                        Log.Line("monitor: type 'help' for the commands; Ctrl-A C returns to the VMs' console");
                        ShowPrompt();
                    }
                    else
                    {
                        int focus = Volatile.Read(ref KvmHost.ConsoleFocus);
                        if (focus == 0)
                            Log.Info($"monitor: the keyboard reaches the running VM again (Ctrl-A C: the monitor)");
                        else
                            Log.Info($"monitor: the keyboard reaches vm {(ulong)focus} again (Ctrl-A C: the monitor)");
                    }
                    break;
                case SwitchAction.Help:
                    Log.Line("keys: Ctrl-A C switches between the VMs' console and the monitor; Ctrl-A Ctrl-A sends Ctrl-A; Ctrl-A H shows this");
                    if (s.InMonitor)
                        ShowPrompt();
                    break;
                case SwitchAction.Echo:
                    ShowPrompt();
                    break;
                case SwitchAction.Erase:
                    {
                        bool continues = false;
                        ulong f = Log.BeginAs(PromptOwner, &continues);
                        if (continues)
                            Log.Write("\b \b");
                        else
                            WritePromptLine(s.Line);
                        Log.LeaveOpen(PromptOwner);
                        Log.End(f);
                    }
                    break;
                case SwitchAction.Line:
                    {
                        bool continues = false;
                        ulong f = Log.BeginAs(PromptOwner, &continues);
                        if (!continues)
                            WritePromptLine(s.Line);
                        Log.WriteChar('\n');
                        Log.End(f);
                        Execute(s.Line);
                        s.ClearLine();
                        ShowPrompt();
                    }
                    break;
            }
        }

        /// <summary>The prompt with the line typed so far, left unfinished (what a VM prints meanwhile ends it; the next key shows it again).</summary>
        private static void ShowPrompt()
        {
            ConsoleSwitch s = s_switch!;
            bool continues = false;
            ulong f = Log.BeginAs(PromptOwner, &continues);
            if (continues && s.Line.Length > 0)
                Log.WriteChar((char)s.Line[s.Line.Length - 1]);
            else if (!continues)
                WritePromptLine(s.Line);
            Log.LeaveOpen(PromptOwner);
            Log.End(f);
        }

        private static void WritePromptLine(ReadOnlySpan<byte> line)
        {
            Log.Write(Prompt);
            for (int i = 0; i < line.Length; i++)
                Log.WriteChar((char)line[i]);
        }

        private static void PushVm(byte b)
        {
            ulong flags = s_ringLock.Acquire();
            int next = (s_ringHead + 1) % RingSize;
            if (next == s_ringTail)
                BytesDropped++;
            else
            {
                s_ring![s_ringHead] = b;
                s_ringHead = next;
            }
            s_ringLock.Release(flags);
        }

        /// <summary>Empties the queue of bytes typed for the VMs (a test that filled it with no VM to read them).</summary>
        public static void DiscardVmInput()
        {
            ulong flags = s_ringLock.Acquire();
            s_ringTail = s_ringHead;
            s_ringLock.Release(flags);
        }

        /// <summary><see cref="KvmHost.ReadConsole"/>: the next byte typed for the VMs, or -1.</summary>
        private static int ReadVmByte()
        {
            if (Volatile.Read(ref s_ringHead) == Volatile.Read(ref s_ringTail))
                return -1;
            ulong flags = s_ringLock.Acquire();
            int b = -1;
            if (s_ringTail != s_ringHead)
            {
                b = s_ring![s_ringTail];
                s_ringTail = (s_ringTail + 1) % RingSize;
            }
            s_ringLock.Release(flags);
            return b;
        }

        /// <summary>
        /// Runs the command line's <c>monitor="cmd;cmd"</c> once (later calls do nothing): when the
        /// vm= VMs have started, or at the end of a run without them.
        /// </summary>
        public static void RunCommandLineScript()
        {
            if (s_scriptDone || CommandLine.MonitorScript == null)
                return;
            s_scriptDone = true;
            RunScript(CommandLine.MonitorScript, CommandLine.MonitorScriptLength);
        }

        /// <summary>
        /// Runs the commands of <paramref name="text"/>, separated by ';', one after another; each is
        /// shown after the prompt, as if typed. A bad one prints its one-line error and the next runs.
        /// </summary>
        public static void RunScript(byte* text, int length)
        {
            ReadOnlySpan<byte> script = new ReadOnlySpan<byte>(text, length);
            int at = 0;
            while (MonitorParser.NextCommand(script, ref at, out int start, out int n))
            {
                ReadOnlySpan<byte> line = script.Slice(start, n);
                Log.Info($"{Prompt}{line}");
                Enter();
                Execute(line);
                Leave();
            }
        }

        private static void Execute(ReadOnlySpan<byte> line)
        {
            MonitorCommand c = MonitorParser.Parse(line);
            if (!c.Ok)
            {
                Error(c.ErrorText!, line);
                return;
            }
            switch (c.Verb)
            {
                case MonitorVerb.Empty:
                    return;
                case MonitorVerb.Help:
                    for (int i = 0; MonitorParser.HelpLine(i) != null; i++)
                        Log.Line(MonitorParser.HelpLine(i)!);
                    return;
                case MonitorVerb.InfoVms:
                    InfoVms();
                    return;
                case MonitorVerb.InfoVcpus:
                    InfoVcpus();
                    return;
                case MonitorVerb.InfoMem:
                    InfoMem();
                    return;
                case MonitorVerb.InfoExits:
                    InfoExits(c.Vm, line);
                    return;
                case MonitorVerb.InfoAging:
                    InfoAging();
                    return;
                case MonitorVerb.InfoSwap:
                    InfoSwap();
                    return;
                case MonitorVerb.StatsOn:
                    s_statsEveryTsc = (ulong)c.IntervalSeconds * Timer.TscPerSecond;
                    s_nextStatsTsc = Native.Rdtsc();
                    {
                        Log.Info($"stats: on, every {(ulong)c.IntervalSeconds} s: a line per VM (stats t_ms= vm= ...) and one for the mm core (stats mm ...)");
                    }
                    return;
                case MonitorVerb.StatsOff:
                    s_statsEveryTsc = 0;
                    Log.Line("stats: off");
                    return;
            }
            Vm? vm = VmRegistry.Find(c.Vm);
            if (vm == null)
            {
                NoSuchVm(c.Vm, line);
                return;
            }
            switch (c.Verb)
            {
                case MonitorVerb.Pause:
                    Pause(vm);
                    return;
                case MonitorVerb.Resume:
                    vm.Resume();
                    VmLine(vm, vm.Stopped ? ": resumed, but it has stopped" : ": resumed");
                    return;
                case MonitorVerb.Stop:
                    vm.Stop(255, StopReason);
                    VmLine(vm, ": stopped (exit status 255)");
                    return;
                case MonitorVerb.Focus:
                    Volatile.Write(ref KvmHost.ConsoleFocus, vm.Id);
                    VmLine(vm, ": has the focus: the keyboard reaches its COM1 (Ctrl-A C switches between it and the monitor)");
                    return;
                case MonitorVerb.Dump:
                    Dump(vm, c.Gpa, c.Length, line);
                    return;
                case MonitorVerb.Move:
                    Move(vm);
                    return;
            }
        }

        /// <summary>
        /// <c>move VM</c>: the postcopy move of the VM to a new one (kernel/Virt/PostcopyMove.cs).
        /// The new VM runs at once; its pages follow on demand and from a background push, and the
        /// old VM is released when every page has arrived (a line with the figures says so).
        /// </summary>
        private static void Move(Vm vm)
        {
            if (vm.Stopped)
            {
                VmLine(vm, ": has stopped: there is nothing to move");
                return;
            }
            PostcopyMove? move = PostcopyMove.StartDetached(vm, out string? problem);
            if (move == null)
            {
                Log.Error($"monitor: vm {(ulong)vm.Id} cannot be moved: {problem}");
                return;
            }
            if (problem != null)
                Log.Warn($"monitor: vm {(ulong)vm.Id}: {problem}");
            Vm to = move.Target!;
            if (to.Paused)
                Log.Info($"vm {(ulong)vm.Id}: moved to vm {(ulong)to.Id} (postcopy), paused as vm {(ulong)vm.Id} was ('resume {(ulong)to.Id}' runs it); its pages follow on demand and in the background");
            else
                Log.Info($"vm {(ulong)vm.Id}: moved to vm {(ulong)to.Id} (postcopy), which runs now; its pages follow on demand and in the background");
        }

        /// <summary>The one-line error: <c>monitor: error: WHY: 'LINE'</c>.</summary>
        private static void Error(string why, ReadOnlySpan<byte> line)
        {
            // A chain: the line's bytes go out one by one, a control character shown as '?'.
            ulong f = Log.Begin();
            Log.Write("monitor: error: ");
            Log.Write(why);
            Log.Write(": '");
            for (int i = 0; i < line.Length && i < MonitorParser.MaxLine; i++)
                Log.WriteChar(line[i] >= 32 && line[i] < 127 ? (char)line[i] : '?');
            Log.Write("'\n");
            Log.End(f);
        }

        private static void NoSuchVm(int id, ReadOnlySpan<byte> line)
        {
            // A chain: the line's bytes go out one by one, a control character shown as '?'.
            ulong f = Log.Begin();
            Log.Write("monitor: error: there is no vm ");
            Log.Write((ulong)id);
            Log.Write(" ('info vms' lists them): '");
            for (int i = 0; i < line.Length; i++)
                Log.WriteChar(line[i] >= 32 && line[i] < 127 ? (char)line[i] : '?');
            Log.Write("'\n");
            Log.End(f);
        }

        private static void VmLine(Vm vm, string text)
        {
            Log.Info($"vm {(ulong)vm.Id}{text}");
        }

        /// <summary>Pauses the VM and waits up to 200 ms for every started vCPU to leave guest mode; says how many did.</summary>
        private static void Pause(Vm vm)
        {
            vm.Pause();
            int held = 0;
            ulong deadline = Native.Rdtsc() + Timer.TscPerSecond / 5;
            do
            {
                held = 0;
                for (int i = 0; i < vm.Vcpus.Length; i++)
                {
                    Vcpu v = vm.Vcpus[i];
                    if (Volatile.Read(ref v.InGuest) == 0)
                        held++;
                }
                if (held == vm.Vcpus.Length || vm.Stopped)
                    break;
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 1000);
            }
            while (Native.Rdtsc() < deadline);
            Log.Info($"vm {(ulong)vm.Id}: paused, vcpus out of the guest {(ulong)held} of {(ulong)vm.Vcpus.Length}");
        }

        /// <summary>The listed VM with the smallest id above <paramref name="after"/> (the VMs in id order), or null.</summary>
        private static Vm? NextById(int after)
        {
            Vm? best = null;
            for (int i = 0; i < VmRegistry.Capacity; i++)
            {
                Vm? vm = VmRegistry.At(i);
                if (vm != null && vm.Id > after && (best == null || vm.Id < best.Id))
                    best = vm;
            }
            return best;
        }

        private static ulong TotalExits(Vm vm)
        {
            ulong total = 0;
            for (int i = 0; i < vm.Vcpus.Length; i++)
                total += vm.Vcpus[i].Exits;
            return total;
        }

        /// <summary>A VM's state that is not stopped (a stopped one's line also has its exit status).</summary>
        private static string State(Vm vm)
        {
            if (Volatile.Read(ref vm.Paused))
                return "paused";
            if (vm.Vcpus.Length > 0 && Volatile.Read(ref vm.Vcpus[0].Thread) == 0)
                return "created, not started";
            return "running";
        }

        private static void InfoVms()
        {
            int count = 0;
            for (Vm? vm = NextById(0); vm != null; vm = NextById(vm.Id))
            {
                count++;
                string vcpus = vm.Vcpus.Length == 1 ? "vcpu" : "vcpus";
                string focus = Volatile.Read(ref KvmHost.ConsoleFocus) == vm.Id ? ", focus" : "";
                if (vm.Stopped)
                    Log.Info($"vm {(ulong)vm.Id}: stopped (exit status {vm.ExitStatus}), {(ulong)vm.Vcpus.Length} {vcpus}, {vm.Memory.Size >> 20} MiB, exits {TotalExits(vm)}{focus}");
                else
                    Log.Info($"vm {(ulong)vm.Id}: {State(vm)}, {(ulong)vm.Vcpus.Length} {vcpus}, {vm.Memory.Size >> 20} MiB, exits {TotalExits(vm)}{focus}");
            }
            if (count == 0)
                Log.Line("vms: none");
            Log.Info($"console: {(ulong)VmInputWaiting} typed bytes wait for the VMs (the queue holds {(ulong)(RingSize - 1)}), {Volatile.Read(ref BytesDropped)} dropped since boot");
        }

        private static void InfoVcpus()
        {
            int count = 0;
            for (Vm? vm = NextById(0); vm != null; vm = NextById(vm.Id))
            {
                for (int i = 0; i < vm.Vcpus.Length; i++)
                {
                    count++;
                    Vcpu v = vm.Vcpus[i];
                    KThread* t = (KThread*)Volatile.Read(ref v.Thread);
                    // A chain: the cpu (or '-'), the state and WriteRip's part (known or not, with
                    // its age) vary independently; as Log.Info lines that is four long variants.
                    ulong f = Log.Begin();
                    Log.Write("vm ");
                    Log.Write((ulong)vm.Id);
                    Log.Write(" vcpu ");
                    Log.Write((ulong)i);
                    Log.Write(": cpu ");
                    if (t != null)
                        Log.Write((ulong)t->Cpu);
                    else
                        Log.WriteChar('-');
                    Log.Write(", ");
                    if (vm.Stopped)
                        Log.Write("stopped");
                    else if (!v.Started)
                        Log.Write("waiting for SIPI");
                    else if (Volatile.Read(ref v.InGuest) != 0)
                        Log.Write("in guest");
                    else if (Volatile.Read(ref v.HeldByPause))
                        Log.Write("paused");
                    else if (t == null)
                        Log.Write("not running");
                    else if (t->State == ThreadState.Blocked)
                        Log.Write(Volatile.Read(ref vm.Paused) ? "halted, paused" : "halted");
                    else
                        Log.Write("in the host");
                    WriteRip(v);
                    Log.Write(", exits ");
                    Log.Write(v.Exits);
                    Log.WriteChar('\n');
                    Log.End(f);
                }
            }
            if (count == 0)
                Log.Line("vcpus: none");
        }

        /// <summary>
        /// ", rip 0x... (sampled N ago, at ...)": the RIP the vCPU's own thread read from its VMCS at
        /// its last host look (<see cref="Events.SampleRip"/>: a host tick, a preemption-timer exit, a
        /// halt, the run loop's end) and how old that sample is. No other CPU can read a VMCS current
        /// elsewhere, so for a vCPU in guest mode this is its most recent sample, at most a host tick
        /// (10 ms) or a preemption quantum old while it runs.
        /// </summary>
        private static void WriteRip(Vcpu v)
        {
            ulong at = Volatile.Read(ref v.LastRipTsc);
            ulong rip = Volatile.Read(ref v.LastRip);
            if (at == 0)
            {
                Log.Write(", rip unknown (not sampled yet: the vcpu has not exited to the host)");
                return;
            }
            ulong now = Native.Rdtsc();
            Log.Write(", rip ");
            Log.Hex(rip);
            Log.Write(" (sampled ");
            WriteDuration(TscClock.TscToNs(now > at ? now - at : 0));
            Log.Write(" ago, at its last exit to the host)");
        }

        private static void WriteDuration(ulong ns) => Log.WriteChars(Duration(ns, stackalloc char[32]));

        /// <summary>
        /// A duration in the unit that keeps 2 to 4 digits: ns, us, ms or s (one decimal above ns),
        /// as text in <paramref name="text"/> (32 chars): a plain value for a log line's hole.
        /// </summary>
        private static ReadOnlySpan<char> Duration(ulong ns, Span<char> text)
        {
            ulong unit;
            string name;
            int n;
            if (ns < 10_000)
            {
                ns.TryFormat(text, out n);
                return Append(text, n, " ns");
            }
            if (ns < 10_000_000)
            {
                unit = 1_000;
                name = " us";
            }
            else if (ns < 10_000_000_000)
            {
                unit = 1_000_000;
                name = " ms";
            }
            else
            {
                unit = 1_000_000_000;
                name = " s";
            }
            (ns / unit).TryFormat(text, out n);
            text[n++] = '.';
            (ns % unit * 10 / unit).TryFormat(text.Slice(n), out int tenths);
            return Append(text, n + tenths, name);
        }

        private static ReadOnlySpan<char> Append(Span<char> text, int length, string tail)
        {
            for (int i = 0; i < tail.Length; i++)
                text[length + i] = tail[i];
            return text.Slice(0, length + tail.Length);
        }

        private static void InfoExits(int id, ReadOnlySpan<byte> line)
        {
            if (id != 0 && VmRegistry.Find(id) == null)
            {
                NoSuchVm(id, line);
                return;
            }
            ulong* counts = stackalloc ulong[ExitReason.Count];
            ulong* ticks = stackalloc ulong[ExitReason.Count];
            Span<char> hostText = stackalloc char[32], meanText = stackalloc char[32];
            for (Vm? vm = NextById(0); vm != null; vm = NextById(vm.Id))
            {
                if (id != 0 && vm.Id != id)
                    continue;
                // One snapshot of the counters, so that the total is their sum (the vCPUs go on meanwhile).
                ulong total = 0, totalTicks = 0;
                for (int reason = 0; reason < ExitReason.Count; reason++)
                {
                    ulong n = 0, t = 0;
                    for (int i = 0; i < vm.Vcpus.Length; i++)
                    {
                        n += vm.Vcpus[i].ExitCount(reason);
                        t += vm.Vcpus[i].ExitHostTicks(reason);
                    }
                    counts[reason] = n;
                    ticks[reason] = t;
                    total += n;
                    totalTicks += t;
                }
                // A chain: the exits by reason are a variable number of items on the line.
                ulong f = Log.Begin();
                Log.Write("vm ");
                Log.Write((ulong)vm.Id);
                Log.Write(": exits ");
                Log.Write(total);
                VmThreads.WriteExitCounts(new System.ReadOnlySpan<ulong>(counts, ExitReason.Count), ": ");
                Log.Write("; in the host ");
                WriteDuration(TscClock.TscToNs(totalTicks));
                Log.WriteChar('\n');
                Log.End(f);
                for (int reason = 0; reason < ExitReason.Count; reason++)
                {
                    if (counts[reason] == 0)
                        continue;
                    ulong n = counts[reason];
                    ulong meanTicks = ticks[reason] / n;
                    string exits = n == 1 ? "exit" : "exits";
                    ReadOnlySpan<char> host = Duration(TscClock.TscToNs(ticks[reason]), hostText);
                    ReadOnlySpan<char> mean = Duration(TscClock.TscToNs(meanTicks), meanText);
                    string? name = ExitReason.Name(reason);
                    if (name != null)
                        Log.Info($"vm {(ulong)vm.Id} exit {name}: {n} {exits}, host time {host}, mean {mean} ({meanTicks} TSC ticks)");
                    else
                        Log.Info($"vm {(ulong)vm.Id} exit reason-{(ulong)reason}: {n} {exits}, host time {host}, mean {mean} ({meanTicks} TSC ticks)");
                }
            }
            Log.Info($"exits: host time is from each exit to the next entry (the TSC, {Timer.TscPerSecond / 1_000_000} MHz), waits included: a hlt's is the guest's halt, and a preempted vcpu's thread counts");
        }

        private static void InfoMem()
        {
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            // A chain: the generations are a variable number of figures on the line.
            ulong f = Log.Begin();
            Log.Write("mem: kernel free frames ");
            Log.Write(FrameAllocator.FreeFrames);
            if (mm != null)
            {
                Log.Write(", mm pool free frames ");
                Log.Write((ulong)mm.Frames.BuddyFreeFrames);
                Log.Write(", resident guest pages ");
                Log.Write((ulong)mm.Lru.Listed);
                Log.Write(", limit ");
                if (mm.ResidentLimit == 0)
                    Log.Write("none");
                else
                    Log.Write((ulong)mm.ResidentLimit);
                Log.Write(", pages per generation (oldest first) ");
                WriteGenerations(mm);
            }
            Log.WriteChar('\n');
            Log.End(f);
            if (mm == null)
                return;
            int* gens = stackalloc int[LruGenerations<KernelMmPlatform>.MaxGenerations];
            for (Vm? vm = NextById(0); vm != null; vm = NextById(vm.Id))
            {
                if (vm.Memory is not MmGuestMemory memory)
                    continue;
                ulong pages = memory.Size >> 12;
                bool walked = WalkGuestRam(mm, memory, gens, out int minSeq, out ulong resident, out ulong swapped, out ulong shared);
                // A chain: the generations are a variable number of figures on the line.
                f = Log.Begin();
                Log.Write("vm ");
                Log.Write((ulong)vm.Id);
                Log.Write(": pages ");
                Log.Write(pages);
                if (!walked)
                    Log.Write(", memory already released");
                else
                {
                    Log.Write(", resident ");
                    Log.Write(resident);
                    Log.Write(", swapped ");
                    Log.Write(swapped);
                    Log.Write(", shared ");
                    Log.Write(shared);
                    Log.Write(", per generation (oldest first) ");
                    WriteVmGenerations(mm, gens, minSeq);
                }
                Log.WriteChar('\n');
                Log.End(f);
            }
        }

        /// <summary>
        /// Walks a VM's guest RAM in its host address space (the mm core keeps no per-space
        /// counters): resident, swapped and shared (mapped more than once, i.e. merged) pages, and
        /// resident pages per LRU generation into <paramref name="gens"/> (index 0 = <paramref name="minSeq"/>,
        /// the oldest). False when the space's memory is already released (nothing counted).
        /// </summary>
        private static bool WalkGuestRam(MemoryManager<KernelMmPlatform> mm, MmGuestMemory memory, int* gens, out int minSeq,
            out ulong resident, out ulong swapped, out ulong shared)
        {
            minSeq = mm.Lru.MinSeq;
            for (int g = 0; g < LruGenerations<KernelMmPlatform>.MaxGenerations; g++)
                gens[g] = 0;
            resident = swapped = shared = 0;
            ulong pages = memory.Size >> 12;
            if (!memory.Space.TryGetUser())
                return false;
            for (ulong p = 0; p < pages; p++)
            {
                memory.Space.Translate(memory.HostAddress(p << 12), out PageTableEntry leaf, out int level);
                if (leaf.IsPresent)
                {
                    resident++;
                    if (level != 1)
                        continue;
                    Pfn frame = leaf.LeafAddress(1).Pfn;
                    if (mm.Frames.MapCountOf(frame) > 1)
                        shared++;
                    int g = mm.Lru.GenerationOf(frame) - minSeq;
                    if (g >= 0 && g < LruGenerations<KernelMmPlatform>.MaxGenerations)
                        gens[g]++;
                }
                else if (level == 1 && leaf.IsSwap)
                    swapped++;
            }
            memory.Space.PutUser();
            return true;
        }

        /// <summary>A VM's resident pages per generation from <see cref="WalkGuestRam"/>, oldest first, '/' between.</summary>
        private static void WriteVmGenerations(MemoryManager<KernelMmPlatform> mm, int* gens, int minSeq)
        {
            int span = mm.Lru.MaxSeq - minSeq + 1;
            if (span > LruGenerations<KernelMmPlatform>.MaxGenerations)
                span = LruGenerations<KernelMmPlatform>.MaxGenerations;
            for (int g = 0; g < span; g++)
            {
                if (g != 0)
                    Log.WriteChar('/');
                Log.Write((ulong)gens[g]);
            }
        }

        private static void WriteGenerations(MemoryManager<KernelMmPlatform> mm)
        {
            for (int seq = mm.Lru.MinSeq; seq <= mm.Lru.MaxSeq; seq++)
            {
                if (seq != mm.Lru.MinSeq)
                    Log.WriteChar('/');
                Log.Write((ulong)mm.Lru.PagesIn(seq));
            }
        }

        private static void InfoAging()
        {
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            if (mm == null)
            {
                Log.Line("aging: the mm core is not running");
                return;
            }
            LruStats s = mm.Lru.Stats;
            // A chain: the generations are a variable number of figures on the line.
            ulong f = Log.Begin();
            Log.Write("aging: generations ");
            Log.Write((ulong)mm.Lru.MinSeq);
            Log.Write("..");
            Log.Write((ulong)mm.Lru.MaxSeq);
            Log.Write(", pages per generation (oldest first) ");
            WriteGenerations(mm);
            Log.Write(", aging passes ");
            Log.Write((ulong)s.AgingPasses);
            Log.Write(" (reclaimer thread ");
            Log.Write((ulong)KernelReclaim.ThreadAgingPasses);
            Log.Write("), pages aged ");
            Log.Write((ulong)s.PagesAged);
            Log.Write(", look-around promotions ");
            Log.Write((ulong)s.LookAroundPromotions);
            Log.Write(", evictions ");
            Log.Write((ulong)s.Evictions);
            Log.Write(", refaults ");
            Log.Write((ulong)s.Refaults);
            Log.WriteChar('\n');
            Log.End(f);
        }

        private static void InfoSwap()
        {
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            SwapMap<KernelMmPlatform>? swap = mm?.Swap;
            CompressedSwapPool<KernelMmPlatform>? pool = KernelReclaim.Pool;
            if (swap == null || pool == null)
            {
                Log.Line("swap: off");
                return;
            }
            CompressedSwapPoolStatistics p = pool.ReadStatistics();
            ulong stored = (ulong)(p.CompressedPages + p.RawPages);
            ulong hundredths = p.FramesInUse == 0 ? 0 : stored * 100 / (ulong)p.FramesInUse;
            Log.Info($"swap: pool {(ulong)pool.LimitFrames * FrameAllocator.PageSize >> 20} MiB, frames in use {(ulong)p.FramesInUse}, pages compressed {(ulong)p.CompressedPages}, raw {(ulong)p.RawPages}, zero {(ulong)p.ZeroPages}, same-filled {(ulong)p.SameFilledPages}, ratio {hundredths / 100}.{hundredths % 100:d2}, swap-outs {(ulong)swap.SwapOuts}, swap-ins {(ulong)swap.SwapIns}, slots in use {(ulong)swap.SlotsInUse}");
        }

        /// <summary>
        /// <c>dump VM GPA LEN</c>: the bytes through a mirror view of the VM's address space (an
        /// inspector with its own MMU notifier, as docs/reclaim.md describes), made for this dump and
        /// destroyed after it. A page the guest never touched is faulted in (zero), as a guest read would.
        /// </summary>
        private static void Dump(Vm vm, ulong gpa, int length, ReadOnlySpan<byte> line)
        {
            if (vm.Memory is not MmGuestMemory memory)
            {
                Error("the VM's memory is not the mm core's: there is no view to read it through", line);
                return;
            }
            if (gpa + (ulong)length > memory.Size)
            {
                Error("GPA + LEN is beyond the VM's RAM", line);
                return;
            }
            if (!memory.Space.TryGetUser())
            {
                Error("the VM's memory is already released", line);
                return;
            }
            ulong first = gpa & ~0xFFFUL;
            ulong end = (gpa + (ulong)length + 0xFFF) & ~0xFFFUL;
            MirrorView<KernelMmPlatform>? view = MirrorView<KernelMmPlatform>.Create(default, memory.Space, memory.Space.Notifiers,
                memory.HostAddress(first), (int)((end - first) >> 12));
            if (view == null)
            {
                memory.Space.PutUser();
                Error("no memory for a mirror view", line);
                return;
            }
            FaultStatus status;
            fixed (byte* bytes = s_dump)
            {
                Scheduler.PreemptDisable();
                status = view.TryRead(memory.HostAddress(gpa), new Span<byte>(bytes, length));
                Scheduler.PreemptEnable();
                view.Destroy();
                memory.Space.PutUser();
                if (status != FaultStatus.Ok)
                {
                    Error("the view could not read the guest's memory", line);
                    return;
                }
                ulong f = Log.Begin();
                Log.Write("vm ");
                Log.Write((ulong)vm.Id);
                Log.Write(": ");
                Log.Write((ulong)length);
                Log.Write(" bytes at ");
                Log.Hex(gpa);
                Log.Write(" (through a mirror view)\n");
                for (int row = 0; row < length; row += 16)
                {
                    Log.Hex(gpa + (ulong)row, 8);
                    Log.WriteChar(':');
                    for (int k = row; k < row + 16 && k < length; k++)
                    {
                        Log.WriteChar(' ');
                        Log.WriteChar(HexDigit(bytes[k] >> 4));
                        Log.WriteChar(HexDigit(bytes[k] & 15));
                    }
                    Log.WriteChar('\n');
                }
                Log.End(f);
            }
        }

        private static char HexDigit(int d) => (char)(d < 10 ? '0' + d : 'a' + d - 10);

        /// <summary>
        /// The periodic stats lines (<c>stats on N</c>): key=value, one per VM, then the mm core's.
        /// A VM's line carries its state, exits and EPT faults, its guest RAM's resident, swapped
        /// and shared pages and resident pages per generation (oldest first; the walk of
        /// <c>info mem</c>), and its exits by reason as <c>exit.NAME=N</c> (nonzero ones only).
        /// <c>./build.sh report</c> plots them (tools/Build/Report).
        /// </summary>
        private static void PrintStatsLines()
        {
            ulong ms = (Native.Rdtsc() - KernelReclaim.StatsEpochTsc) / (Timer.TscPerSecond / 1000);
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            int* gens = stackalloc int[LruGenerations<KernelMmPlatform>.MaxGenerations];
            ulong* counts = stackalloc ulong[ExitReason.Count];
            for (Vm? vm = NextById(0); vm != null; vm = NextById(vm.Id))
            {
                // Counted before the line is begun: the walk takes the mm core's locks.
                bool walked = false;
                int minSeq = 0;
                ulong resident = 0, swapped = 0, shared = 0;
                if (mm != null && vm.Memory is MmGuestMemory memory)
                    walked = WalkGuestRam(mm, memory, gens, out minSeq, out resident, out swapped, out shared);
                for (int reason = 0; reason < ExitReason.Count; reason++)
                {
                    ulong n = 0;
                    for (int i = 0; i < vm.Vcpus.Length; i++)
                        n += vm.Vcpus[i].ExitCount(reason);
                    counts[reason] = n;
                }
                // A chain: the generations and the exits by reason are variable numbers of items.
                ulong f = Log.Begin();
                Log.Write("stats t_ms=");
                Log.Write(ms);
                Log.Write(" vm=");
                Log.Write((ulong)vm.Id);
                Log.Write(vm.Stopped ? " state=stopped" : Volatile.Read(ref vm.Paused) ? " state=paused" : " state=running");
                Log.Write(" vcpus=");
                Log.Write((ulong)vm.Vcpus.Length);
                Log.Write(" exits=");
                Log.Write(TotalExits(vm));
                Log.Write(" ept_faults=");
                Log.Write(vm.Memory.FaultsHandled);
                if (walked)
                {
                    Log.Write(" resident=");
                    Log.Write(resident);
                    Log.Write(" swapped=");
                    Log.Write(swapped);
                    Log.Write(" shared=");
                    Log.Write(shared);
                    Log.Write(" gens=");
                    WriteVmGenerations(mm!, gens, minSeq);
                }
                for (int reason = 0; reason < ExitReason.Count; reason++)
                {
                    if (counts[reason] == 0)
                        continue;
                    Log.Write(" exit.");
                    string? name = ExitReason.Name(reason);
                    if (name != null)
                        Log.Write(name);
                    else
                    {
                        Log.Write("reason-");
                        Log.Write((ulong)reason);
                    }
                    Log.WriteChar('=');
                    Log.Write(counts[reason]);
                }
                Log.WriteChar('\n');
                Log.End(f);
            }
            KernelReclaim.PrintStats("stats mm");
        }
    }
}
