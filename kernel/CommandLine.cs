using Tandem.Kernel.Console;

namespace Tandem.Kernel
{
    /// <summary>
    /// The kernel command line: space-separated words, each "name" or "name=value"; a double-quoted
    /// part of a word may hold spaces (and, inside <c>vm=</c>, commas). Known: <c>test</c>,
    /// <c>test=PATTERN</c>, <c>vm=MODULE[,mem=SIZE][,cpus=N][,pin=A+B][,cmdline="..."][,initrd=MODULE][,modules=A+B][,budget=S|none][,defaults=off][,fwcfg=NAME:MODULE+...][,reset=stop|restart]</c>,
    /// <c>vmx=off</c>, <c>bench</c>, <c>expect_vmx=yes|no</c>. Anything else is reported by name and ignored.
    /// </summary>
    public static unsafe class CommandLine
    {
        public const int MaxVms = 8;

        public static bool RunTests;
        public static bool RunBench;
        public static byte* TestPattern;     // null: all tests
        public static int TestPatternLength;
        public static bool VmxOff;

        /// <summary>Set by the test harness, which knows its emulator: 1 = VT-x expected, 0 = not, -1 = unknown.</summary>
        public static int ExpectVmx = -1;
        public static int VmCount;

        /// <summary>An option not given.</summary>
        public const ulong Unset = ulong.MaxValue;
        /// <summary>swap=SIZE|off (MiB; off = 0), mem.limit=SIZE (MiB), mmstats=SECONDS; <see cref="Unset"/> when not given.</summary>
        public static ulong SwapMiB = Unset, MemLimitMiB = Unset, MmStatsSeconds = Unset;
        /// <summary>ksm=on: the page-merging scanner thread runs (default off).</summary>
        public static bool Ksm;
        private static VmArgs s_vms;

        [System.Runtime.CompilerServices.InlineArray(MaxVms)]
        private struct VmArgs { private VmSpec _e; }

        public struct VmSpec
        {
            public byte* Module;
            public int ModuleLength;
            public ulong MemoryMiB;
            public int Cpus;
            /// <summary>The physical CPUs (bit i = CPU index i) its vCPU threads may run on; 0: any.</summary>
            public ulong PinMask;
            /// <summary>The guest's own command line (quotes removed), or null.</summary>
            public byte* Cmdline;
            public int CmdlineLength;
            /// <summary>The module to load as the initrd (Linux) or first module, or null.</summary>
            public byte* Initrd;
            public int InitrdLength;
            /// <summary>More modules, names separated by '+', or null.</summary>
            public byte* Modules;
            public int ModulesLength;
            /// <summary>budget=SECONDS: the guest's time budget; 0: the default for its kind, <see cref="NoBudget"/>: none.</summary>
            public ulong BudgetSeconds;
            /// <summary>defaults=off: no default command line for a Linux guest, only cmdline=.</summary>
            public bool NoDefaultCmdline;
            /// <summary>reset=restart: a reset of the guest's machine restarts the VM (default: it ends).</summary>
            public bool RestartOnReset;
            /// <summary>Restarts allowed in a row (0: the default, <see cref="DefaultMaxRestarts"/>).</summary>
            public int MaxRestarts;
            /// <summary>fwcfg=NAME:MODULE joined by '+': fw_cfg files for the guest, or null.</summary>
            public byte* FwCfgFiles;
            public int FwCfgFilesLength;
        }

        /// <summary>How many times in a row a <c>reset=restart</c> VM is restarted before the host gives up on it.</summary>
        public const int DefaultMaxRestarts = 1000;

        /// <summary><c>budget=none</c>: the guest runs until it stops itself or the host ends.</summary>
        public const ulong NoBudget = ulong.MaxValue;

        public static ref VmSpec Vm(int i) => ref s_vms[i];

