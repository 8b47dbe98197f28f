using System.Runtime.InteropServices;
using System.Threading;
using BenchmarkDotNet.Attributes;
using Tandem.Benchmarks;

namespace Tandem.Kvm.Bench;

/// <summary>
/// The aging pass (10 % young) with a vCPU thread that takes EPT violations the whole time (A: in
/// its own memslot: memslot lookup, resolve through the primary, MMU lock, install), paired in
/// every iteration with the same pass alone (B); and the contrast, the same pair with every
/// notifier call of the pass under the VM's MMU lock, the lock the faulter takes. The faulter is
/// the same in both and is timed too: its CPU time per fault completed during each A pass is
/// recorded (<see cref="FaulterCpu"/>), and, in the same iteration, over a window of
/// <see cref="AloneWindowMs"/> ms with nothing else running (<see cref="FaulterAloneCpu"/>, untimed
/// for BenchmarkDotNet: the benchmark thread sleeps meanwhile).
/// </summary>
public class ConcurrentAgingBench
{
    private AgingVm _vm = null!;
    private Thread? _faulter;
    private volatile bool _stop;
    private Counter _faults;
    private int _faulterClock;

    /// <summary>Per paired case: the faulter's CPU nanoseconds per fault during each A pass.</summary>
    public static readonly Samples FaulterCpu = new Samples();

    /// <summary>The same with the pass's wall nanoseconds per fault completed meanwhile.</summary>
    public static readonly Samples FaulterWall = new Samples();

    /// <summary>Per paired case: the faulter's CPU nanoseconds per fault with nothing else running, once per iteration.</summary>
    public static readonly Samples FaulterAloneCpu = new Samples();

    /// <summary>Per paired case: faults the faulter completed during each A pass.</summary>
    public static readonly Samples FaulterFaults = new Samples();

    public const int AloneWindowMs = 150;

    [StructLayout(LayoutKind.Explicit, Size = 256)]
    private struct Counter
    {
        [FieldOffset(128)] public long Value;
    }

    [GlobalSetup]
    public void Setup() => _vm = SharedVm.Vm;

    [GlobalCleanup]
    public void Cleanup() => StopFaulter();

    [Benchmark(Description = "A: aging pass + concurrent faulter | B: aging pass alone (10% young)")]
    public void LocklessFaulterVsAlone() => Paired.Iteration(nameof(LocklessFaulterVsAlone),
        new Paired.Side(() => { _vm.SetYoung(10); StartFaulter(); }, () => WithFaulter(nameof(LocklessFaulterVsAlone), false), StopFaulter),
        new Paired.Side(() => _vm.SetYoung(10), () => _vm.AgePass(), () => FaulterAlone(nameof(LocklessFaulterVsAlone))));

    [Benchmark(Description = "A: MMU-lock aging pass + concurrent faulter | B: MMU-lock pass alone")]
    public void MmuLockFaulterVsAlone() => Paired.Iteration(nameof(MmuLockFaulterVsAlone),
        new Paired.Side(() => { _vm.SetYoung(10); StartFaulter(); }, () => WithFaulter(nameof(MmuLockFaulterVsAlone), true), StopFaulter),
        new Paired.Side(() => _vm.SetYoung(10), () => _vm.AgePassUnderMmuLock(), () => FaulterAlone(nameof(MmuLockFaulterVsAlone))));

    private void WithFaulter(string name, bool underMmuLock)
    {
        long c0 = ThreadCpuClock.Read(_faulterClock);
        long f0 = Volatile.Read(ref _faults.Value);
        long w0 = System.Diagnostics.Stopwatch.GetTimestamp();
        if (underMmuLock)
            _vm.AgePassUnderMmuLock();
        else
            _vm.AgePass();
        double wall = System.Diagnostics.Stopwatch.GetElapsedTime(w0).TotalNanoseconds;
        long faults = Volatile.Read(ref _faults.Value) - f0;
        double cpu = ThreadCpuClock.Read(_faulterClock) - c0;
        // A fault spinning on the MMU lock burns CPU: its CPU time per completed fault rises.
        FaulterCpu.Add(name, faults > 0 ? cpu / faults : double.PositiveInfinity);
        FaulterWall.Add(name, faults > 0 ? wall / faults : double.PositiveInfinity);
        FaulterFaults.Add(name, faults);
    }

    /// <summary>The faulter on its own for <see cref="AloneWindowMs"/> ms: its CPU time per fault.</summary>
    private void FaulterAlone(string name)
    {
        StartFaulter();
        long c0 = ThreadCpuClock.Read(_faulterClock);
        long f0 = Volatile.Read(ref _faults.Value);
        Thread.Sleep(AloneWindowMs);
        long faults = Volatile.Read(ref _faults.Value) - f0;
        double cpu = ThreadCpuClock.Read(_faulterClock) - c0;
        StopFaulter();
        FaulterAloneCpu.Add(name, cpu / faults);
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
        // Time the pass only once the faulter is in its loop.
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
