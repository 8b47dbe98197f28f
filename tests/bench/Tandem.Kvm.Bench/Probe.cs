using System;
using System.Diagnostics;

namespace Tandem.Kvm.Bench;

/// <summary>
/// <c>--probe [aliases]</c>: builds the aging VM and times a few passes of each kind with a
/// stopwatch, printing nanoseconds per leaf. A quick look at where the time goes, not a benchmark.
/// </summary>
public static class Probe
{
    public static int Run(int aliases)
    {
        Stopwatch sw = Stopwatch.StartNew();
        using AgingVm vm = new AgingVm(aliases);
        Console.WriteLine($"probe: {aliases} alias slots, {vm.Leaves} leaves, {vm.TableCount} leaf tables, fill {sw.Elapsed.TotalSeconds:F1} s");
        for (int round = 0; round < 3; round++)
        {
            Time(vm, "setYoung 10%", 0, () => vm.SetYoung(10));
            Time(vm, "floor 10%", 10, vm.FloorScanAndClear);
            Time(vm, "aging 10%", 10, () => vm.AgePass());
            Time(vm, "mmu-lock aging 10%", 10, () => vm.AgePassUnderMmuLock());
            Time(vm, "and-loop all", 1, vm.AtomicAndLoop);
            Time(vm, "aging all", 1, () => vm.AgePass());
            Time(vm, "aging none", 1000000000, () => vm.AgePass());
        }
        return 0;
    }

    private static void Time(AgingVm vm, string what, int every, Action pass)
    {
        if (every > 0)
            vm.SetYoung(every);
        long t0 = Stopwatch.GetTimestamp();
        pass();
        double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        long left = every > 0 ? vm.CountYoung() : -1;
        Console.WriteLine($"probe: {what,-20} {ms,8:F1} ms  {ms * 1e6 / vm.Leaves,6:F3} ns/leaf  (young left {left})");
    }
}
