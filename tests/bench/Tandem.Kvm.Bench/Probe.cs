using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Threading;
using Tandem.Benchmarks;
using Tandem.Kvm.Ept;
using Tandem.Mm;

namespace Tandem.Kvm.Bench;

/// <summary>
/// <c>--probe [aliases]</c>: where an aging pass spends its time. Builds the aging VM and times
/// passes of the EPT code and of flat loops over the same leaf tables that add one ingredient at a
/// time (read only; read + atomic AND; read + compare-exchange, which is what the EPT code does per
/// young leaf), at 0 %, 10 % and 100 % young, alternating the kinds round by round. Prints the
/// median thread CPU time per leaf over the rounds. A diagnostic, not one of the benchmarks.
/// </summary>
public static unsafe class Probe
{
    private const int Rounds = 9;

    /// <summary><c>--probe-pass KIND PASSES [aliases]</c>: only one kind (aging-all, aging-10, and-all, floor-10), for a profiler.</summary>
    public static int RunOne(string kind, int passes, int aliases)
    {
        AgingVm vm = new AgingVm(aliases);
        (int every, Action pass) = kind switch
        {
            "aging-all" => (1, (Action)(() => vm.AgePass())),
            "aging-10" => (10, () => vm.AgePass()),
            "and-all" => (1, vm.AtomicAndLoop),
            "floor-10" => (10, vm.FloorScanAndClear),
            _ => throw new ArgumentException("kind: aging-all, aging-10, and-all, floor-10"),
        };
        Console.WriteLine($"probe-pass: ready ({vm.Leaves:N0} leaves)");
        long cpu = 0;
        for (int i = 0; i < passes; i++)
        {
            vm.SetYoung(every);
            long c0 = ThreadCpuClock.Now();
            pass();
            cpu += ThreadCpuClock.Now() - c0;
        }
        Console.WriteLine($"probe-pass: {kind}: {(double)cpu / passes / vm.Leaves:F3} ns/leaf (mean of {passes} passes, thread CPU time)");
        return 0;
    }

    /// <summary>
    /// <c>--probe-corunner [aliases] [rounds]</c>: the lockless aging pass alone, beside a faulter
    /// on the same VM, and beside the same faulter on a second VM that shares nothing with the
    /// first but the machine. Separates what the MMU design costs from what a busy sibling CPU
    /// costs. Median thread CPU time per pass, rounds interleaved.
    /// </summary>
    public static int RunCorunner(int aliases, int rounds)
    {
        AgingVm vm = new AgingVm(aliases);
        AgingVm other = new AgingVm(1);
        Console.WriteLine($"probe-corunner: {vm.Leaves:N0} leaves; median of {rounds} rounds, thread CPU time per pass");
        string[] kinds = { "alone", "faulter on the same VM", "faulter on another VM", "alone (again)" };
        Dictionary<string, List<double>> cpu = kinds.ToDictionary(k => k, _ => new List<double>());
        for (int round = 0; round < rounds; round++)
        {
            foreach (string kind in kinds)
            {
                vm.SetYoung(10);
                AgingVm? target = kind.Contains("same") ? vm : kind.Contains("another") ? other : null;
                using Faulter? f = target == null ? null : new Faulter(target);
                long c0 = ThreadCpuClock.Now();
                vm.AgePass();
                cpu[kind].Add(ThreadCpuClock.Now() - c0);
            }
        }
        double alone = Median(cpu["alone"]);
        foreach (string kind in kinds)
            Console.WriteLine($"probe-corunner: {kind,-24} {Median(cpu[kind]) / 1e6,8:F1} ms  {Median(cpu[kind]) / alone:F3}x alone");
        return 0;
    }

    private static double Median(List<double> l)
    {
        List<double> s = l.OrderBy(x => x).ToList();
        return s[s.Count / 2];
    }

    private sealed class Faulter : IDisposable
    {
        private volatile bool _stop;
        private long _n;
        private readonly Thread _thread;

