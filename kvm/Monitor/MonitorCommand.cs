using System;

namespace Tandem.Kvm.Monitor
{
    /// <summary>What a monitor line asks for (docs/monitor.md).</summary>
    public enum MonitorVerb : byte
    {
        /// <summary>An empty line (or only spaces): nothing to do.</summary>
        Empty,
        /// <summary><c>help</c>.</summary>
        Help,
        /// <summary><c>info vms</c>.</summary>
        InfoVms,
        /// <summary><c>info vcpus</c>.</summary>
        InfoVcpus,
        /// <summary><c>info mem</c>.</summary>
        InfoMem,
        /// <summary><c>info exits [VM]</c>.</summary>
        InfoExits,
        /// <summary><c>info aging</c>.</summary>
        InfoAging,
        /// <summary><c>info swap</c>.</summary>
        InfoSwap,
        /// <summary><c>pause VM</c>.</summary>
        Pause,
        /// <summary><c>resume VM</c> (or <c>cont VM</c>).</summary>
        Resume,
        /// <summary><c>stop VM</c>.</summary>
        Stop,
        /// <summary><c>focus VM</c>.</summary>
        Focus,
        /// <summary><c>move VM</c> (or <c>migrate VM</c>): the postcopy move to a new VM.</summary>
        Move,
        /// <summary><c>dump VM GPA LEN</c> (or <c>xp</c>).</summary>
        Dump,
        /// <summary><c>stats on INTERVAL</c>.</summary>
        StatsOn,
        /// <summary><c>stats off</c>.</summary>
        StatsOff,
    }

    /// <summary>Why a monitor line did not parse (<see cref="MonitorParser.ErrorText"/> says it in words).</summary>
    public enum MonitorError : byte
    {
        /// <summary>The line parsed.</summary>
        None,
        /// <summary>No such command.</summary>
        ErrorUnknown,
        /// <summary>The line is longer than <see cref="MonitorParser.MaxLine"/>.</summary>
        ErrorTooLong,
        /// <summary><c>info</c> of an unknown topic.</summary>
        ErrorInfoTopic,
        /// <summary>A VM argument that is no VM id.</summary>
        ErrorVmId,
        /// <summary>A GPA that is no number below 2^48.</summary>
        ErrorGpa,
        /// <summary>A dump length outside 1 to <see cref="MonitorParser.MaxDump"/>.</summary>
        ErrorLength,
        /// <summary>A stats interval outside 1 to <see cref="MonitorParser.MaxInterval"/> seconds.</summary>
        ErrorInterval,
        /// <summary>The command with the wrong number of arguments (the error shows its usage).</summary>
        UsageHelp,
        /// <summary>The command with the wrong number of arguments (the error shows its usage).</summary>
        UsageInfo,
        /// <summary>The command with the wrong number of arguments (the error shows its usage).</summary>
        UsagePause,
        /// <summary>The command with the wrong number of arguments (the error shows its usage).</summary>
        UsageResume,
        /// <summary>The command with the wrong number of arguments (the error shows its usage).</summary>
        UsageStop,
        /// <summary>The command with the wrong number of arguments (the error shows its usage).</summary>
        UsageFocus,
        /// <summary>The command with the wrong number of arguments (the error shows its usage).</summary>
        UsageMove,
        /// <summary>The command with the wrong number of arguments (the error shows its usage).</summary>
        UsageDump,
        /// <summary>The command with the wrong number of arguments (the error shows its usage).</summary>
        UsageStats,
    }

    /// <summary>One parsed monitor line: the verb and its arguments, or the one-line error.</summary>
    public struct MonitorCommand
    {
        /// <summary>What the line asks for.</summary>
        public MonitorVerb Verb;

        /// <summary>The VM id the command names; 0 when it names none (<c>info exits</c> alone).</summary>
        public int Vm;

        /// <summary><c>dump</c>: the first guest-physical address and the byte count (1 to <see cref="MonitorParser.MaxDump"/>).</summary>
        public ulong Gpa;

        /// <summary><c>dump</c>: the byte count.</summary>
        public int Length;

        /// <summary><c>stats on</c>: seconds between two stats lines (1 to <see cref="MonitorParser.MaxInterval"/>).</summary>
        public int IntervalSeconds;

        /// <summary><see cref="MonitorError.None"/> when the line parsed; else why not (no reference in this struct: the kernel copies it freely).</summary>
        public MonitorError Error;

