using System;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using Tandem.Kernel.Console;

namespace Tandem.Kernel.Parsers
{
    /// <summary>
    /// Where the command-line parser reports what it ignores: one line,
    /// <c>"cmdline: " + what + between + value + after</c>, printed whole (the kernel's log; a list on the host).
    /// </summary>
    public interface ICommandLineLog
    {
        void Line(string what, string between, ReadOnlySpan<byte> value, string after);
    }

    /// <summary>One <c>vm=</c> option. Texts are offsets into the (unquoted) command line; offset -1: not given.</summary>
    public struct VmOptions
    {
        public int ModuleOffset;
        public int ModuleLength;
        public ulong MemoryMiB;
        public int Cpus;
        public ulong PinMask;
        public int CmdlineOffset;
        public int CmdlineLength;
        public int InitrdOffset;
        public int InitrdLength;
        public int ModulesOffset;
        public int ModulesLength;
        public ulong BudgetSeconds;
        public bool NoDefaultCmdline;
        public bool RestartOnReset;
        public int FwCfgOffset;
        public int FwCfgLength;
        /// <summary><c>seed=N</c>: the fuzz guest's seed (module <c>fuzz</c>); <see cref="CommandLineOptions.Unset"/> when not given.</summary>
        public ulong Seed;
    }

    /// <summary>What the kernel command line asked for (see <see cref="CommandLineParser"/>).</summary>
    public struct CommandLineOptions
    {
        public const int MaxVms = 8;
        /// <summary>An option not given.</summary>
        public const ulong Unset = ulong.MaxValue;
        /// <summary><c>budget=none</c>.</summary>
        public const ulong NoBudget = ulong.MaxValue;

        public bool RunTests;
        public bool RunBench;
        /// <summary><c>bench=hotcold</c>: only the hot/cold figure (kernel/Bench/HotColdBench.cs).</summary>
        public bool BenchHotColdOnly;
        /// <summary>test=PATTERN: offset (-1: all tests) and length.</summary>
        public int TestPatternOffset;
        public int TestPatternLength;
        public bool VmxOff;
        /// <summary>1 = VT-x expected, 0 = not, -1 = unknown.</summary>
        public int ExpectVmx;
        public ulong SwapMiB;
        public ulong MemLimitMiB;
        public ulong MmStatsSeconds;
        /// <summary>watermarks=LOW,HIGH (MiB of free memory, LOW below HIGH); <see cref="Unset"/> when not given.</summary>
        public ulong WatermarkLowMiB, WatermarkHighMiB;
        public bool Ksm;
        /// <summary><c>thp=on|off</c>: guest RAM may be backed by tracked 2 MiB pages (default off).</summary>
        public bool Thp;
        /// <summary><c>fuzz=SEED:COUNT[:EXITS]</c>: run COUNT fuzz guests from SEED, or until their exits reach EXITS (docs/fuzzing.md); COUNT 0: not given, EXITS 0: no goal.</summary>
        public ulong FuzzSeed, FuzzCount, FuzzExits;
        /// <summary>monitor="cmd;cmd": the script's offset (-1: not given) and length.</summary>
        public int MonitorOffset, MonitorLength;
        /// <summary><c>loglevel=error|warn|info|debug</c>: the most detailed log lines written (default info).</summary>
        public LogLevel LogLevel;
        public int VmCount;
        private Vms _vms;

        [InlineArray(MaxVms)]
        private struct Vms { private VmOptions _e; }

        [UnscopedRef]
        public ref VmOptions Vm(int i) => ref _vms[i];

        /// <summary>Nothing given: every option at its default.</summary>
        public static CommandLineOptions Defaults()
        {
            CommandLineOptions o = default;
            o.TestPatternOffset = -1;
            o.ExpectVmx = -1;
            o.SwapMiB = Unset;
            o.MemLimitMiB = Unset;
            o.MmStatsSeconds = Unset;
            o.WatermarkLowMiB = Unset;
            o.WatermarkHighMiB = Unset;
            o.MonitorOffset = -1;
            o.LogLevel = LogLevel.Info;
            return o;
        }
    }

