using System;
using System.IO;
using System.Linq;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace Tandem.Bench;

/// <summary>
/// Runs the benchmarks of this assembly (one class per file; add new ones beside these) with a
/// short in-process job, then prints the ratios of the medians against the baselines measured in the same run.
/// <c>dotnet run -c Release --project tests/bench/Tandem.Bench -- --filter '*'</c>
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        IConfig config = DefaultConfig.Instance
            .AddJob(Job.Default
                .WithToolchain(InProcessEmitToolchain.Instance)
                .WithWarmupCount(3)
                .WithIterationCount(20)
                .WithId("short-inproc"))
            .WithOptions(ConfigOptions.DisableLogFile)
            .WithArtifactsPath(Path.Combine(AppContext.BaseDirectory, "BenchmarkDotNet.Artifacts"));
        if (args.Length == 0)
            args = new[] { "--filter", "*" };
        Summary[] summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config).ToArray();
        PrintRatios(summaries);
        return 0;
    }

    private static double? Mean(Summary[] summaries, string method)
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

    private static void PrintRatios(Summary[] summaries)
    {
        Console.WriteLine();
        Console.WriteLine("== Tandem mm ratios (same run) ==");
        double? none = Mean(summaries, nameof(UnmapNotifierBenchmarks.UnmapNoNotifier));
        double? one = Mean(summaries, nameof(UnmapNotifierBenchmarks.UnmapOneNotifier));
        if (none.HasValue && one.HasValue)
        {
            double ratio = one.Value / none.Value;
            Console.WriteLine($"unmap per 4 KiB page: none {none.Value:F1} ns, one null notifier {one.Value:F1} ns, ratio {ratio:F3} (goal <= 1.1) {(ratio <= 1.1 ? "OK" : "MISSED")}");
        }
        double? zero = Mean(summaries, nameof(FaultInBenchmarks.ZeroOnly));
        double? fault = Mean(summaries, nameof(FaultInBenchmarks.DemandFault));
        if (zero.HasValue && fault.HasValue)
        {
            double rate = zero.Value / fault.Value;
            Console.WriteLine($"per 4 KiB page: zeroing {zero.Value:F1} ns, demand fault-in {fault.Value:F1} ns, fault-in rate / zeroing rate {rate:F3} (goal >= 0.5) {(rate >= 0.5 ? "OK" : "MISSED")}");
        }
    }
}
