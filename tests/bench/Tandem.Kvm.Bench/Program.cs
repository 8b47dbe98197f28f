using System;
using System.IO;
using System.Linq;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Tandem.Benchmarks;

namespace Tandem.Kvm.Bench;

/// <summary>
/// The EPT benchmarks. <c>dotnet run -c Release --project tests/bench/Tandem.Kvm.Bench -- [--artifacts DIR] [BenchmarkDotNet options]</c>;
/// <c>--probe [aliases]</c> times single passes with a stopwatch instead (ns per leaf); <c>--lookaround</c> counts the entries
/// an aging pass touches with and without look-around (<see cref="LookAroundBench"/>); <c>--hotcold [profile]</c>
/// runs only the hot/cold guest with and without a resident limit (<see cref="HotColdBench"/>, also run after the
/// BenchmarkDotNet cases when no filter is given, its ratio in the goal table).
/// Each case is paired (<see cref="Paired"/>): both sides of a ratio in every iteration. BenchmarkDotNet's clock is the benchmark thread's CPU time (<see cref="ThreadCpuClock"/>): this
/// machine is shared, and wall time would also count the time the thread waited for a core. The
/// wall-clock paired ratios are printed beside. Exit status 1 when a goal is missed.
/// </summary>
public static class Program
{
    public const int Warmups = 1;
    public const int Iterations = 25;

    public static int Main(string[] args)
    {
        if (args.Length > 2 && args[0] == "--probe-pass")
            return Probe.RunOne(args[1], int.Parse(args[2]), args.Length > 3 ? int.Parse(args[3]) : 64);
        if (args.Length > 0 && args[0] == "--probe-corunner")
            return Probe.RunCorunner(args.Length > 1 ? int.Parse(args[1]) : SharedVm.DefaultAliases, args.Length > 2 ? int.Parse(args[2]) : 15);
        if (args.Length > 0 && args[0] == "--lookaround")
            return LookAroundBench.Run();
        if (args.Length > 0 && args[0] == "--hotcold")
            return HotColdBench.Run(args.Length > 1 && args[1] == "profile");
        if (args.Length > 0 && args[0] == "--probe")
            return Probe.Run(args.Length > 1 ? int.Parse(args[1]) : SharedVm.DefaultAliases);
        string artifacts = BenchReport.Artifacts(ref args);
        Console.WriteLine("load average at start: " + LoadAverage());
        Summary[] s = BenchmarkSwitcher.FromTypes(new[] { typeof(AgingBench), typeof(ConcurrentAgingBench), typeof(InvalidateBench) })
            .Run(args, BenchReport.Config(artifacts, Warmups, Iterations, ThreadCpuClock.Instance)).ToArray();
        Console.WriteLine("load average at end: " + LoadAverage());
        foreach ((string method, int k) in BenchReport.Ran(s))
        {
            Paired.Keep(new[] { method }, k);
            ConcurrentAgingBench.FaulterCpu.Keep(method, k);
            ConcurrentAgingBench.FaulterWall.Keep(method, k);
            ConcurrentAgingBench.FaulterAloneCpu.Keep(method, k);
            ConcurrentAgingBench.FaulterFaults.Keep(method, k);
        }

        if (SharedVm.Built)
        {
            AgingVm vm = SharedVm.Vm;
            Console.WriteLine($"aging VM: 1 GiB guest RAM in {vm.Aliases} alias memslots: {vm.Leaves:N0} 4 KiB EPT leaves in {vm.TableCount:N0} leaf tables ({vm.TableCount * 4L >> 10} MiB); one notifier call per 2 MiB of host range");
        }
        BenchReport report = new BenchReport("Tandem.Kvm.Bench (EPT)");
        report.Paired("aging pass, 10% young / floor (scan + atomic AND per young)", nameof(AgingBench.Aging10VsFloor), 1.1);
        report.Paired("aging pass, all young / atomic AND loop", nameof(AgingBench.AgingAllVsAndLoop), 1.2);
        report.Paired("aging pass, 10% young: with concurrent faulter / alone", nameof(ConcurrentAgingBench.LocklessFaulterVsAlone), 1.1);
        report.Paired("  contrast: MMU-lock pass: with concurrent faulter / alone", nameof(ConcurrentAgingBench.MmuLockFaulterVsAlone), null);
        foreach ((string name, string what) in new[] { (nameof(ConcurrentAgingBench.LocklessFaulterVsAlone), "lockless"), (nameof(ConcurrentAgingBench.MmuLockFaulterVsAlone), "MMU-lock") })
        {
            report.PairedSamples($"  faulter side: CPU ns/fault during {what} pass / faulter alone", name,
                ConcurrentAgingBench.FaulterCpu, ConcurrentAgingBench.FaulterAloneCpu,
                $"faults completed in the A turns of an iteration: median {ConcurrentAgingBench.FaulterFaults.Median(name):F0}; wall ns of the A turns per fault: {BenchReport.Fmt(ConcurrentAgingBench.FaulterWall.Median(name))}");
        }
        report.Paired("unmap 16 GiB (4 Mi pages): primary + EPT / primary only", nameof(InvalidateBench.UnmapEptVsPrimaryOnly), 1.6);
        // The hot/cold guest (not a BenchmarkDotNet case: its state runs on from round to round, so
        // it interleaves its own sides; see HotColdBench). Run with every case, not with a filter.
        HotColdBench.Result? hotCold = null;
        if (BenchReport.AllSelected)
        {
            hotCold = HotColdBench.Measure();
            HotColdBench.Print(hotCold);
        }
        report.Figure("hot/cold guest: throughput with a resident limit / without", "HotCold",
            hotCold == null ? null : hotCold.Problem != null ? double.NaN : hotCold.Ratio, HotColdBench.Goal, atMost: false,
            hotCold == null ? "not run (a filter was given)" : (hotCold.Problem != null ? "FAILED: " + hotCold.Problem + "; " : "") +
                $"median over {HotColdBench.Iterations} iterations of page reads per thread CPU second, limited / free; " + hotCold.Detail);
        report.Print();
        bool invEptMissed = InvalidateBench.Ranges > 0 && InvalidateBench.InvEpts != InvalidateBench.Ranges;
        if (InvalidateBench.Ranges > 0)
        {
            Console.WriteLine($"INVEPT per invalidated range (primary + EPT unmap): {InvalidateBench.InvEptPerRange:F3} " +
                $"({InvalidateBench.InvEpts} INVEPTs over {InvalidateBench.Ranges} notifier ranges; goal 1) {(invEptMissed ? "MISSED" : "ok")}");
        }
        report.Save(artifacts, "Tandem.Kvm.Bench-goals.json");
        BenchReport.PrintJsonPaths(artifacts);
        bool missed = report.Missed(BenchReport.AllSelected) || invEptMissed || (hotCold != null && !hotCold.Met);
        Console.WriteLine(missed ? "Tandem.Kvm.Bench: MISSED goal(s), see above" : "Tandem.Kvm.Bench: all goals met");
        return missed ? 1 : 0;
    }

    private static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Trim(); }
        catch (IOException) { return "n/a"; }
    }
}
