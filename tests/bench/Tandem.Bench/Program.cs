using System;
using System.Linq;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Tandem.Benchmarks;

namespace Tandem.Bench;

/// <summary>
/// The mm benchmarks (one class per file; add new ones beside these), one invocation of at least
/// 100 ms per side, both sides of a ratio in every iteration (<see cref="Paired"/>), timed by the thread's CPU time (<see cref="ThreadCpuClock"/>: the machine
/// is shared; wall-clock medians are printed beside), then the ratios of the medians measured in the same run against their goals.
/// <c>dotnet run -c Release --project tests/bench/Tandem.Bench -- [--artifacts DIR] [BenchmarkDotNet options]</c>.
/// Exit status 1 when a goal is missed.
/// </summary>
public static class Program
{
    public const int Warmups = 1;
    public const int Iterations = 25;

    public static int Main(string[] args)
    {
        if (args.Length > 1 && args[0] == "--probe-fault")
            return FaultInBenchmarks.Probe(int.Parse(args[1]));
        string artifacts = BenchReport.Artifacts(ref args);
        Summary[] s = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly)
            .Run(args, BenchReport.Config(artifacts, Warmups, Iterations, ThreadCpuClock.Instance)).ToArray();
        foreach ((string method, int k) in BenchReport.Ran(s))
            Paired.Keep(new[] { method }, k);
        BenchReport report = new BenchReport("Tandem.Bench (mm)");
        report.Paired("unmap: one null notifier / none", nameof(UnmapNotifierBenchmarks.UnmapNotifierVsNone), 1.1);
        // fault-in rate >= 0.5 x zeroing rate  <=>  fault-in time / zeroing time (same page count) <= 2.
        report.Paired("demand fault-in / zeroing, same pages (fault-in rate >= 0.5x zeroing rate)", nameof(FaultInBenchmarks.FaultInVsZero), 2.0);
        report.Paired("LZ4 compress, page mix: Tandem / K4os L00_FAST", nameof(Lz4CompressBenchmarks.TandemVsK4os), 2.0);
        report.Figure("LZ4 compressed size, page mix: Tandem / K4os L00_FAST (within 5 %)", nameof(Lz4CompressBenchmarks.TandemVsK4os),
            Lz4CompressBenchmarks.SizeRatio, 1.05, true,
            $"{Lz4CompressBenchmarks.TandemBytes} B / {Lz4CompressBenchmarks.K4osBytes} B over {Lz4CompressBenchmarks.Pages} pages, seed {Lz4CompressBenchmarks.Seed}");
        report.Print();
        report.Save(artifacts, "Tandem.Bench-goals.json");
        BenchReport.PrintJsonPaths(artifacts);
        bool missed = report.Missed(BenchReport.AllSelected);
        Console.WriteLine(missed ? "Tandem.Bench: MISSED goal(s), see above" : "Tandem.Bench: all goals met");
        return missed ? 1 : 0;
    }
}