    /// <summary>
    /// The kernel command line: space-separated words, each "name" or "name=value"; a double-quoted
    /// part of a word may hold spaces (and, inside <c>vm=</c>, commas). Known: <c>test</c>,
    /// <c>test=PATTERN</c>, <c>vm=MODULE[,mem=SIZE][,cpus=N][,pin=A+B][,cmdline="..."][,initrd=MODULE][,modules=A+B][,budget=S|none][,defaults=off][,fwcfg=NAME:MODULE+...][,reset=stop|restart]</c>,
    /// <c>vmx=off</c>, <c>bench</c>, <c>expect_vmx=yes|no</c>, <c>swap=</c>, <c>mem.limit=</c>,
    /// <c>ksm=</c>, <c>mmstats=</c>, <c>watermarks=LOW,HIGH</c>, <c>monitor="cmd;cmd"</c>, <c>loglevel=error|warn|info|debug</c>. The refusal: anything unknown or malformed is reported by one
    /// line through the log and ignored (a bad <c>vm=</c> drops that VM), never followed. The text
    /// ends at its first NUL or at the end of the span, and is unquoted in place. Portable: kernel and host tests.
    /// </summary>
    public static class CommandLineParser
    {
        /// <summary>
        /// The most RAM a VM gets, in MiB: 3 GiB. Guest RAM is one guest-physical range from 0, and
        /// the PCI hole (0xC0000000-0xFFFFFFFF: the IOAPIC, the local APIC, Tandem's MMIO test page)
        /// starts there. More would need RAM relocated above 4 GiB, which the VM's memslots do not do.
        /// </summary>
        public const ulong MaxVmMemoryMiB = 3072;

        public static void Parse<TLog>(Span<byte> text, ref CommandLineOptions options, ref TLog log) where TLog : struct, ICommandLineLog
        {
            int n = 0;
            while (n < text.Length && text[n] != 0)
                n++;
            // GRUB hands over each of its words as typed, except that a word with spaces arrives
            // in double quotes with its own double quotes and backslashes escaped (\" and \\).
            // Words are unquoted in place (bytes only move left, so the offsets the options keep
            // stay valid): an unescaped double quote groups, an escaped one is a literal double
            // quote for the option to see (vm=...,cmdline="a, b").
            int r = 0;
            while (r < n)
            {
                while (r < n && text[r] == ' ')
                    r++;
                if (r >= n)
                    break;
                int start = r;
                int w = r;
                int eq = -1;
                bool quoted = false;
                while (r < n && (quoted || text[r] != ' '))
                {
                    byte c = text[r];
                    if (c == '\\' && r + 1 < n && (text[r + 1] == '"' || text[r + 1] == '\\'))
                    {
                        text[w++] = text[r + 1];
                        r += 2;
                        continue;
                    }
                    r++;
                    if (c == '"')
                    {
                        quoted = !quoted;
                        continue;
                    }
                    if (c == '=' && eq < 0)
                        eq = w;
                    text[w++] = c;
                }
                if (quoted)
                    log.Line("a double quote is not closed; the word runs to the end of the line", "", ReadOnlySpan<byte>.Empty, "");
                int end = w;
                if (r < n)
                    r++;                          // the space after the word
                int nameEnd = eq < 0 ? end : eq;
                ReadOnlySpan<byte> name = text.Slice(start, nameEnd - start);
                int valueOffset = eq < 0 ? -1 : eq + 1;
                int valueLength = eq < 0 ? 0 : end - eq - 1;
                Apply(text, name, valueOffset, valueLength, ref options, ref log);
            }
        }

