using System;
using System.Collections.Generic;
using System.Linq;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace Tandem.Kvm.Bench;

public static class Program
{
    public static int Main(string[] args)
    {
        // Each measured operation is one whole pass (≈0.1–2 ms), run once per iteration after an
        // [IterationSetup] that restores the state; in-process so the run takes a few minutes.
        Job job = Job.Default
            .WithToolchain(InProcessEmitToolchain.Instance)
            .WithInvocationCount(1).WithUnrollFactor(1)
            .WithWarmupCount(4).WithIterationCount(25);
        IConfig config = DefaultConfig.Instance.AddJob(job).WithOptions(ConfigOptions.DisableOptimizationsValidator);
        Summary[] summaries = BenchmarkSwitcher.FromTypes(new[] { typeof(AgingBench), typeof(ConcurrentAgingBench), typeof(InvalidateBench) })
            .Run(args.Length == 0 ? new[] { "--filter", "*" } : args, config).ToArray();
        Console.WriteLine();
        Console.WriteLine("== Tandem.Kvm.Bench ratios (mean / baseline mean, same run) ==");
        foreach (Summary s in summaries)
            PrintRatios(s);
        Console.WriteLine("INVEPT per invalidated range (primary+EPT unmap): " + InvalidateBench.InvEptPerRange.ToString("F3") +
            " (" + InvalidateBench.InvEpts + " INVEPTs over " + InvalidateBench.Ranges + " notifier ranges)");
        return 0;
    }

    private static void PrintRatios(Summary s)
    {
        Dictionary<string, double> mean = new Dictionary<string, double>();
        foreach (BenchmarkReport r in s.Reports)
        {
            if (r.ResultStatistics != null)
                mean[r.BenchmarkCase.Descriptor.WorkloadMethod.Name] = r.ResultStatistics.Median;
        }
        foreach ((string name, string baseline, string goal) in Goals)
        {
            if (mean.TryGetValue(name, out double m) && mean.TryGetValue(baseline, out double b))
                Console.WriteLine($"{name,-34} / {baseline,-30} = {m / b,6:F2}x  (median {m / 1000,9:F1} us vs {b / 1000,9:F1} us; goal {goal})");
        }
    }

    private static readonly (string, string, string)[] Goals =
    {
        ("AgingPass10PercentYoung", "PlainReadScan", "<= 1.5x"),
        ("AgingPassAllYoung", "AtomicAndLoopAllYoung", "<= 1.2x"),
        ("GlobalLockAgingPass10PercentYoung", "PlainReadScan", "contrast"),
        ("AgingPassWithConcurrentFaulter", "AgingPassAlone", "<= 1.1x"),
        ("GlobalLockAgingWithConcurrentFaulter", "AgingPassAlone", "contrast"),
        ("UnmapPrimaryAndEpt", "UnmapPrimaryOnly", "<= 1.6x"),
    };
}