        public Faulter(AgingVm vm)
        {
            _thread = new Thread(() =>
            {
                BenchMachine.ThreadCpu = 1;
                long n = 0;
                while (!_stop)
                {
                    vm.Ept.HandleViolation(vm.FaultGpa((int)(n & int.MaxValue)), true);
                    Volatile.Write(ref _n, ++n);
                }
            });
            _thread.Start();
            while (Volatile.Read(ref _n) < 10000)
                Thread.Yield();
        }

        public void Dispose()
        {
            _stop = true;
            _thread.Join();
        }
    }

    public static int Run(int aliases)
    {
        Stopwatch sw = Stopwatch.StartNew();
        AgingVm vm = new AgingVm(aliases);
        Console.WriteLine($"probe: {aliases} alias slots, {vm.Leaves:N0} leaves, {vm.TableCount:N0} leaf tables, fill {sw.Elapsed.TotalSeconds:F1} s; median of {Rounds} rounds, thread CPU time");
        (string, int, Action)[] kinds =
        {
            ("flat: read only (count young)", 10, () => ReadOnly(vm)),
            ("flat: read + AND young (floor)", 10, vm.FloorScanAndClear),
            ("flat: read + CAS young", 10, () => ReadCas(vm)),
            ("EPT aging, 512 calls of 2 MiB", 10, () => vm.AgePass()),
            ("EPT aging, 1 call over 1 GiB", 10, () => vm.Ept.TestClearYoungFastOnly(vm.Space, vm.Hva(0), vm.Hva(AgingVm.RamPages), true)),
            ("flat: read only, 0% young", 0, () => ReadOnly(vm)),
            ("EPT aging, 512 calls, 0% young", 0, () => vm.AgePass()),
            ("flat: AND all (atomic AND loop)", 1, vm.AtomicAndLoop),
            ("flat: read + AND young, all young", 1, vm.FloorScanAndClear),
            ("flat: read + CAS young, all young", 1, () => ReadCas(vm)),
            ("EPT aging, 512 calls, all young", 1, () => vm.AgePass()),
        };
        Dictionary<string, List<double>> cpu = kinds.ToDictionary(k => k.Item1, _ => new List<double>());
        for (int round = 0; round < Rounds; round++)
        {
            foreach ((string name, int every, Action pass) in kinds)
            {
                vm.SetYoung(every == 0 ? int.MaxValue : every);
                if (every == 0)
                    vm.SetYoung(int.MaxValue);
                long c0 = ThreadCpuClock.Now();
                pass();
                cpu[name].Add(ThreadCpuClock.Now() - c0);
            }
        }
        foreach ((string name, int every, Action _) in kinds)
        {
            List<double> l = cpu[name].OrderBy(x => x).ToList();
            double med = l[l.Count / 2];
            Console.WriteLine($"probe: {name,-36} {med / 1e6,8:F1} ms  {med / vm.Leaves,6:F3} ns/leaf  (min {l[0] / vm.Leaves:F3}, max {l[^1] / vm.Leaves:F3})");
        }
        return 0;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static long ReadOnly(AgingVm vm)
    {
        long young = 0;
        for (int t = 0; t < vm.TableCount; t++)
        {
            ulong* p = vm.Tables[t];
            for (int i = 0; i < 512; i++)
            {
                if ((Volatile.Read(ref p[i]) & EptEntry.Accessed) != 0)
                    young++;
            }
        }
        return young;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool ReadCas(AgingVm vm)
    {
        bool cleared = false;
        for (int t = 0; t < vm.TableCount; t++)
        {
            ulong* p = vm.Tables[t];
            for (int i = 0; i < 512; i++)
            {
                ulong v = Volatile.Read(ref p[i]);
                if ((v & EptEntry.Accessed) != 0 && Interlocked.CompareExchange(ref p[i], v & ~EptEntry.Accessed, v) == v)
                    cleared = true;
            }
        }
        return cleared;
    }
}