        private static void Apply<TLog>(Span<byte> text, ReadOnlySpan<byte> name, int valueOffset, int valueLength, ref CommandLineOptions o, ref TLog log)
            where TLog : struct, ICommandLineLog
        {
            bool hasValue = valueOffset >= 0;
            ReadOnlySpan<byte> value = hasValue ? text.Slice(valueOffset, valueLength) : ReadOnlySpan<byte>.Empty;
            if (Matches(name, "test"))
            {
                o.RunTests = true;
                if (hasValue && valueLength > 0)
                {
                    o.TestPatternOffset = valueOffset;
                    o.TestPatternLength = valueLength;
                }
                return;
            }
            if (Matches(name, "bench") && !hasValue)
            {
                o.RunBench = true;
                return;
            }
            if (Matches(name, "bench") && hasValue && Matches(value, "hotcold"))
            {
                o.RunBench = true;
                o.BenchHotColdOnly = true;
                return;
            }
            if (Matches(name, "vmx") && hasValue && Matches(value, "off"))
            {
                o.VmxOff = true;
                return;
            }
            if (Matches(name, "expect_vmx") && hasValue)
            {
                o.ExpectVmx = Matches(value, "yes") ? 1 : Matches(value, "no") ? 0 : -1;
                return;
            }
            if (Matches(name, "vm") && hasValue)
            {
                ParseVm(text, valueOffset, valueLength, ref o, ref log);
                return;
            }
            if (Matches(name, "swap") && hasValue)
            {
                if (Matches(value, "off"))
                    o.SwapMiB = 0;
                else if (!TryParseSize(value, out o.SwapMiB))
                    Refused("swap= takes a size (64M, 1G) or off", value, out o.SwapMiB, ref log);
                return;
            }
            if (Matches(name, "mem.limit") && hasValue)
            {
                if (!TryParseSize(value, out o.MemLimitMiB) || o.MemLimitMiB == 0)
                    Refused("mem.limit= takes a size above 0 (256M, 1G)", value, out o.MemLimitMiB, ref log);
                return;
            }
            if (Matches(name, "ksm") && hasValue)
            {
                OnOff("ksm= takes on or off", value, ref o.Ksm, ref log);
                return;
            }
            if (Matches(name, "thp") && hasValue)
            {
                OnOff("thp= takes on or off", value, ref o.Thp, ref log);
                return;
            }
            if (Matches(name, "watermarks") && hasValue)
            {
                int comma = 0;
                while (comma < value.Length && value[comma] != (byte)',')
                    comma++;
                if (comma == value.Length || !TryParseSize(value.Slice(0, comma), out ulong low) || !TryParseSize(value.Slice(comma + 1), out ulong high) || low == 0 || low >= high)
                {
                    Refused("watermarks= takes two sizes, the low one first and above 0 (4M,8M)", value, out o.WatermarkLowMiB, ref log);
                    o.WatermarkHighMiB = CommandLineOptions.Unset;
                }
                else
                {
                    o.WatermarkLowMiB = low;
                    o.WatermarkHighMiB = high;
                }
                return;
            }
            if (Matches(name, "fuzz") && hasValue)
            {
                int colon = 0;
                while (colon < value.Length && value[colon] != (byte)':')
                    colon++;
                int second = colon + 1;
                while (second < value.Length && value[second] != (byte)':')
                    second++;
                ulong exits = 0;
                if (colon >= value.Length || !TryParseNumber(value.Slice(0, colon), out ulong seed)
                    || !TryParseNumber(value.Slice(colon + 1, second - colon - 1), out ulong count) || count == 0 || count > 100_000_000
                    || (second < value.Length && !TryParseNumber(value.Slice(second + 1), out exits)))
                {
                    Refused("fuzz= takes SEED:COUNT[:EXITS], a seed, how many guests (1..100000000) and an optional goal of exits, e.g. fuzz=1:500 or fuzz=1:100000000:1000000", value, out _, ref log);
                    o.FuzzCount = 0;
                }
                else
                {
                    o.FuzzSeed = seed;
                    o.FuzzCount = count;
                    o.FuzzExits = exits;
                }
                return;
            }
            if (Matches(name, "monitor") && hasValue)
            {
                // The commands are checked when they run (kvm/Monitor/MonitorCommand.cs): each bad
                // one gets its own one-line error then, and the others still run.
                if (valueLength == 0)
                    log.Line("monitor= takes monitor commands separated by ';' (monitor=\"info vms;pause 1\")", "", ReadOnlySpan<byte>.Empty, "; ignored");
                else if (o.MonitorOffset >= 0)
                    log.Line("monitor= is given twice; the first is kept, this one", ": '", value, "' is ignored");
                else
                {
                    // GRUB hands monitor="a;b" over as "monitor=\"a;b\"": the quotes arrive
                    // literal, and one pair around the whole value goes (as for vm=...,cmdline=).
                    bool quoted = valueLength >= 2 && value[0] == '"' && value[valueLength - 1] == '"';
                    o.MonitorOffset = quoted ? valueOffset + 1 : valueOffset;
                    o.MonitorLength = quoted ? valueLength - 2 : valueLength;
                }
                return;
            }
            if (Matches(name, "loglevel") && hasValue)
            {
                if (Matches(value, "error"))
                    o.LogLevel = LogLevel.Error;
                else if (Matches(value, "warn"))
                    o.LogLevel = LogLevel.Warn;
                else if (Matches(value, "info"))
                    o.LogLevel = LogLevel.Info;
                else if (Matches(value, "debug"))
                    o.LogLevel = LogLevel.Debug;
                else
                    log.Line("loglevel= takes error, warn, info or debug", ": '", value, "' ignored");
                return;
            }
            if (Matches(name, "mmstats") && hasValue)
            {
                if (!TryParseNumber(value, out o.MmStatsSeconds) || o.MmStatsSeconds == 0 || o.MmStatsSeconds > 86400)
                    Refused("mmstats= takes a number of seconds (1..86400)", value, out o.MmStatsSeconds, ref log);
                return;
            }
            log.Line("unknown option '", "", name, "' ignored");
        }