        public static void Parse(byte* text)
        {
            if (text == null)
                return;
            // GRUB hands over each of its words as typed, except that a word with spaces arrives
            // in double quotes with its own double quotes and backslashes escaped (\" and \\).
            // Words are unquoted in place (bytes only move left, so the pointers the options keep
            // stay valid): an unescaped double quote groups, an escaped one is a literal double
            // quote for the option to see (vm=...,cmdline="a, b").
            int r = 0;
            while (text[r] != 0)
            {
                while (text[r] == ' ')
                    r++;
                if (text[r] == 0)
                    break;
                int start = r;
                int w = r;
                int eq = -1;
                bool quoted = false;
                while (text[r] != 0 && (quoted || text[r] != ' '))
                {
                    byte c = text[r];
                    if (c == '\\' && (text[r + 1] == '"' || text[r + 1] == '\\'))
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
                    Log.Line("cmdline: a double quote is not closed; the word runs to the end of the line");
                int end = w;
                if (text[r] != 0)
                    r++;                          // the space after the word
                int nameEnd = eq < 0 ? end : eq;
                byte* name = text + start;
                int nameLength = nameEnd - start;
                byte* value = eq < 0 ? null : text + eq + 1;
                int valueLength = eq < 0 ? 0 : end - eq - 1;
                Apply(name, nameLength, value, valueLength);
            }
        }

        private static void Apply(byte* name, int nameLength, byte* value, int valueLength)
        {
            if (Matches(name, nameLength, "test"))
            {
                RunTests = true;
                if (value != null && valueLength > 0)
                {
                    TestPattern = value;
                    TestPatternLength = valueLength;
                }
                return;
            }
            if (Matches(name, nameLength, "bench") && value == null)
            {
                RunBench = true;
                return;
            }
            if (Matches(name, nameLength, "vmx") && value != null && Matches(value, valueLength, "off"))
            {
                VmxOff = true;
                return;
            }
            if (Matches(name, nameLength, "expect_vmx") && value != null)
            {
                ExpectVmx = Matches(value, valueLength, "yes") ? 1 : Matches(value, valueLength, "no") ? 0 : -1;
                return;
            }
            if (Matches(name, nameLength, "vm") && value != null)
            {
                ParseVm(value, valueLength);
                return;
            }
            if (Matches(name, nameLength, "swap") && value != null)
            {
                if (Matches(value, valueLength, "off"))
                    SwapMiB = 0;
                else if (!TryParseSize(value, valueLength, out SwapMiB))
                    Refused("swap= takes a size (64M, 1G) or off", value, valueLength, out SwapMiB);
                return;
            }
            if (Matches(name, nameLength, "mem.limit") && value != null)
            {
                if (!TryParseSize(value, valueLength, out MemLimitMiB) || MemLimitMiB == 0)
                    Refused("mem.limit= takes a size above 0 (256M, 1G)", value, valueLength, out MemLimitMiB);
                return;
            }
            if (Matches(name, nameLength, "ksm") && value != null)
            {
                if (Matches(value, valueLength, "on"))
                    Ksm = true;
                else if (Matches(value, valueLength, "off"))
                    Ksm = false;
                else
                    Refused("ksm= takes on or off", value, valueLength, out _);
                return;
            }
            if (Matches(name, nameLength, "mmstats") && value != null)
            {
                if (!TryParseNumber(value, valueLength, out MmStatsSeconds) || MmStatsSeconds == 0 || MmStatsSeconds > 86400)
                    Refused("mmstats= takes a number of seconds (1..86400)", value, valueLength, out MmStatsSeconds);
                return;
            }
            ulong flags = Log.Begin();
            Log.Write("cmdline: unknown option '");
            for (int k = 0; k < nameLength; k++)
                Log.WriteChar((char)name[k]);
            Log.Write("' ignored\n");
            Log.End(flags);
        }

        /// <summary>A bad value: says so, and the option keeps its default.</summary>
        private static void Refused(string what, byte* value, int length, out ulong option)
        {
            option = Unset;
            ulong f = Log.Begin();
            Log.Write("cmdline: ");
            Log.Write(what);
            Log.Write(": '");
            for (int k = 0; k < length; k++)
                Log.WriteChar((char)value[k]);
            Log.Write("' ignored\n");
            Log.End(f);
        }

        private static void ParseVm(byte* value, int length)
        {
            if (VmCount >= MaxVms)
            {
                Log.Line("cmdline: too many vm= options, extra ignored");
                return;
            }
            ref VmSpec spec = ref s_vms[VmCount];
            spec = default;                  // mem, cpus and budget 0: the defaults for the guest's kind
            int i = 0;
            while (i < length && value[i] != ',')
                i++;
            spec.Module = value;
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
                byte* part = value + start;
                int partLength = i - start;
                int eq = 0;
                while (eq < partLength && part[eq] != '=')
                    eq++;
                byte* arg = part + eq + 1;
                int argLength = partLength - eq - 1;
                if (eq == partLength || argLength <= 0)
                {
                    VmRefused("a vm= suboption needs a value: ", part, partLength);
                    return;
                }
                if (Matches(part, eq, "mem"))
                {
                    if (!TryParseSize(arg, argLength, out spec.MemoryMiB) || spec.MemoryMiB == 0 || spec.MemoryMiB > 4096)
                    {
                        VmRefused("vm= mem must be 1M..4G (a number of MiB, or with a suffix: 256M, 1G): ", arg, argLength);
                        return;
                    }
                }
                else if (Matches(part, eq, "cpus"))
                {
                    if (!TryParseNumber(arg, argLength, out ulong cpus) || cpus == 0 || cpus > 16)
                    {
                        VmRefused("vm= cpus must be 1..16: ", arg, argLength);
                        return;
                    }
                    spec.Cpus = (int)cpus;
                }
                else if (Matches(part, eq, "pin"))
                {
                    // pin=0+1: the physical CPUs (by index) the VM's vCPU threads may run on.
                    ulong mask = 0;
                    for (int at = 0; at < argLength;)
                    {
                        int end = at;
                        while (end < argLength && arg[end] != '+')
                            end++;
                        if (!TryParseNumber(arg + at, end - at, out ulong cpu) || cpu > 63)
                        {
                            VmRefused("vm= pin takes CPU indexes joined by '+', e.g. pin=0+1: ", arg, argLength);
                            return;
                        }
                        mask |= 1UL << (int)cpu;
                        at = end + 1;
                    }
                    spec.PinMask = mask;
                }
                else if (Matches(part, eq, "cmdline"))
                {
                    if (arg[0] == '"' && argLength >= 2 && arg[argLength - 1] == '"')
                    {
                        arg++;
                        argLength -= 2;
                    }
                    spec.Cmdline = arg;
                    spec.CmdlineLength = argLength;
                }
                else if (Matches(part, eq, "initrd"))
                {
                    spec.Initrd = arg;
                    spec.InitrdLength = argLength;
                }
                else if (Matches(part, eq, "modules"))
                {
                    spec.Modules = arg;
                    spec.ModulesLength = argLength;
                }
                else if (Matches(part, eq, "budget"))
                {
                    if (Matches(arg, argLength, "none"))
                        spec.BudgetSeconds = NoBudget;
                    else if (!TryParseNumber(arg, argLength, out spec.BudgetSeconds) || spec.BudgetSeconds == 0 || spec.BudgetSeconds > 1_000_000)
                    {
                        VmRefused("vm= budget must be a number of seconds (1..1000000) or none: ", arg, argLength);
                        return;
                    }
                }
                else if (Matches(part, eq, "reset"))
                {
                    if (Matches(arg, argLength, "restart"))
                        spec.RestartOnReset = true;
                    else if (!Matches(arg, argLength, "stop"))
                    {
                        VmRefused("vm= reset must be stop or restart: ", arg, argLength);
                        return;
                    }
                }
                else if (Matches(part, eq, "fwcfg"))
                {
                    spec.FwCfgFiles = arg;
                    spec.FwCfgFilesLength = argLength;
                }
                else if (Matches(part, eq, "defaults"))
                {
                    if (Matches(arg, argLength, "off"))
                        spec.NoDefaultCmdline = true;
                    else if (!Matches(arg, argLength, "on"))
                    {
                        VmRefused("vm= defaults must be on or off: ", arg, argLength);
                        return;
                    }
                }
                else
                {
                    VmRefused("unknown vm= suboption (known: mem, cpus, pin, cmdline, initrd, modules, budget, defaults, fwcfg, reset): ", part, eq);
                    return;
                }
            }
            if (spec.ModuleLength == 0)
            {
                Log.Line("cmdline: vm= needs a module name; vm ignored");
                return;
            }
            VmCount++;
        }

