using Tandem.Kernel.Console;

namespace Tandem.Kernel
{
    /// <summary>
    /// The kernel command line: space-separated words, each "name" or "name=value".
    /// Known: <c>test</c>, <c>test=PATTERN</c>, <c>vm=MODULE[,mem=MiB][,cpus=N]</c>, <c>vmx=off</c>.
    /// Anything else is reported by name and ignored.
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
        private static VmArgs s_vms;

        [System.Runtime.CompilerServices.InlineArray(MaxVms)]
        private struct VmArgs { private VmSpec _e; }

        public struct VmSpec
        {
            public byte* Module;
            public int ModuleLength;
            public ulong MemoryMiB;
            public int Cpus;
        }

        public static ref VmSpec Vm(int i) => ref s_vms[i];

        public static void Parse(byte* text)
        {
            if (text == null)
                return;
            int i = 0;
            while (text[i] != 0)
            {
                while (text[i] == ' ')
                    i++;
                if (text[i] == 0)
                    break;
                int start = i;
                int eq = -1;
                while (text[i] != 0 && text[i] != ' ')
                {
                    if (text[i] == '=' && eq < 0)
                        eq = i;
                    i++;
                }
                int nameEnd = eq < 0 ? i : eq;
                byte* name = text + start;
                int nameLength = nameEnd - start;
                byte* value = eq < 0 ? null : text + eq + 1;
                int valueLength = eq < 0 ? 0 : i - eq - 1;
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
            ulong flags = Log.Begin();
            Log.Write("cmdline: unknown option '");
            for (int k = 0; k < nameLength; k++)
                Log.WriteChar((char)name[k]);
            Log.Write("' ignored\n");
            Log.End(flags);
        }

        private static void ParseVm(byte* value, int length)
        {
            if (VmCount >= MaxVms)
            {
                Log.Line("cmdline: too many vm= options, extra ignored");
                return;
            }
            ref VmSpec spec = ref s_vms[VmCount];
            spec.MemoryMiB = 16;
            spec.Cpus = 1;
            int i = 0;
            while (i < length && value[i] != ',')
                i++;
            spec.Module = value;
            spec.ModuleLength = i;
            while (i < length)
            {
                i++; // skip ','
                int start = i;
                while (i < length && value[i] != ',')
                    i++;
                byte* part = value + start;
                int partLength = i - start;
                if (partLength > 4 && Matches(part, 4, "mem="))
                {
                    if (!TryParseNumber(part + 4, partLength - 4, out spec.MemoryMiB) || spec.MemoryMiB == 0 || spec.MemoryMiB > 4096)
                    {
                        Log.Line("cmdline: vm= mem must be 1..4096 MiB; vm ignored");
                        return;
                    }
                }
                else if (partLength > 5 && Matches(part, 5, "cpus="))
                {
                    if (!TryParseNumber(part + 5, partLength - 5, out ulong cpus) || cpus == 0 || cpus > 64)
                    {
                        Log.Line("cmdline: vm= cpus must be 1..64; vm ignored");
                        return;
                    }
                    spec.Cpus = (int)cpus;
                }
                else
                {
                    Log.Line("cmdline: unknown vm= suboption ignored");
                }
            }
            if (spec.ModuleLength == 0)
            {
                Log.Line("cmdline: vm= needs a module name; vm ignored");
                return;
            }
            VmCount++;
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
            for (int start = 0; start + TestPatternLength <= testName.Length; start++)
            {
                int k = 0;
                while (k < TestPatternLength && testName[start + k] == TestPattern[k])
                    k++;
                if (k == TestPatternLength)
                    return true;
            }
            return false;
        }
    }
}