        /// <summary>A bad value: says so, and the option keeps its default.</summary>
        /// <summary><c>on</c> or <c>off</c> into <paramref name="option"/>; anything else is refused with a line and the option keeps its value.</summary>
        private static void OnOff<TLog>(string what, ReadOnlySpan<byte> value, ref bool option, ref TLog log) where TLog : struct, ICommandLineLog
        {
            if (Matches(value, "on"))
                option = true;
            else if (Matches(value, "off"))
                option = false;
            else
                Refused(what, value, out _, ref log);
        }

        private static void Refused<TLog>(string what, ReadOnlySpan<byte> value, out ulong option, ref TLog log) where TLog : struct, ICommandLineLog
        {
            option = CommandLineOptions.Unset;
            log.Line(what, ": '", value, "' ignored");
        }

        private static void VmRefused<TLog>(string what, ReadOnlySpan<byte> text, ref TLog log) where TLog : struct, ICommandLineLog =>
            log.Line(what, "'", text, "'; vm ignored");

        private static void ParseVm<TLog>(Span<byte> text, int valueOffset, int length, ref CommandLineOptions o, ref TLog log)
            where TLog : struct, ICommandLineLog
        {
            if (o.VmCount >= CommandLineOptions.MaxVms)
            {
                log.Line("too many vm= options, extra ignored", "", ReadOnlySpan<byte>.Empty, "");
                return;
            }
            ReadOnlySpan<byte> value = text.Slice(valueOffset, length);
            ref VmOptions spec = ref o.Vm(o.VmCount);
            spec = default;                  // mem, cpus and budget 0: the defaults for the guest's kind
            spec.Seed = CommandLineOptions.Unset;
            spec.CmdlineOffset = -1;
            spec.InitrdOffset = -1;
            spec.ModulesOffset = -1;
            spec.FwCfgOffset = -1;
            int i = 0;
            while (i < length && value[i] != ',')
                i++;
            spec.ModuleOffset = valueOffset;
            spec.ModuleLength = i;
            while (i < length)
            {
                i++; // skip ','
                int start = i;
                bool quoted = false;
                while (i < length && (quoted || value[i] != ','))
                {
                    if (value[i] == '"')
                        quoted = !quoted;
                    i++;
                }
                ReadOnlySpan<byte> part = value.Slice(start, i - start);
                int eq = 0;
                while (eq < part.Length && part[eq] != '=')
                    eq++;
                if (eq == part.Length || part.Length - eq - 1 <= 0)
                {
                    VmRefused("a vm= suboption needs a value: ", part, ref log);
                    return;
                }
                ReadOnlySpan<byte> key = part.Slice(0, eq);
                int argOffset = valueOffset + start + eq + 1;
                ReadOnlySpan<byte> arg = part.Slice(eq + 1);
                if (Matches(key, "seed"))
                {
                    if (!TryParseNumber(arg, out spec.Seed))
                    {
                        VmRefused("vm= seed must be a number (the fuzz guest's seed, vm=fuzz,seed=N): ", arg, ref log);
                        return;
                    }
                }
                else if (Matches(key, "mem"))
                {
                    if (!TryParseSize(arg, out spec.MemoryMiB) || spec.MemoryMiB == 0 || spec.MemoryMiB > MaxVmMemoryMiB)
                    {
                        VmRefused("vm= mem must be 1M..3G (a number of MiB, or with a suffix: 256M, 1G; RAM ends below the PCI hole at 0xC0000000): ", arg, ref log);
                        return;
                    }
                }
                else if (Matches(key, "cpus"))
                {
                    if (!TryParseNumber(arg, out ulong cpus) || cpus == 0 || cpus > 16)
                    {
                        VmRefused("vm= cpus must be 1..16: ", arg, ref log);
                        return;
                    }
                    spec.Cpus = (int)cpus;
                }
                else if (Matches(key, "pin"))
                {
                    // pin=0+1: the physical CPUs (by index) the VM's vCPU threads may run on.
                    ulong mask = 0;
                    for (int at = 0; at < arg.Length;)
                    {
                        int end = at;
                        while (end < arg.Length && arg[end] != '+')
                            end++;
                        if (!TryParseNumber(arg.Slice(at, end - at), out ulong cpu) || cpu > 63)
                        {
                            VmRefused("vm= pin takes CPU indexes joined by '+', e.g. pin=0+1: ", arg, ref log);
                            return;
                        }
                        mask |= 1UL << (int)cpu;
                        at = end + 1;
                    }
                    spec.PinMask = mask;
                }
                else if (Matches(key, "cmdline"))
                {
                    int argLength = arg.Length;
                    if (arg[0] == '"' && argLength >= 2 && arg[argLength - 1] == '"')
                    {
                        argOffset++;
                        argLength -= 2;
                    }
                    spec.CmdlineOffset = argOffset;
                    spec.CmdlineLength = argLength;
                }
                else if (Matches(key, "initrd"))
                {
                    spec.InitrdOffset = argOffset;
                    spec.InitrdLength = arg.Length;
                }
                else if (Matches(key, "modules"))
                {
                    spec.ModulesOffset = argOffset;
                    spec.ModulesLength = arg.Length;
                }
                else if (Matches(key, "budget"))
                {
                    if (Matches(arg, "none"))
                        spec.BudgetSeconds = CommandLineOptions.NoBudget;
                    else if (!TryParseNumber(arg, out spec.BudgetSeconds) || spec.BudgetSeconds == 0 || spec.BudgetSeconds > 1_000_000)
                    {
                        VmRefused("vm= budget must be a number of seconds (1..1000000) or none: ", arg, ref log);
                        return;
                    }
                }
                else if (Matches(key, "reset"))
                {
                    if (Matches(arg, "restart"))
                        spec.RestartOnReset = true;
                    else if (!Matches(arg, "stop"))
                    {
                        VmRefused("vm= reset must be stop or restart: ", arg, ref log);
                        return;
                    }
                }
                else if (Matches(key, "fwcfg"))
                {
                    spec.FwCfgOffset = argOffset;
                    spec.FwCfgLength = arg.Length;
                }
                else if (Matches(key, "defaults"))
                {
                    if (Matches(arg, "off"))
                        spec.NoDefaultCmdline = true;
                    else if (!Matches(arg, "on"))
                    {
                        VmRefused("vm= defaults must be on or off: ", arg, ref log);
                        return;
                    }
                }
                else
                {
                    VmRefused("unknown vm= suboption (known: mem, cpus, pin, cmdline, initrd, modules, budget, defaults, fwcfg, reset, seed): ", key, ref log);
                    return;
                }
            }
            if (spec.ModuleLength == 0)
            {
                log.Line("vm= needs a module name; vm ignored", "", ReadOnlySpan<byte>.Empty, "");
                return;
            }
            o.VmCount++;
        }

