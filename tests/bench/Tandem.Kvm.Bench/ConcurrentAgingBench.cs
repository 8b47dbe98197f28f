using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Threading;
using BenchmarkDotNet.Attributes;

using Tandem.Benchmarks;

namespace Tandem.Kvm.Bench;

/// <summary>
/// The aging pass (10 % young) alone and with a vCPU thread that takes EPT violations the whole
/// time (in its own memslot: memslot lookup, resolve through the primary, MMU lock, install); and
/// the contrast, the same pass with every notifier call under the VM's MMU lock, which is the
/// lock the faulter takes. The faulter is the same in both variants and is timed too: its
/// nanoseconds per fault during each measured pass are recorded (see <see cref="FaulterSamples"/>),
/// and <see cref="FaulterAlone"/> gives its cost with nothing else running.
/// </summary>
public class ConcurrentAgingBench
{
    private AgingVm _vm = null!;
    private Thread? _faulter;
    private volatile bool _stop;
    private Counter _faults;
    private bool _checked;
    private int _faulterClock;

    /// <summary>Per benchmark method: the faulter's CPU nanoseconds per fault during each pass (all calls; the last IterationCount are the measured ones).</summary>
    public static readonly Dictionary<string, List<double>> FaulterSamples = new Dictionary<string, List<double>>();

    /// <summary>The same with wall nanoseconds of the pass per fault done meanwhile.</summary>
    public static readonly Dictionary<string, List<double>> FaulterWallSamples = new Dictionary<string, List<double>>();

    /// <summary>Faults done by <see cref="FaulterAlone"/> per invocation.</summary>
    public const int FaultsPerInvocation = 1 << 20;

    [StructLayout(LayoutKind.Explicit, Size = 256)]
    private struct Counter
    {
        [FieldOffset(128)] public long Value;
    }

    [GlobalSetup]
    public void Setup()
    {
        _vm = SharedVm.Vm;
        _checked = false;
    }

    [GlobalCleanup]
    public void Cleanup() => StopFaulter();

    [IterationSetup(Targets = new[] { nameof(AgingAlone), nameof(MmuLockAgingAlone) })]
    public void SetupAlone() => _vm.SetYoung(10);

    [IterationSetup(Targets = new[] { nameof(AgingWithFaulter), nameof(MmuLockAgingWithFaulter) })]
    public void SetupWithFaulter()
    {
        _vm.SetYoung(10);
        StartFaulter();
    }

    [IterationCleanup(Targets = new[] { nameof(AgingAlone), nameof(MmuLockAgingAlone), nameof(AgingWithFaulter), nameof(MmuLockAgingWithFaulter) })]
    public void AfterPass()
    {
        StopFaulter();
        if (_checked)
            return;
        _checked = true;
        long left = _vm.CountYoung();
        if (left != 0)
            throw new System.InvalidOperationException("an aging pass left " + left + " accessed leaves");
    }

    [Benchmark(Description = "aging pass, 10% young, alone")]
    public bool AgingAlone() => Timed(nameof(AgingAlone), false);

    [Benchmark(Description = "aging pass, 10% young, concurrent faulter")]
    public bool AgingWithFaulter() => Timed(nameof(AgingWithFaulter), false);

    [Benchmark(Description = "MMU-lock aging pass, 10% young, alone")]
    public bool MmuLockAgingAlone() => Timed(nameof(MmuLockAgingAlone), true);

    [Benchmark(Description = "MMU-lock aging pass, 10% young, concurrent faulter")]
    public bool MmuLockAgingWithFaulter() => Timed(nameof(MmuLockAgingWithFaulter), true);

    /// <summary>The faulter's own cost with no aging: <see cref="FaultsPerInvocation"/> faults on this thread.</summary>
    [Benchmark(Description = "faulter alone (2^20 EPT faults)", OperationsPerInvoke = FaultsPerInvocation)]
    public void FaulterAlone()
    {
        long t = WallSamples.Start();
        AgingVm vm = _vm;
        for (int i = 0; i < FaultsPerInvocation; i++)
            vm.Ept.HandleViolation(vm.FaultGpa(i), true);
        WallSamples.Stop(nameof(FaulterAlone), t);
    }

    private bool Timed(string name, bool underMmuLock)
    {
        long c0 = _faulter != null ? ThreadCpuClock.Read(_faulterClock) : 0;
        long f0 = Volatile.Read(ref _faults.Value);
        long t0 = WallSamples.Start();
        bool young = underMmuLock ? _vm.AgePassUnderMmuLock() : _vm.AgePass();
        double ns = Stopwatch.GetElapsedTime(t0).TotalNanoseconds;
        WallSamples.Stop(name, t0);
        if (_faulter == null)
            return young;
        // The faulter's side: its CPU time per fault completed during the pass (a fault spinning on
        // the MMU lock burns CPU), and the pass's wall time per such fault.
        long faults = Volatile.Read(ref _faults.Value) - f0;
        double cpu = ThreadCpuClock.Read(_faulterClock) - c0;
        Add(FaulterSamples, name, faults > 0 ? cpu / faults : double.PositiveInfinity);
        Add(FaulterWallSamples, name, faults > 0 ? ns / faults : double.PositiveInfinity);
        return young;
    }

    private static void Add(Dictionary<string, List<double>> samples, string name, double value)
    {
        if (!samples.TryGetValue(name, out List<double>? list))
            samples[name] = list = new List<double>();
        list.Add(value);
    }

    private void StartFaulter()
    {
        _stop = false;
        Volatile.Write(ref _faults.Value, 0);
        AgingVm vm = _vm;
        _faulter = new Thread(() =>
        {
            BenchMachine.ThreadCpu = 1;
            _faulterClock = ThreadCpuClock.ClockOfThisThread();
            long n = 0;
            while (!_stop)
            {
                vm.Ept.HandleViolation(vm.FaultGpa((int)(n & int.MaxValue)), true);
                Volatile.Write(ref _faults.Value, ++n);
            }
        });
        _faulter.Start();
        // Start timing only once the faulter is in its loop.
        while (Volatile.Read(ref _faults.Value) < 10000)
            Thread.Yield();
    }

    private void StopFaulter()
    {
        _stop = true;
        _faulter?.Join();
        _faulter = null;
    }
}
