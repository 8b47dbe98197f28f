using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;

namespace Tandem.Benchmarks;

/// <summary>
/// Wall-clock time of every call of a benchmark method (BenchmarkDotNet's clock here is the
/// thread's CPU time): printed beside the CPU-time figures, so preemption by other work on the
/// machine is visible instead of silently dropped. The last <c>count</c> calls of a method are its
/// measured iterations (one invocation per iteration, warmups before).
/// </summary>
public static class WallSamples
{
    private static readonly Dictionary<string, List<double>> s_samples = new Dictionary<string, List<double>>();

    public static long Start() => Stopwatch.GetTimestamp();

    public static void Stop(string method, long start)
    {
        double ns = Stopwatch.GetElapsedTime(start).TotalNanoseconds;
        if (!s_samples.TryGetValue(method, out List<double>? list))
            s_samples[method] = list = new List<double>();
        list.Add(ns);
    }

    /// <summary>Median over the last <paramref name="count"/> calls, or null.</summary>
    public static double? Median(string method, int count)
    {
        if (!s_samples.TryGetValue(method, out List<double>? all) || all.Count < count)
            return null;
        List<double> last = all.Skip(all.Count - count).OrderBy(x => x).ToList();
        int n = last.Count;
        return n % 2 == 1 ? last[n / 2] : (last[n / 2 - 1] + last[n / 2]) / 2;
    }
}