        private static void VmRefused(string what, byte* text, int length)
        {
            ulong f = Log.Begin();
            Log.Write("cmdline: ");
            Log.Write(what);
            Log.WriteChar('\'');
            for (int k = 0; k < length; k++)
                Log.WriteChar((char)text[k]);
            Log.Write("'; vm ignored\n");
            Log.End(f);
        }

        /// <summary>A size in MiB: a number of MiB, or a number with K, M or G (KiB, MiB, GiB also accepted).</summary>
        public static bool TryParseSize(byte* text, int length, out ulong mib)
        {
            mib = 0;
            int digits = 0;
            while (digits < length && text[digits] >= '0' && text[digits] <= '9')
                digits++;
            if (!TryParseNumber(text, digits, out ulong n))
                return false;
            byte* unit = text + digits;
            int unitLength = length - digits;
            if (unitLength == 0 || Matches(unit, unitLength, "M") || Matches(unit, unitLength, "MiB"))
            {
                mib = n;
                return true;
            }
            if (Matches(unit, unitLength, "G") || Matches(unit, unitLength, "GiB"))
            {
                if (n > (1UL << 40))
                    return false;
                mib = n << 10;
                return true;
            }
            if (Matches(unit, unitLength, "K") || Matches(unit, unitLength, "KiB"))
            {
                if ((n & 1023) != 0)
                    return false;
                mib = n >> 10;
                return true;
            }
            return false;
        }

