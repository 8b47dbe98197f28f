using System;
using Tandem.Kernel.Console;
using Tandem.Kernel.Parsers;

namespace Tandem.Kernel
{
    /// <summary>
    /// The kernel command line's options, as the portable <see cref="CommandLineParser"/> (which
    /// documents the syntax) found them: this class only keeps them, as pointers into the text,
    /// and prints the parser's refusals on the console.
    /// </summary>
    public static unsafe class CommandLine
    {
        public const int MaxVms = CommandLineOptions.MaxVms;

        public static bool RunTests;
        public static bool RunBench;
        /// <summary><c>bench=hotcold</c>: of the in-kernel figures, only the hot/cold one.</summary>
        public static bool BenchHotColdOnly;
        public static byte* TestPattern;     // null: all tests
        public static int TestPatternLength;
        public static bool VmxOff;

        /// <summary>Set by the test harness, which knows its emulator: 1 = VT-x expected, 0 = not, -1 = unknown.</summary>
        public static int ExpectVmx = -1;
        public static int VmCount;

        /// <summary>An option not given.</summary>
        public const ulong Unset = CommandLineOptions.Unset;
        /// <summary>swap=SIZE|off (MiB; off = 0), mem.limit=SIZE (MiB), mmstats=SECONDS; <see cref="Unset"/> when not given.</summary>
        public static ulong SwapMiB = Unset, MemLimitMiB = Unset, MmStatsSeconds = Unset;

        /// <summary>watermarks=LOW,HIGH (MiB); <see cref="Unset"/> when not given.</summary>
        public static ulong WatermarkLowMiB = Unset, WatermarkHighMiB = Unset;
        /// <summary>ksm=on: the page-merging scanner thread runs (default off).</summary>
        public static bool Ksm;
        /// <summary>thp=on: every VM's RAM may be backed by tracked 2 MiB pages (default off; docs/reclaim.md, "Huge pages").</summary>
        public static bool Thp;
        /// <summary>monitor="cmd;cmd": the monitor's script (quotes removed), or null (docs/monitor.md).</summary>
        public static byte* MonitorScript;
        public static int MonitorScriptLength;
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
            /// <summary>seed=N: with the module name <c>fuzz</c>, the fuzz guest of that seed (docs/fuzzing.md); <see cref="Unset"/> when not given.</summary>
            public ulong Seed;
        }

        /// <summary>fuzz=SEED:COUNT[:EXITS] (docs/fuzzing.md); FuzzCount 0 when not given, FuzzExits 0 for no goal.</summary>
        public static ulong FuzzSeed, FuzzCount, FuzzExits;

        /// <summary>How many times in a row a <c>reset=restart</c> VM is restarted before the host gives up on it.</summary>
        public const int DefaultMaxRestarts = 1000;

        /// <summary><c>budget=none</c>: the guest runs until it stops itself or the host ends.</summary>
        public const ulong NoBudget = CommandLineOptions.NoBudget;

        public static ref VmSpec Vm(int i) => ref s_vms[i];

        /// <summary>The kernel's log as the parser's: each line whole, prefixed "cmdline: ", and counted.</summary>
        public struct ConsoleLog : ICommandLineLog
        {
            public int Lines;

            public void Line(string what, string between, ReadOnlySpan<byte> value, string after)
            {
                Lines++;
                Log.Info($"cmdline: {what}{between}{value}{after}");
            }
        }

        /// <summary>
        /// Parses the command line in place (<paramref name="length"/> bytes at most, up to a NUL) with
        /// the portable <see cref="CommandLineParser"/>; the options point into the text.
        /// </summary>
        public static void Parse(byte* text, int length)
        {
            if (text == null)
                return;
            CommandLineOptions o = CommandLineOptions.Defaults();
            var log = new ConsoleLog();
            CommandLineParser.Parse(new Span<byte>(text, length), ref o, ref log);
            RunTests = o.RunTests;
            RunBench = o.RunBench;
            BenchHotColdOnly = o.BenchHotColdOnly;
            if (o.TestPatternOffset >= 0)
            {
                TestPattern = text + o.TestPatternOffset;
                TestPatternLength = o.TestPatternLength;
            }
            VmxOff = o.VmxOff;
            ExpectVmx = o.ExpectVmx;
            SwapMiB = o.SwapMiB;
            MemLimitMiB = o.MemLimitMiB;
            WatermarkLowMiB = o.WatermarkLowMiB;
            WatermarkHighMiB = o.WatermarkHighMiB;
            MmStatsSeconds = o.MmStatsSeconds;
            Ksm = o.Ksm;
            Thp = o.Thp;
            Log.Level = o.LogLevel;
            FuzzSeed = o.FuzzSeed;
            FuzzCount = o.FuzzCount;
            FuzzExits = o.FuzzExits;
            MonitorScript = Pointer(text, o.MonitorOffset);
            MonitorScriptLength = o.MonitorLength;
            VmCount = o.VmCount;
            for (int i = 0; i < o.VmCount; i++)
            {
                ref VmOptions v = ref o.Vm(i);
                ref VmSpec spec = ref s_vms[i];
                spec = default;
                spec.Module = text + v.ModuleOffset;
                spec.ModuleLength = v.ModuleLength;
                spec.MemoryMiB = v.MemoryMiB;
                spec.Cpus = v.Cpus;
                spec.PinMask = v.PinMask;
                spec.Cmdline = Pointer(text, v.CmdlineOffset);
                spec.CmdlineLength = v.CmdlineLength;
                spec.Initrd = Pointer(text, v.InitrdOffset);
                spec.InitrdLength = v.InitrdLength;
                spec.Modules = Pointer(text, v.ModulesOffset);
                spec.ModulesLength = v.ModulesLength;
                spec.BudgetSeconds = v.BudgetSeconds;
                spec.NoDefaultCmdline = v.NoDefaultCmdline;
                spec.RestartOnReset = v.RestartOnReset;
                spec.FwCfgFiles = Pointer(text, v.FwCfgOffset);
                spec.FwCfgFilesLength = v.FwCfgLength;
                spec.Seed = v.Seed;
            }
        }

        private static byte* Pointer(byte* text, int offset) => offset < 0 ? null : text + offset;

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
