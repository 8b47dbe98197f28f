using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Tandem.Benchmarks;

namespace Tandem.Kvm.Bench;

/// <summary>
/// The EPT benchmarks. <c>dotnet run -c Release --project tests/bench/Tandem.Kvm.Bench -- [--artifacts DIR] [BenchmarkDotNet options]</c>;
/// <c>--probe [aliases]</c> times single passes with a stopwatch instead (ns per leaf).
/// BenchmarkDotNet's clock is the benchmark thread's CPU time (<see cref="ThreadCpuClock"/>): this
/// machine is shared, and wall time would also count the time the thread waited for a core. The
/// wall-clock medians are printed beside every ratio. Exit status 1 when a goal is missed.
/// </summary>
public static class Program
{
    public const int Warmups = 2;
    public const int Iterations = 30;

    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "--probe")
            return Probe.Run(args.Length > 1 ? int.Parse(args[1]) : SharedVm.DefaultAliases);
        string artifacts = BenchReport.Artifacts(ref args);
        Console.WriteLine("load average at start: " + LoadAverage());
        Summary[] s = BenchmarkSwitcher.FromTypes(new[] { typeof(AgingBench), typeof(ConcurrentAgingBench), typeof(InvalidateBench) })
            .Run(args, BenchReport.Config(artifacts, Warmups, Iterations, ThreadCpuClock.Instance)).ToArray();
        Console.WriteLine("load average at end: " + LoadAverage());

        BenchReport report = new BenchReport("Tandem.Kvm.Bench (EPT)") { Statistic = "median thread CPU time" };
        if (s.Any(x => x.Reports.Any(r => r.BenchmarkCase.Descriptor.Type != typeof(InvalidateBench))))
        {
            AgingVm vm = SharedVm.Vm;
            Console.WriteLine($"aging VM: 1 GiB guest RAM in {vm.Aliases} alias memslots: {vm.Leaves:N0} 4 KiB EPT leaves in {vm.TableCount:N0} leaf tables ({vm.TableCount * 4L >> 10} MiB); one notifier call per 2 MiB of host range");
        }
        Add(report, s, "aging pass, 10% young / floor (scan + atomic AND per young)",
            nameof(AgingBench.Aging10PercentYoung), nameof(AgingBench.Floor10PercentYoung), 1.1);
        Add(report, s, "aging pass, all young / atomic AND loop",
            nameof(AgingBench.AgingAllYoung), nameof(AgingBench.AtomicAndLoopAllYoung), 1.2);
        Add(report, s, "aging pass, 10% young: with concurrent faulter / alone",
            nameof(ConcurrentAgingBench.AgingWithFaulter), nameof(ConcurrentAgingBench.AgingAlone), 1.1);
        Add(report, s, "  contrast: MMU-lock pass with concurrent faulter / alone",
            nameof(ConcurrentAgingBench.MmuLockAgingWithFaulter), nameof(ConcurrentAgingBench.MmuLockAgingAlone), null);
        Add(report, s, "  contrast: MMU-lock pass with faulter / lockless pass alone",
            nameof(ConcurrentAgingBench.MmuLockAgingWithFaulter), nameof(ConcurrentAgingBench.AgingAlone), null);
        double? faulter = BenchReport.Median(s, nameof(ConcurrentAgingBench.FaulterAlone));
        report.Ratio("  faulter side: CPU ns/fault during lockless pass / alone",
            "faulter during " + nameof(ConcurrentAgingBench.AgingWithFaulter), Median(ConcurrentAgingBench.FaulterSamples, nameof(ConcurrentAgingBench.AgingWithFaulter)),
            nameof(ConcurrentAgingBench.FaulterAlone), faulter, null,
            wallNum: Median(ConcurrentAgingBench.FaulterWallSamples, nameof(ConcurrentAgingBench.AgingWithFaulter)),
            wallDen: WallSamples.Median(nameof(ConcurrentAgingBench.FaulterAlone), Iterations) / ConcurrentAgingBench.FaultsPerInvocation);
        report.Ratio("  faulter side: CPU ns/fault during MMU-lock pass / alone",
            "faulter during " + nameof(ConcurrentAgingBench.MmuLockAgingWithFaulter), Median(ConcurrentAgingBench.FaulterSamples, nameof(ConcurrentAgingBench.MmuLockAgingWithFaulter)),
            nameof(ConcurrentAgingBench.FaulterAlone), faulter, null,
            wallNum: Median(ConcurrentAgingBench.FaulterWallSamples, nameof(ConcurrentAgingBench.MmuLockAgingWithFaulter)),
            wallDen: WallSamples.Median(nameof(ConcurrentAgingBench.FaulterAlone), Iterations) / ConcurrentAgingBench.FaultsPerInvocation);
        Add(report, s, "unmap 16 GiB (4 Mi pages): primary + EPT / primary only",
            nameof(InvalidateBench.UnmapPrimaryAndEpt), nameof(InvalidateBench.UnmapPrimaryOnly), 1.6);
        report.Print();
        bool invEptMissed = InvalidateBench.Ranges > 0 && InvalidateBench.InvEpts != InvalidateBench.Ranges;
        if (InvalidateBench.Ranges > 0)
        {
            Console.WriteLine($"INVEPT per invalidated range (primary + EPT unmap): {InvalidateBench.InvEptPerRange:F3} " +
                $"({InvalidateBench.InvEpts} INVEPTs over {InvalidateBench.Ranges} notifier ranges; goal 1) {(invEptMissed ? "MISSED" : "ok")}");
        }
        report.Save(artifacts, "Tandem.Kvm.Bench-ratios.json");
        BenchReport.PrintJsonPaths(artifacts);
        bool missed = report.Missed(BenchReport.AllSelected) || invEptMissed;
        Console.WriteLine(missed ? "Tandem.Kvm.Bench: MISSED goal(s), see above" : "Tandem.Kvm.Bench: all goals met");
        return missed ? 1 : 0;
    }

    private static void Add(BenchReport report, Summary[] s, string label, string num, string den, double? limit) =>
        report.Ratio(label, num, BenchReport.Median(s, num), den, BenchReport.Median(s, den), limit,
            wallNum: WallSamples.Median(num, Iterations), wallDen: WallSamples.Median(den, Iterations));

    /// <summary>Median of a per-pass sample list over the measured iterations (the last <see cref="Iterations"/> calls).</summary>
    private static double? Median(Dictionary<string, List<double>> samples, string method)
    {
        if (!samples.TryGetValue(method, out List<double>? all) || all.Count < Iterations)
            return null;
        List<double> last = all.Skip(all.Count - Iterations).OrderBy(x => x).ToList();
        int n = last.Count;
        return n % 2 == 1 ? last[n / 2] : (last[n / 2 - 1] + last[n / 2]) / 2;
    }

    private static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Trim(); }
        catch (IOException) { return "n/a"; }
    }
}
