using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace Tandem.Benchmarks;

/// <summary>
/// Shared by the benchmark projects (linked into each): the job, the exporters, and the goal table.
/// Each goal is a paired ratio (<see cref="Paired"/>): the median over the measured iterations of
/// candidate/baseline thread CPU time within the same iteration; every row says so.
/// </summary>
public sealed class BenchReport
{
    private readonly List<Row> _rows = new List<Row>();
    private readonly string _title;

    public BenchReport(string title) { _title = title; }

    /// <summary>
    /// One invocation per iteration (each iteration runs both sides of a ratio, every side at least
    /// 100 ms), no overhead evaluation (it would rerun each iteration setup for nothing), outliers
    /// kept, in-process, BenchmarkDotNet's full JSON into <paramref name="artifacts"/>/results.
    /// </summary>
    public static IConfig Config(string artifacts, int warmups, int iterations, Perfolizer.Horology.IClock? clock = null)
    {
        Job job = Job.Default
            .WithToolchain(InProcessEmitToolchain.Instance)
            .WithInvocationCount(1).WithUnrollFactor(1)
            .WithEvaluateOverhead(false)
            .WithOutlierMode(Perfolizer.Mathematics.OutlierDetection.OutlierMode.DontRemove)
            .WithWarmupCount(warmups).WithIterationCount(iterations)
            .WithId("tandem");
        if (clock != null)
            job = job.WithClock(clock);
        return ManualConfig.Create(DefaultConfig.Instance)
            .AddJob(job)
            .AddExporter(JsonExporter.Full)
            .WithOptions(ConfigOptions.DisableOptimizationsValidator | ConfigOptions.DisableLogFile)
            .WithArtifactsPath(artifacts);
    }

    /// <summary>True when no filter was given: every benchmark runs, so a goal without figures is a failure.</summary>
    public static bool AllSelected { get; private set; }

