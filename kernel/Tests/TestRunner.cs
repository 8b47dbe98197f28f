using Tandem.Kernel.Console;

namespace Tandem.Kernel.Tests
{
    /// <summary>
    /// Runs the registered in-kernel tests (<see cref="TestRegistry"/>): each prints
    /// "PASS name", "FAIL name: reason" or "SKIP name: reason", and the run ends with
    /// "N passed, N failed, N skipped".
    /// </summary>
    public static unsafe class TestRunner
    {
        /// <summary>Returns the number of failures.</summary>
        public static int RunAll()
        {
            TestContext context = new TestContext();
            int passed = 0, failed = 0, skipped = 0;
            TestCase[] tests = TestRegistry.All;
            for (int i = 0; i < tests.Length; i++)
            {
                TestCase test = tests[i];
                bool selected = test.ManualOnly
                    ? CommandLine.TestPattern != null && CommandLine.Matches(CommandLine.TestPattern, CommandLine.TestPatternLength, test.Name)
                    : CommandLine.TestSelected(test.Name);
                if (!selected)
                    continue;
                context.Reset();
                int lockups = Watchdog.LockupsReported + Watchdog.SpinsReported;
                Watchdog.TestStarted(test.Name);
                test.Run(context);
                Watchdog.TestStarted(null);
                // A lockup or a 10-second spin is a failure of whatever test it happened in (the
                // watchdog's own tests make theirs on purpose).
                if (Watchdog.LockupsReported + Watchdog.SpinsReported != lockups && !StartsWith(test.Name, "watchdog."))
                    context.Fail("the watchdog reported a CPU without timer ticks or a long spin during this test (its report is above)");
                // PASS/FAIL/SKIP and the counts below show at any loglevel= (the harness reads them).
                if (context.FailReason != null)
                {
                    failed++;
                    if (context.HasFailValue)
                        Log.Always($"FAIL {test.Name}: {context.FailReason} ({context.FailValue})");
                    else
                        Log.Always($"FAIL {test.Name}: {context.FailReason}");
                }
                else if (context.SkipReason != null)
                {
                    skipped++;
                    Log.Always($"SKIP {test.Name}: {context.SkipReason}");
                }
                else
                {
                    passed++;
                    Log.Always($"PASS {test.Name}");
                }
            }
            Log.Always($"{(ulong)passed} passed, {(ulong)failed} failed, {(ulong)skipped} skipped");
            return failed;
        }

        private static bool StartsWith(string text, string prefix)
        {
            if (text.Length < prefix.Length)
                return false;
            for (int i = 0; i < prefix.Length; i++)
            {
                if (text[i] != prefix[i])
                    return false;
            }
            return true;
        }
    }

    /// <summary>One test: a name and a static method.</summary>
    public readonly unsafe struct TestCase
    {
        public readonly string Name;
        public readonly delegate*<TestContext, void> Run;
        public readonly bool ManualOnly;

        public TestCase(string name, delegate*<TestContext, void> run, bool manualOnly = false)
        {
            Name = name;
            Run = run;
            ManualOnly = manualOnly;
        }
    }
}
