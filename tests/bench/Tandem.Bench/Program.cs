using System;
using System.Linq;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Tandem.Benchmarks;

namespace Tandem.Bench;

/// <summary>
/// The mm benchmarks (one class per file; add new ones beside these), one invocation of at least
/// 100 ms per iteration, timed by the thread's CPU time (<see cref="ThreadCpuClock"/>: the machine
/// is shared; wall-clock medians are printed beside), then the ratios of the medians measured in the same run against their goals.
/// <c>dotnet run -c Release --project tests/bench/Tandem.Bench -- [--artifacts DIR] [BenchmarkDotNet options]</c>.
/// Exit status 1 when a goal is missed.
/// </summary>
public static class Program
{
    public const int Warmups = 2;
    public const int Iterations = 30;

    public static int Main(string[] args)
    {
        string artifacts = BenchReport.Artifacts(ref args);
        Summary[] s = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly)
            .Run(args, BenchReport.Config(artifacts, Warmups, Iterations, ThreadCpuClock.Instance)).ToArray();
        BenchReport report = new BenchReport("Tandem.Bench (mm)") { Statistic = "median thread CPU time per page" };
        report.Ratio("unmap per page: one null notifier / none",
            nameof(UnmapNotifierBenchmarks.UnmapOneNotifier), BenchReport.Median(s, nameof(UnmapNotifierBenchmarks.UnmapOneNotifier)),
            nameof(UnmapNotifierBenchmarks.UnmapNoNotifier), BenchReport.Median(s, nameof(UnmapNotifierBenchmarks.UnmapNoNotifier)), 1.1,
            wallNum: WallSamples.Median(nameof(UnmapNotifierBenchmarks.UnmapOneNotifier), Iterations),
            wallDen: WallSamples.Median(nameof(UnmapNotifierBenchmarks.UnmapNoNotifier), Iterations));
        // Rate ratio (fault-in rate / zeroing rate) = zeroing time / fault-in time, goal >= 0.5.
        report.Ratio("fault-in rate / zeroing rate (= zero time / fault-in time per page)",
            nameof(FaultInBenchmarks.ZeroOnly), BenchReport.Median(s, nameof(FaultInBenchmarks.ZeroOnly)),
            nameof(FaultInBenchmarks.DemandFault), BenchReport.Median(s, nameof(FaultInBenchmarks.DemandFault)), 0.5, atMost: false,
            wallNum: WallSamples.Median(nameof(FaultInBenchmarks.ZeroOnly), Iterations) / (FaultInBenchmarks.Pages * FaultInBenchmarks.ZeroPasses),
            wallDen: WallSamples.Median(nameof(FaultInBenchmarks.DemandFault), Iterations) / FaultInBenchmarks.Pages);
        report.Print();
        report.Save(artifacts, "Tandem.Bench-ratios.json");
        BenchReport.PrintJsonPaths(artifacts);
        bool missed = report.Missed(BenchReport.AllSelected);
        Console.WriteLine(missed ? "Tandem.Bench: MISSED goal(s), see above" : "Tandem.Bench: all goals met");
        return missed ? 1 : 0;
    }
}
