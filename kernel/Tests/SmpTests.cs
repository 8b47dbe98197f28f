using System.Threading;

namespace Tandem.Kernel.Tests
{
    internal static unsafe class SmpTests
    {
        private static int s_seen;

        private static void RecordCpu(ulong expected)
        {
            if ((ulong)Cpu.CurrentIndex == expected)
                Interlocked.Or(ref s_seen, 1 << (int)expected);
        }

        public static void AllCpusCheckedIn(TestContext t)
        {
            int expected = Acpi.ApicCount > 0 ? Acpi.ApicCount : 1;
            if (!t.Check(KernelMain.OnlineCpus == expected, "not every CPU the MADT lists came online"))
                return;
            s_seen = 0;
            for (int i = 0; i < Cpu.Count && i < 31; i++)
            {
                if (!t.Check(Smp.RunOn(i, &RecordCpu, (ulong)i), "a CPU did not run a function sent to it"))
                    return;
            }
            int all = Cpu.Count >= 31 ? int.MaxValue : (1 << Cpu.Count) - 1;
            t.Check(Volatile.Read(ref s_seen) == all, "a CPU did not report itself from its own index");
        }

        private const int Iterations = 20000;
        private static int s_int;
        private static uint s_uint;
        private static long s_long;
        private static ulong s_ulong;
        private static long s_orBits;
        private static int s_started;
        private static int s_finished;

        private static void Bump(ulong cpuIndex)
        {
            // Start together so the increments really race.
            Interlocked.Increment(ref s_started);
            while (Volatile.Read(ref s_started) < Cpu.Count)
                Tandem.Arch.X86.Native.Pause();
            for (int i = 0; i < Iterations; i++)
            {
                Interlocked.Increment(ref s_int);
                Interlocked.Add(ref s_uint, 3u);
                Interlocked.Add(ref s_long, 5L);
                Interlocked.Decrement(ref s_ulong);
                int current = Volatile.Read(ref s_int);
                Interlocked.CompareExchange(ref s_int, current, current);   // exercised, value unchanged
            }
            Interlocked.Or(ref s_orBits, 1L << (int)cpuIndex);
            Interlocked.Increment(ref s_finished);
        }

        public static void InterlockedTotals(TestContext t)
        {
            int cpus = Cpu.Count;
            s_int = 0; s_uint = 0; s_long = 0; s_ulong = (ulong)cpus * Iterations; s_orBits = 0;
            s_started = 0; s_finished = 0;
            for (int i = 1; i < cpus; i++)
                Smp.Post(i, &Bump, (ulong)i);
            Bump(0);
            for (long spin = 0; Volatile.Read(ref s_finished) < cpus && spin < 4_000_000_000L; spin++)
                Tandem.Arch.X86.Native.Pause();
            if (!t.Check(Volatile.Read(ref s_finished) == cpus, "not every CPU finished"))
                return;
            t.Check(s_int == cpus * Iterations, "Interlocked.Increment(int) lost updates");
            t.Check(s_uint == (uint)(cpus * Iterations * 3), "Interlocked.Add(uint) lost updates");
            t.Check(s_long == (long)cpus * Iterations * 5, "Interlocked.Add(long) lost updates");
            t.Check(s_ulong == 0, "Interlocked.Decrement(ulong) lost updates");
            t.Check(s_orBits == (1L << cpus) - 1, "Interlocked.Or lost a bit");
            long and = s_orBits;
            Interlocked.And(ref and, ~1L);
            t.Check(and == s_orBits - 1, "Interlocked.And gave the wrong value");
        }
    }
}