        /// <summary>A size in MiB: a number of MiB, or a number with K, M or G (KiB, MiB, GiB also accepted).</summary>
        public static bool TryParseSize(ReadOnlySpan<byte> text, out ulong mib)
        {
            mib = 0;
            int digits = 0;
            while (digits < text.Length && text[digits] >= '0' && text[digits] <= '9')
                digits++;
            if (!TryParseNumber(text.Slice(0, digits), out ulong n))
                return false;
            ReadOnlySpan<byte> unit = text.Slice(digits);
            if (unit.Length == 0 || Matches(unit, "M") || Matches(unit, "MiB"))
            {
                mib = n;
                return true;
            }
            if (Matches(unit, "G") || Matches(unit, "GiB"))
            {
                if (n > (1UL << 40))
                    return false;
                mib = n << 10;
                return true;
            }
            if (Matches(unit, "K") || Matches(unit, "KiB"))
            {
                if ((n & 1023) != 0)
                    return false;
                mib = n >> 10;
                return true;
            }
            return false;
        }

        /// <summary>A decimal number of 1 to 19 digits (so it cannot overflow).</summary>
        public static bool TryParseNumber(ReadOnlySpan<byte> text, out ulong value)
        {
            value = 0;
            if (text.Length <= 0 || text.Length > 19)
                return false;
            for (int i = 0; i < text.Length; i++)
            {
                if (text[i] < '0' || text[i] > '9')
                    return false;
                value = value * 10 + (ulong)(text[i] - '0');
            }
            return true;
        }

        public static bool Matches(ReadOnlySpan<byte> text, string expected)
        {
            if (text.Length != expected.Length)
                return false;
            for (int i = 0; i < text.Length; i++)
            {
                if (text[i] != expected[i])
                    return false;
            }
            return true;
        }
    }
}
