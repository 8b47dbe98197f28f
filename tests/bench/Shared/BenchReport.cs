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
/// Every figure a ratio uses is a median (BenchmarkDotNet's <c>Statistics.Median</c> over all
/// measured iterations: outliers are kept), and every ratio is labelled so.
/// </summary>
public sealed class BenchReport
{
    private readonly List<Row> _rows = new List<Row>();
    private readonly string _title;

    public BenchReport(string title) { _title = title; }

    /// <summary>
    /// One invocation per iteration (every benchmark here makes one iteration last ≥ 100 ms on its
    /// own), no overhead evaluation (it would rerun each iteration setup for nothing), in-process,
    /// results exported as BenchmarkDotNet's full JSON into <paramref name="artifacts"/>/results.
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
        return DefaultConfig.Instance
            .AddJob(job)
            .AddExporter(JsonExporter.Full)
            .WithOptions(ConfigOptions.DisableOptimizationsValidator)
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

    /// <summary>The median of a benchmark method (ns per operation), or null if it did not run.</summary>
    public static double? Median(IEnumerable<Summary> summaries, string method)
    {
        foreach (Summary s in summaries)
        {
            foreach (BenchmarkReport r in s.Reports)
            {
                if (r.BenchmarkCase.Descriptor.WorkloadMethod.Name == method && r.ResultStatistics != null)
                    return r.ResultStatistics.Median;
            }
        }
        return null;
    }

    /// <summary>Adds a ratio of two medians; <paramref name="limit"/> null means a contrast (printed, no goal).</summary>
    public void Ratio(string label, string numerator, double? num, string denominator, double? den, double? limit, bool atMost = true,
        double? wallNum = null, double? wallDen = null)
    {
        _rows.Add(new Row(label, numerator, num, denominator, den, limit, atMost, wallNum, wallDen));
    }

    /// <summary>What the medians measure (printed in the header and saved).</summary>
    public string Statistic { get; set; } = "median";

    /// <summary>A goal missed, or (when <paramref name="all"/>: every benchmark was meant to run) a goal without figures.</summary>
    public bool Missed(bool all) => _rows.Any(r => r.Status == "MISSED" || (all && r.Status == "NOT RUN"));

    public void Print()
    {
        Console.WriteLine();
        Console.WriteLine($"== {_title}: ratios of {Statistic} (same run) ==");
        foreach (Row r in _rows)
        {
            string ratio = r.Value.HasValue ? r.Value.Value.ToString("F3", CultureInfo.InvariantCulture) + "x" : "  -   ";
            string goal = r.Limit.HasValue ? (r.AtMost ? "<= " : ">= ") + r.Limit.Value.ToString("0.0##", CultureInfo.InvariantCulture) + "x" : "contrast";
            string wall = r.WallValue.HasValue ? $"; wall-clock medians {r.WallValue.Value.ToString("F3", CultureInfo.InvariantCulture)}x" : "";
            Console.WriteLine($"{r.Label,-62} {ratio,9}  goal {goal,-9} {r.Status,-8} ({Fmt(r.Num)} / {Fmt(r.Den)}{wall})");
        }
    }

    private static string Fmt(double? ns)
    {
        if (!ns.HasValue)
            return "n/a";
        double v = ns.Value;
        if (double.IsInfinity(v))
            return "inf";
        return v >= 1e6 ? (v / 1e6).ToString("F2", CultureInfo.InvariantCulture) + " ms"
            : v >= 1e3 ? (v / 1e3).ToString("F2", CultureInfo.InvariantCulture) + " us"
            : v.ToString("F2", CultureInfo.InvariantCulture) + " ns";
    }

    /// <summary>Writes the table as JSON next to BenchmarkDotNet's own JSON; returns the path.</summary>
    public string Save(string artifacts, string fileName)
    {
        StringBuilder sb = new StringBuilder();
        sb.Append("{\n  \"title\": ").Append(Quote(_title)).Append(",\n  \"statistic\": ").Append(Quote(Statistic)).Append(",\n  \"ratios\": [\n");
        for (int i = 0; i < _rows.Count; i++)
        {
            Row r = _rows[i];
            sb.Append("    {\"label\": ").Append(Quote(r.Label))
              .Append(", \"numerator\": ").Append(Quote(r.NumName)).Append(", \"numeratorMedianNs\": ").Append(Num(r.Num))
              .Append(", \"denominator\": ").Append(Quote(r.DenName)).Append(", \"denominatorMedianNs\": ").Append(Num(r.Den))
              .Append(", \"ratio\": ").Append(Num(r.Value))
              .Append(", \"wallClockRatio\": ").Append(Num(r.WallValue))
              .Append(", \"goal\": ").Append(r.Limit.HasValue ? Quote((r.AtMost ? "<= " : ">= ") + r.Limit.Value.ToString(CultureInfo.InvariantCulture)) : "null")
              .Append(", \"status\": ").Append(Quote(r.Status)).Append('}')
              .Append(i + 1 < _rows.Count ? ",\n" : "\n");
        }
        sb.Append("  ]\n}\n");
        string dir = Path.Combine(artifacts, "results");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, fileName);
        File.WriteAllText(path, sb.ToString());
        return path;
    }

    /// <summary>Prints where BenchmarkDotNet's JSON reports and the ratio file are.</summary>
    public static void PrintJsonPaths(string artifacts)
    {
        string dir = Path.Combine(artifacts, "results");
        if (!Directory.Exists(dir))
            return;
        foreach (string f in Directory.GetFiles(dir, "*.json").OrderBy(f => f, StringComparer.Ordinal))
            Console.WriteLine("json: " + f);
    }

    private static string Num(double? v) =>
        v.HasValue && !double.IsInfinity(v.Value) && !double.IsNaN(v.Value) ? v.Value.ToString("R", CultureInfo.InvariantCulture) : "null";

    private static string Quote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";

    private sealed record Row(string Label, string NumName, double? Num, string DenName, double? Den, double? Limit, bool AtMost, double? WallNum, double? WallDen)
    {
        public double? Value => Num.HasValue && Den.HasValue && Den.Value > 0 ? Num.Value / Den.Value : null;

        public double? WallValue => WallNum.HasValue && WallDen.HasValue && WallDen.Value > 0 ? WallNum.Value / WallDen.Value : null;

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