        /// <summary>True when the line parsed.</summary>
        public bool Ok => Error == MonitorError.None;

        /// <summary>The error as one line without a newline, or null when the line parsed.</summary>
        public string? ErrorText => MonitorParser.ErrorText(Error);
    }

    /// <summary>
    /// The monitor's command parser: one line of bytes in, a <see cref="MonitorCommand"/> out, never
    /// an exception (a bad line gives <see cref="MonitorCommand.Error"/>). Pure and portable: the
    /// kernel's monitor (the serial console's Ctrl-A C prompt and <c>monitor="cmd;cmd"</c> on the
    /// command line) and the host tests compile the same source. Words are separated by spaces or
    /// tabs; verbs and topics are ASCII, case-insensitive; numbers are decimal or 0x-prefixed hex.
    /// </summary>
    public static class MonitorParser
    {
        /// <summary>The longest line the monitor takes (the console's line editor holds as much).</summary>
        public const int MaxLine = 200;

        /// <summary>The most bytes one <c>dump</c> shows.</summary>
        public const int MaxDump = 4096;

        /// <summary>The largest VM id a command may name.</summary>
        public const int MaxVmId = 1_000_000;

        /// <summary><c>stats on</c>: the longest interval, in seconds.</summary>
        public const int MaxInterval = 3600;

        /// <summary>Guest-physical addresses are below 2^48 (EPT's 4-level reach).</summary>
        public const ulong GpaLimit = 1UL << 48;


        /// <summary>The words of <paramref name="error"/>, one line; null for <see cref="MonitorError.None"/>.</summary>
        public static string? ErrorText(MonitorError error)
        {
            switch (error)
            {
                case MonitorError.ErrorUnknown: return "unknown command (try 'help')";
                case MonitorError.ErrorTooLong: return "the line is too long (at most 200 bytes)";
                case MonitorError.ErrorInfoTopic: return "info takes one of: vms, vcpus, mem, exits [VM], aging, swap";
                case MonitorError.ErrorVmId: return "VM must be a VM id (a decimal number from 1, as 'info vms' lists)";
                case MonitorError.ErrorGpa: return "GPA must be a number (decimal or 0x hex) below 2^48";
                case MonitorError.ErrorLength: return "LEN must be 1 to 4096 bytes (a number, decimal or 0x hex)";
                case MonitorError.ErrorInterval: return "INTERVAL must be 1 to 3600 seconds";
                case MonitorError.UsageHelp: return "usage: help";
                case MonitorError.UsageInfo: return "usage: info vms|vcpus|mem|exits [VM]|aging|swap";
                case MonitorError.UsagePause: return "usage: pause VM";
                case MonitorError.UsageResume: return "usage: resume VM";
                case MonitorError.UsageStop: return "usage: stop VM";
                case MonitorError.UsageFocus: return "usage: focus VM";
                case MonitorError.UsageMove: return "usage: move VM";
                case MonitorError.UsageDump: return "usage: dump VM GPA LEN";
                case MonitorError.UsageStats: return "usage: stats on INTERVAL | stats off";
                default: return null;
            }
        }

        private const int MaxWords = 6;

        /// <summary>The help text, one line per index, null past the last.</summary>
        public static string? HelpLine(int index)
        {
            switch (index)
            {
                case 0: return "info vms                 VMs: state, vCPUs, memory, exits";
                case 1: return "info vcpus               vCPUs: physical CPU, state, RIP (sampled at the last exit, with its age)";
                case 2: return "info mem                 free frames; per VM resident, swapped, shared, per generation";
                case 3: return "info exits [VM]          exits by reason: count, host time, mean (all VMs, or one)";
                case 4: return "info aging               generations and aging passes of the mm core";
                case 5: return "info swap                the compressed swap pool: size, ratio, swap-ins and -outs";
                case 6: return "pause VM | resume VM     stop running the VM's vCPUs for now | run them again";
                case 7: return "stop VM                  end the VM (exit status 255)";
                case 8: return "focus VM                 the VM whose serial console the keyboard reaches";
                case 9: return "move VM                  move the running VM to a new VM (postcopy: its RAM follows on demand)";
                case 10: return "dump VM GPA LEN          LEN (at most 4096) bytes of guest memory at GPA, in hex";
                case 11: return "stats on INTERVAL        a stats line every INTERVAL seconds; stats off: no more";
                case 12: return "help                     this list; Ctrl-A C leaves the monitor";
                default: return null;
            }
        }