    /// <summary>Splits <c>--artifacts DIR</c> off the arguments (default: ./BenchmarkDotNet.Artifacts).</summary>
    public static string Artifacts(ref string[] args)
    {
        List<string> rest = new List<string>();
        string dir = Path.GetFullPath("BenchmarkDotNet.Artifacts");
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--artifacts" && i + 1 < args.Length)
                dir = Path.GetFullPath(args[++i]);
            else
                rest.Add(args[i]);
        }
        args = rest.Count == 0 ? new[] { "--filter", "*" } : rest.ToArray();
        AllSelected = rest.Count == 0;
        return dir;
    }

    /// <summary>The names of the benchmark methods that ran, with their measured iteration counts.</summary>
    public static IEnumerable<(string Method, int Measured)> Ran(IEnumerable<Summary> summaries) =>
        summaries.SelectMany(s => s.Reports).Select(r => (r.BenchmarkCase.Descriptor.WorkloadMethod.Name,
            r.AllMeasurements.Count(m => m.IterationMode == BenchmarkDotNet.Engines.IterationMode.Workload && m.IterationStage == BenchmarkDotNet.Engines.IterationStage.Actual)));

    /// <summary>A goal (or, with <paramref name="limit"/> null, a contrast printed without one) on a paired case.</summary>
    public void Paired(string label, string method, double? limit, bool atMost = true)
    {
        double? value = Benchmarks.Paired.MedianRatio(Benchmarks.Paired.CpuA, Benchmarks.Paired.CpuB, method);
        double? wall = Benchmarks.Paired.MedianRatio(Benchmarks.Paired.WallA, Benchmarks.Paired.WallB, method);
        double? a = Benchmarks.Paired.CpuA.Median(method), b = Benchmarks.Paired.CpuB.Median(method);
        int n = Benchmarks.Paired.CpuA.Measured(method)?.Count ?? 0;
        string detail = $"median A {Fmt(a)}, median B {Fmt(b)}, n={n}; wall-clock paired {F(wall)}";
        _rows.Add(new Row(label, method, value, limit, atMost, detail, wall));
    }

    /// <summary>A contrast (no goal) from two per-iteration sample sets of the same paired case: median over iterations of a/b.</summary>
    public void PairedSamples(string label, string method, Samples a, Samples b, string detail)
    {
        double? value = Benchmarks.Paired.MedianRatio(a, b, method);
        _rows.Add(new Row(label, method, value, null, true, $"median {Fmt(a.Median(method))} / median {Fmt(b.Median(method))}; {detail}", null));
    }

    /// <summary>
    /// A goal on a figure that is not a time ratio (e.g. a size ratio measured once, untimed), or
    /// null when its benchmark did not run.
    /// </summary>
    public void Figure(string label, string method, double? value, double limit, bool atMost, string detail) =>
        _rows.Add(new Row(label, method, value, limit, atMost, detail, null));

    /// <summary>A goal missed, or (when <paramref name="all"/>: every benchmark was meant to run) a goal without figures.</summary>
    public bool Missed(bool all) => _rows.Any(r => r.Status == "MISSED" || (all && r.Status == "NOT RUN"));

    public void Print()
    {
        Console.WriteLine();
        Console.WriteLine($"== {_title}: goals (paired: median over iterations of A/B thread CPU time, A and B measured in the same iteration) ==");
        foreach (Row r in _rows)
        {
            string goal = r.Limit.HasValue ? (r.AtMost ? "<= " : ">= ") + r.Limit.Value.ToString("0.0##", CultureInfo.InvariantCulture) + "x" : "contrast";
            Console.WriteLine($"{r.Label,-64} {F(r.Value),9}  goal {goal,-9} {r.Status,-7} ({r.Detail})");
        }
    }

    private static string F(double? v) =>
        v.HasValue && !double.IsNaN(v.Value) ? (double.IsInfinity(v.Value) ? "inf" : v.Value.ToString("F3", CultureInfo.InvariantCulture) + "x") : "-";

    public static string Fmt(double? ns)
    {
        if (!ns.HasValue || double.IsNaN(ns.Value))
            return "n/a";
        double v = ns.Value;
        if (double.IsInfinity(v))
            return "inf";
        return v >= 1e6 ? (v / 1e6).ToString("F2", CultureInfo.InvariantCulture) + " ms"
            : v >= 1e3 ? (v / 1e3).ToString("F2", CultureInfo.InvariantCulture) + " us"
            : v.ToString("F2", CultureInfo.InvariantCulture) + " ns";
    }

    /// <summary>Writes the goal table and every measured per-side figure as JSON next to BenchmarkDotNet's; returns the path.</summary>
    public string Save(string artifacts, string fileName)
    {
        StringBuilder sb = new StringBuilder();
        sb.Append("{\n  \"title\": ").Append(Quote(_title))
          .Append(",\n  \"statistic\": \"median over measured iterations of A/B thread CPU time within one iteration\",\n  \"goals\": [\n");
        for (int i = 0; i < _rows.Count; i++)
        {
            Row r = _rows[i];
            sb.Append("    {\"label\": ").Append(Quote(r.Label)).Append(", \"case\": ").Append(Quote(r.Case))
              .Append(", \"ratio\": ").Append(Num(r.Value)).Append(", \"wallClockRatio\": ").Append(Num(r.Wall))
              .Append(", \"goal\": ").Append(r.Limit.HasValue ? Quote((r.AtMost ? "<= " : ">= ") + r.Limit.Value.ToString(CultureInfo.InvariantCulture)) : "null")
              .Append(", \"status\": ").Append(Quote(r.Status)).Append(", \"detail\": ").Append(Quote(r.Detail)).Append('}')
              .Append(i + 1 < _rows.Count ? ",\n" : "\n");
        }
        sb.Append("  ],\n  \"measuredNs\": {\n");
        List<string> cases = Benchmarks.Paired.CpuA.Methods.ToList();
        for (int i = 0; i < cases.Count; i++)
        {
            string c = cases[i];
            sb.Append("    ").Append(Quote(c)).Append(": {")
              .Append("\"cpuA\": ").Append(List(Benchmarks.Paired.CpuA.Measured(c))).Append(", \"cpuB\": ").Append(List(Benchmarks.Paired.CpuB.Measured(c)))
              .Append(", \"wallA\": ").Append(List(Benchmarks.Paired.WallA.Measured(c))).Append(", \"wallB\": ").Append(List(Benchmarks.Paired.WallB.Measured(c)))
              .Append('}').Append(i + 1 < cases.Count ? ",\n" : "\n");
        }
        sb.Append("  }\n}\n");
        string dir = Path.Combine(artifacts, "results");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, fileName);
        File.WriteAllText(path, sb.ToString());
        return path;
    }

    /// <summary>Prints where BenchmarkDotNet's JSON reports and the goal file are.</summary>
    public static void PrintJsonPaths(string artifacts)
    {
        string dir = Path.Combine(artifacts, "results");
        if (!Directory.Exists(dir))
            return;
        foreach (string f in Directory.GetFiles(dir, "*.json").OrderBy(f => f, StringComparer.Ordinal))
            Console.WriteLine("json: " + f);
    }

    private static string List(IReadOnlyList<double>? l) =>
        l == null ? "[]" : "[" + string.Join(", ", l.Select(v => v.ToString("R", CultureInfo.InvariantCulture))) + "]";

    private static string Num(double? v) =>
        v.HasValue && !double.IsInfinity(v.Value) && !double.IsNaN(v.Value) ? v.Value.ToString("R", CultureInfo.InvariantCulture) : "null";

    private static string Quote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";

    private sealed record Row(string Label, string Case, double? Value, double? Limit, bool AtMost, string Detail, double? Wall)
    {
        public string Status
        {
            get
            {
                if (!Value.HasValue)
                    return Limit.HasValue ? "NOT RUN" : "";
                if (!Limit.HasValue)
                    return "";
                return (AtMost ? Value.Value <= Limit.Value : Value.Value >= Limit.Value) ? "ok" : "MISSED";
            }
        }
    }
}
