using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;

namespace Tandem.Benchmarks;

/// <summary>
/// Per-call figures a benchmark method records itself (BenchmarkDotNet records one figure per
/// iteration, on its own clock). After each BenchmarkDotNet run the last <c>k</c> calls of a
/// method are its measured iterations (one invocation per iteration, jitting and warmups come
/// first): <see cref="Keep"/> moves them to the measured list and drops the others.
/// </summary>
public sealed class Samples
{
    private readonly Dictionary<string, List<double>> _calls = new Dictionary<string, List<double>>();
    private readonly Dictionary<string, List<double>> _measured = new Dictionary<string, List<double>>();

    public void Add(string method, double value)
    {
        if (!_calls.TryGetValue(method, out List<double>? list))
            _calls[method] = list = new List<double>();
        list.Add(value);
    }

    public void Keep(string method, int count)
    {
        if (!_calls.TryGetValue(method, out List<double>? calls))
            return;
        if (!_measured.TryGetValue(method, out List<double>? kept))
            _measured[method] = kept = new List<double>();
        kept.AddRange(calls.Skip(System.Math.Max(0, calls.Count - count)));
        calls.Clear();
    }

    /// <summary>The measured calls, in order, or null.</summary>
    public IReadOnlyList<double>? Measured(string method) => _measured.TryGetValue(method, out List<double>? l) ? l : null;

    public IEnumerable<string> Methods => _measured.Keys;

    /// <summary>Median of the measured calls, or null if none.</summary>
    public double? Median(string method) =>
        _measured.TryGetValue(method, out List<double>? l) && l.Count > 0 ? Stats.Median(l) : null;
}

/// <summary>Wall-clock time of every call of a benchmark method, printed beside the CPU-time figures.</summary>
public static class WallSamples
{
    public static readonly Samples All = new Samples();

    public static long Start() => Stopwatch.GetTimestamp();

    public static void Stop(string method, long start) => All.Add(method, Stopwatch.GetElapsedTime(start).TotalNanoseconds);

    public static double? Median(string method) => All.Median(method);
}

/// <summary>Median with the usual definition (mean of the two middle values for an even count).</summary>
public static class Stats
{
    public static double Median(IEnumerable<double> values)
    {
        List<double> l = values.OrderBy(x => x).ToList();
        int n = l.Count;
        if (n == 0)
            return double.NaN;
        return n % 2 == 1 ? l[n / 2] : (l[n / 2 - 1] + l[n / 2]) / 2;
    }
}
