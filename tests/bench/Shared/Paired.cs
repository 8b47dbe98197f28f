using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;

namespace Tandem.Benchmarks;

/// <summary>
/// A paired benchmark: every iteration runs both sides of a ratio back to back, candidate (A) and
/// baseline (B), in alternating order, each after its own untimed preparation (restoring the
/// state the pass consumes). BenchmarkDotNet times the iteration (A + B, preparations left out,
/// see <see cref="ThreadCpuClock.Untimed"/>); this records each side's thread CPU time and wall
/// time per iteration. The goal ratio is the median over the measured iterations of A/B within
/// the same iteration: on a shared machine whose load drifts, both sides of each ratio then see
/// the same conditions, which is what makes two runs agree.
/// </summary>
public static class Paired
{
    public static readonly Samples CpuA = new Samples();
    public static readonly Samples CpuB = new Samples();
    public static readonly Samples WallA = new Samples();
    public static readonly Samples WallB = new Samples();
    private static readonly Dictionary<string, int> s_calls = new Dictionary<string, int>();

    public readonly record struct Side(Action? Prepare, Action Pass, Action? After = null);

    /// <summary>One iteration of the paired case <paramref name="name"/>.</summary>
    public static void Iteration(string name, Side a, Side b)
    {
        s_calls.TryGetValue(name, out int n);
        s_calls[name] = n + 1;
        if ((n & 1) == 0)
        {
            Run(name, a, CpuA, WallA);
            Run(name, b, CpuB, WallB);
        }
        else
        {
            Run(name, b, CpuB, WallB);
            Run(name, a, CpuA, WallA);
        }
    }

    private static void Run(string name, Side side, Samples cpu, Samples wall)
    {
        if (side.Prepare != null)
        {
            using (ThreadCpuClock.Untimed())
                side.Prepare();
        }
        long w0 = Stopwatch.GetTimestamp();
        long c0 = ThreadCpuClock.Now();
        side.Pass();
        long c1 = ThreadCpuClock.Now();
        double w = Stopwatch.GetElapsedTime(w0).TotalNanoseconds;
        cpu.Add(name, c1 - c0);
        wall.Add(name, w);
        if (side.After != null)
        {
            using (ThreadCpuClock.Untimed())
                side.After();
        }
    }

    /// <summary>
    /// One iteration of the paired case <paramref name="name"/>, interleaved finely: the work is cut
    /// into <paramref name="chunks"/> chunks (each well above the clock's cost), and each side's
    /// time is the sum of its chunks, read chunk by chunk, so both sides see the same conditions to
    /// within a fraction of a millisecond. <paramref name="shared"/>: A and B consume the same state
    /// (an aging pass clears what it reads), so each chunk goes to one side, alternating, and each
    /// side does half the chunks (the other half in the next iteration); otherwise every chunk runs
    /// both sides, in alternating order. <paramref name="prepare"/>, <paramref name="after"/> and
    /// <paramref name="before"/> (called before each chunk with true for an A chunk) are untimed.
    /// </summary>
    public static void Interleaved(string name, Action? prepare, int chunks, Action<int> a, Action<int> b, bool shared, Action? after = null,
        Action<bool>? before = null)
    {
        s_calls.TryGetValue(name, out int n);
        s_calls[name] = n + 1;
        if (prepare != null)
        {
            using (ThreadCpuClock.Untimed())
                prepare();
        }
        long cpuA = 0, cpuB = 0, wallA = 0, wallB = 0;
        long c = ThreadCpuClock.Now();
        long iterationStart = c;
        long w = Stopwatch.GetTimestamp();
        for (int i = 0; i < chunks; i++)
        {
            bool aFirst = ((i + n) & 1) == 0;
            for (int k = 0; k < (shared ? 1 : 2); k++)
            {
                bool isA = aFirst == (k == 0);
                if (before != null)
                {
                    // Untimed: switching conditions between the sides (e.g. starting a concurrent thread).
                    before(isA);
                    c = ThreadCpuClock.Now();
                    w = Stopwatch.GetTimestamp();
                }
                if (isA)
                    a(i);
                else
                    b(i);
                long c1 = ThreadCpuClock.Now();
                long w1 = Stopwatch.GetTimestamp();
                if (isA)
                {
                    cpuA += c1 - c;
                    wallA += w1 - w;
                }
                else
                {
                    cpuB += c1 - c;
                    wallB += w1 - w;
                }
                c = c1;
                w = w1;
            }
        }
        CpuA.Add(name, cpuA);
        CpuB.Add(name, cpuB);
        WallA.Add(name, wallA * 1e9 / Stopwatch.Frequency);
        WallB.Add(name, wallB * 1e9 / Stopwatch.Frequency);
        if (before != null)
        {
            // BenchmarkDotNet's figure for the iteration: the chunks only.
            ThreadCpuClock.AddUntimed(ThreadCpuClock.Now() - iterationStart - cpuA - cpuB);
        }
        if (after != null)
        {
            using (ThreadCpuClock.Untimed())
                after();
        }
    }

    /// <summary>After a BenchmarkDotNet run: the last <paramref name="k"/> iterations of each case are the measured ones.</summary>
    public static void Keep(IEnumerable<string> names, int k)
    {
        foreach (string name in names)
        {
            CpuA.Keep(name, k);
            CpuB.Keep(name, k);
            WallA.Keep(name, k);
            WallB.Keep(name, k);
        }
    }

    /// <summary>Median over the measured iterations of A/B (same iteration), or null.</summary>
    public static double? MedianRatio(Samples a, Samples b, string name)
    {
        IReadOnlyList<double>? x = a.Measured(name), y = b.Measured(name);
        if (x == null || y == null || x.Count == 0 || x.Count != y.Count)
            return null;
        return Stats.Median(x.Zip(y, (p, q) => p / q));
    }
}