        public static bool TryParseNumber(byte* text, int length, out ulong value)
        {
            value = 0;
            if (length <= 0 || length > 19)
                return false;
            for (int i = 0; i < length; i++)
            {
                if (text[i] < '0' || text[i] > '9')
                    return false;
                value = value * 10 + (ulong)(text[i] - '0');
            }
            return true;
        }

        public static bool Matches(byte* text, int length, string expected)
        {
            if (length != expected.Length)
                return false;
            for (int i = 0; i < length; i++)
            {
                if (text[i] != expected[i])
                    return false;
            }
            return true;
        }

        /// <summary>Compares a NUL-terminated string with <paramref name="expected"/>.</summary>
        public static bool Equals(byte* text, string expected)
        {
            if (text == null)
                return false;
            int i = 0;
            for (; i < expected.Length; i++)
            {
                if (text[i] != expected[i])
                    return false;
            }
            return text[i] == 0;
        }

        /// <summary>Glob-free pattern: matches when the test name contains the pattern, or the pattern is empty.</summary>
        public static bool TestSelected(string testName)
        {
            if (TestPattern == null)
                return true;
            // test=A,B: a test runs when its name contains any of the comma-separated parts.
            for (int at = 0; at <= TestPatternLength;)
            {
                int end = at;
                while (end < TestPatternLength && TestPattern[end] != ',')
                    end++;
                if (end > at && Contains(testName, TestPattern + at, end - at))
                    return true;
                at = end + 1;
            }
            return false;
        }

        private static bool Contains(string text, byte* part, int length)
        {
            for (int start = 0; start + length <= text.Length; start++)
            {
                int k = 0;
                while (k < length && text[start + k] == part[k])
                    k++;
                if (k == length)
                    return true;
            }
            return false;
        }
    }
}