        /// <summary>Parses one line (a trailing CR or LF is allowed).</summary>
        public static MonitorCommand Parse(ReadOnlySpan<byte> line)
        {
            MonitorCommand c = default;
            if (line.Length > MaxLine)
                return Fail(ref c, MonitorError.ErrorTooLong);
            Span<int> starts = stackalloc int[MaxWords];
            Span<int> lengths = stackalloc int[MaxWords];
            int words = 0;
            int at = 0;
            while (at < line.Length)
            {
                while (at < line.Length && IsSpace(line[at]))
                    at++;
                if (at >= line.Length)
                    break;
                int start = at;
                while (at < line.Length && !IsSpace(line[at]))
                    at++;
                if (words == MaxWords)
                    return Fail(ref c, MonitorError.ErrorUnknown);
                starts[words] = start;
                lengths[words] = at - start;
                words++;
            }
            if (words == 0)
            {
                c.Verb = MonitorVerb.Empty;
                return c;
            }
            ReadOnlySpan<byte> verb = line.Slice(starts[0], lengths[0]);
            int args = words - 1;
            if (Is(verb, "help") || Is(verb, "?"))
            {
                c.Verb = MonitorVerb.Help;
                return args == 0 ? c : Fail(ref c, MonitorError.UsageHelp);
            }
            if (Is(verb, "info"))
            {
                if (args == 0)
                    return Fail(ref c, MonitorError.UsageInfo);
                ReadOnlySpan<byte> topic = line.Slice(starts[1], lengths[1]);
                if (Is(topic, "exits"))
                {
                    c.Verb = MonitorVerb.InfoExits;
                    if (args == 1)
                        return c;
                    if (args > 2)
                        return Fail(ref c, MonitorError.UsageInfo);
                    return VmArgument(line.Slice(starts[2], lengths[2]), ref c);
                }
                if (Is(topic, "vms"))
                    c.Verb = MonitorVerb.InfoVms;
                else if (Is(topic, "vcpus"))
                    c.Verb = MonitorVerb.InfoVcpus;
                else if (Is(topic, "mem"))
                    c.Verb = MonitorVerb.InfoMem;
                else if (Is(topic, "aging"))
                    c.Verb = MonitorVerb.InfoAging;
                else if (Is(topic, "swap"))
                    c.Verb = MonitorVerb.InfoSwap;
                else
                    return Fail(ref c, MonitorError.ErrorInfoTopic);
                return args == 1 ? c : Fail(ref c, MonitorError.UsageInfo);
            }
            MonitorError usage = MonitorError.None;
            if (Is(verb, "pause"))
            {
                c.Verb = MonitorVerb.Pause;
                usage = MonitorError.UsagePause;
            }
            else if (Is(verb, "resume") || Is(verb, "cont"))
            {
                c.Verb = MonitorVerb.Resume;
                usage = MonitorError.UsageResume;
            }
            else if (Is(verb, "stop"))
            {
                c.Verb = MonitorVerb.Stop;
                usage = MonitorError.UsageStop;
            }
            else if (Is(verb, "focus"))
            {
                c.Verb = MonitorVerb.Focus;
                usage = MonitorError.UsageFocus;
            }
            else if (Is(verb, "move") || Is(verb, "migrate"))
            {
                c.Verb = MonitorVerb.Move;
                usage = MonitorError.UsageMove;
            }
            if (usage != MonitorError.None)
            {
                if (args != 1)
                    return Fail(ref c, usage);
                return VmArgument(line.Slice(starts[1], lengths[1]), ref c);
            }
            if (Is(verb, "dump") || Is(verb, "xp"))
            {
                c.Verb = MonitorVerb.Dump;
                if (args != 3)
                    return Fail(ref c, MonitorError.UsageDump);
                VmArgument(line.Slice(starts[1], lengths[1]), ref c);
                if (!c.Ok)
                    return c;
                if (!TryNumber(line.Slice(starts[2], lengths[2]), out ulong gpa) || gpa >= GpaLimit)
                    return Fail(ref c, MonitorError.ErrorGpa);
                if (!TryNumber(line.Slice(starts[3], lengths[3]), out ulong length) || length == 0 || length > MaxDump)
                    return Fail(ref c, MonitorError.ErrorLength);
                if (gpa + length > GpaLimit)
                    return Fail(ref c, MonitorError.ErrorGpa);
                c.Gpa = gpa;
                c.Length = (int)length;
                return c;
            }
            if (Is(verb, "stats"))
            {
                if (args == 0)
                    return Fail(ref c, MonitorError.UsageStats);
                ReadOnlySpan<byte> mode = line.Slice(starts[1], lengths[1]);
                if (Is(mode, "off"))
                {
                    c.Verb = MonitorVerb.StatsOff;
                    return args == 1 ? c : Fail(ref c, MonitorError.UsageStats);
                }
                if (!Is(mode, "on"))
                    return Fail(ref c, MonitorError.UsageStats);
                c.Verb = MonitorVerb.StatsOn;
                if (args != 2)
                    return Fail(ref c, MonitorError.UsageStats);
                if (!TryNumber(line.Slice(starts[2], lengths[2]), out ulong seconds) || seconds == 0 || seconds > MaxInterval)
                    return Fail(ref c, MonitorError.ErrorInterval);
                c.IntervalSeconds = (int)seconds;
                return c;
            }
            return Fail(ref c, MonitorError.ErrorUnknown);
        }

        /// <summary>
        /// The next command of a script (<c>monitor="cmd;cmd"</c>): the bytes from <paramref name="at"/>
        /// up to the next ';' (or the end), and <paramref name="at"/> moves past it. False when the
        /// script is used up. Empty commands (";;") come back as empty spans (<see cref="MonitorVerb.Empty"/>).
        /// </summary>
        public static bool NextCommand(ReadOnlySpan<byte> script, ref int at, out int start, out int length)
        {
            start = at < 0 ? 0 : at;
            length = 0;
            if (at < 0 || at >= script.Length)
                return false;
            int end = at;
            while (end < script.Length && script[end] != (byte)';')
                end++;
            start = at;
            length = end - at;
            at = end + 1;
            return true;
        }

        private static MonitorCommand VmArgument(ReadOnlySpan<byte> word, ref MonitorCommand c)
        {
            if (!TryDecimal(word, out ulong id) || id == 0 || id > MaxVmId)
                return Fail(ref c, MonitorError.ErrorVmId);
            c.Vm = (int)id;
            return c;
        }

        private static MonitorCommand Fail(ref MonitorCommand c, MonitorError error)
        {
            c.Error = error;
            return c;
        }

        private static bool IsSpace(byte b) => b == (byte)' ' || b == (byte)'\t' || b == (byte)'\r' || b == (byte)'\n';

        /// <summary>ASCII case-insensitive equality with a lower-case word.</summary>
        private static bool Is(ReadOnlySpan<byte> word, string lower)
        {
            if (word.Length != lower.Length)
                return false;
            for (int i = 0; i < word.Length; i++)
            {
                int b = word[i];
                if (b >= 'A' && b <= 'Z')
                    b += 'a' - 'A';
                if (b != lower[i])
                    return false;
            }
            return true;
        }

        /// <summary>Decimal digits only, without overflow (at most 19 digits).</summary>
        public static bool TryDecimal(ReadOnlySpan<byte> word, out ulong value)
        {
            value = 0;
            if (word.Length == 0 || word.Length > 19)
                return false;
            for (int i = 0; i < word.Length; i++)
            {
                int d = word[i] - '0';
                if (d < 0 || d > 9)
                    return false;
                value = value * 10 + (ulong)d;
            }
            return true;
        }

        /// <summary>Decimal, or hex after 0x/0X (at most 16 hex digits).</summary>
        public static bool TryNumber(ReadOnlySpan<byte> word, out ulong value)
        {
            value = 0;
            if (word.Length > 2 && word[0] == (byte)'0' && (word[1] == (byte)'x' || word[1] == (byte)'X'))
            {
                if (word.Length - 2 > 16)
                    return false;
                for (int i = 2; i < word.Length; i++)
                {
                    int b = word[i];
                    int d = b >= '0' && b <= '9' ? b - '0' : b >= 'a' && b <= 'f' ? b - 'a' + 10 : b >= 'A' && b <= 'F' ? b - 'A' + 10 : -1;
                    if (d < 0)
                        return false;
                    value = (value << 4) | (uint)d;
                }
                return true;
            }
            return TryDecimal(word, out value);
        }
    }
}
