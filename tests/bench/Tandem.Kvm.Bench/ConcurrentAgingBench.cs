using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Threading;
using BenchmarkDotNet.Attributes;
using Tandem.Benchmarks;

namespace Tandem.Kvm.Bench;

/// <summary>
/// The aging pass (10 % young) beside a vCPU thread that takes EPT violations (A: in its own
/// memslot: memslot lookup, resolve through the primary, MMU lock, install), paired with the same
/// pass without it (B); and the contrast, the same pair with every notifier call of the pass under
/// the VM's MMU lock, the lock the faulter takes.
///
/// A and B are interleaved finely (<see cref="Paired.Interleaved"/>, <see cref="Group"/> notifier
/// calls, about 2 ms, per turn): before each A turn the faulter is woken and runs until it has
/// completed <see cref="WarmFaults"/> faults, before each B turn it is parked on an event (asleep,
/// not spinning), both untimed. Measured passes a few hundred milliseconds apart drift by ±10 % on
/// this shared machine (<c>--probe-corunner</c> shows it: two "alone" passes differ as much as a
/// pass with and without the faulter), so whole-pass pairs cannot resolve a 10 % goal; turns a
/// few milliseconds apart can.
///
/// The faulter is timed too: its CPU time per fault completed during the A turns
/// (<see cref="FaulterCpu"/>), against a window of <see cref="AloneWindowMs"/> ms with nothing else
/// running, once per iteration (<see cref="FaulterAloneCpu"/>, untimed for BenchmarkDotNet).
/// </summary>
public class ConcurrentAgingBench
{
    /// <summary>Notifier calls (2 MiB of host range each) per turn of one side.</summary>
    public const int Group = 4;

    /// <summary>Faults the woken faulter completes before an A turn starts (it is then in its loop, caches warm).</summary>
    public const int WarmFaults = 2000;

    public const int AloneWindowMs = 150;

    private AgingVm _vm = null!;
    private Thread? _faulter;
    private readonly ManualResetEventSlim _gate = new ManualResetEventSlim(false, 0);
    private volatile bool _stop;
    private int _run;
    private int _parked;
    private Counter _faults;
    private int _faulterClock;

    // Per iteration: what the faulter did inside the A turns.
    private bool _inA;
    private long _turnFaults0, _turnCpu0, _turnWall0;
    private long _aFaults, _aCpu, _aWall;

    /// <summary>Per paired case: the faulter's CPU nanoseconds per fault during the A turns.</summary>
    public static readonly Samples FaulterCpu = new Samples();

    /// <summary>The same with the A turns' wall nanoseconds per fault completed meanwhile.</summary>
    public static readonly Samples FaulterWall = new Samples();

    /// <summary>Per paired case: the faulter's CPU nanoseconds per fault with nothing else running, once per iteration.</summary>
    public static readonly Samples FaulterAloneCpu = new Samples();

    /// <summary>Per paired case: faults the faulter completed during the A turns of one iteration.</summary>
    public static readonly Samples FaulterFaults = new Samples();

    [StructLayout(LayoutKind.Explicit, Size = 256)]
    private struct Counter
    {
        [FieldOffset(128)] public long Value;
    }

    [GlobalSetup]
    public void Setup()
    {
        _vm = SharedVm.Vm;
        StartFaulter();
    }

    [GlobalCleanup]
    public void Cleanup() => StopFaulter();

    [Benchmark(Description = "A: aging + concurrent faulter | B: aging alone (10% young, interleaved per 8 MiB)")]
    public void LocklessFaulterVsAlone() => Pair(nameof(LocklessFaulterVsAlone), false);

    [Benchmark(Description = "A: MMU-lock aging + concurrent faulter | B: MMU-lock aging alone (interleaved per 8 MiB)")]
    public void MmuLockFaulterVsAlone() => Pair(nameof(MmuLockFaulterVsAlone), true);

    private void Pair(string name, bool underMmuLock)
    {
        Paired.Interleaved(name, () => { _vm.SetYoung(10); _aFaults = _aCpu = _aWall = 0; }, AgingVm.Chunks / Group,
            g => AgeGroup(g, underMmuLock), g => AgeGroup(g, underMmuLock), shared: true,
            () => { Switch(false); Record(name); }, Switch);
    }

    private void AgeGroup(int g, bool underMmuLock)
    {
        for (int c = g * Group; c < (g + 1) * Group; c++)
        {
            if (underMmuLock)
                _vm.AgeChunkUnderMmuLock(c);
            else
                _vm.AgeChunk(c);
        }
    }

    /// <summary>Untimed, before each turn: close the A turn that just ended, then wake or park the faulter.</summary>
    private void Switch(bool isA)
    {
        if (_inA)
        {
            _aFaults += Volatile.Read(ref _faults.Value) - _turnFaults0;
            _aCpu += ThreadCpuClock.Read(_faulterClock) - _turnCpu0;
            _aWall += Stopwatch.GetTimestamp() - _turnWall0;
            _inA = false;
        }
        if (isA)
        {
            Resume();
            _turnFaults0 = Volatile.Read(ref _faults.Value);
            _turnCpu0 = ThreadCpuClock.Read(_faulterClock);
            _inA = true;
            _turnWall0 = Stopwatch.GetTimestamp();
        }
        else
        {
            Park();
        }
    }

    private void Record(string name)
    {
        FaulterCpu.Add(name, _aFaults > 0 ? (double)_aCpu / _aFaults : double.PositiveInfinity);
        FaulterWall.Add(name, _aFaults > 0 ? _aWall * 1e9 / Stopwatch.Frequency / _aFaults : double.PositiveInfinity);
        FaulterFaults.Add(name, _aFaults);

        // The faulter on its own for AloneWindowMs: its CPU time per fault.
        Resume();
        long c0 = ThreadCpuClock.Read(_faulterClock);
        long f0 = Volatile.Read(ref _faults.Value);
        Thread.Sleep(AloneWindowMs);
        long faults = Volatile.Read(ref _faults.Value) - f0;
        double cpu = ThreadCpuClock.Read(_faulterClock) - c0;
        Park();
        FaulterAloneCpu.Add(name, cpu / faults);
    }

    private void StartFaulter()
    {
        _stop = false;
        Volatile.Write(ref _run, 0);
        AgingVm vm = _vm;
        _faulter = new Thread(() =>
        {
            BenchMachine.ThreadCpu = 1;
            _faulterClock = ThreadCpuClock.ClockOfThisThread();
            long n = 0;
            while (true)
            {
                if (Volatile.Read(ref _run) == 0)
                {
                    if (_stop)
                        break;
                    Volatile.Write(ref _parked, 1);
                    _gate.Wait();
                    Volatile.Write(ref _parked, 0);
                    continue;
                }
                vm.Ept.HandleViolation(vm.FaultGpa((int)(n & int.MaxValue)), true);
                Volatile.Write(ref _faults.Value, ++n);
            }
        });
        _faulter.Start();
        while (Volatile.Read(ref _parked) == 0)
            Thread.Yield();
    }

    /// <summary>Wakes the faulter and returns once it has completed <see cref="WarmFaults"/> faults.</summary>
    private void Resume()
    {
        long f0 = Volatile.Read(ref _faults.Value);
        Volatile.Write(ref _run, 1);
        _gate.Set();
        while (Volatile.Read(ref _faults.Value) - f0 < WarmFaults)
            Thread.SpinWait(20);
    }

    /// <summary>Parks the faulter and returns once it has left its loop (it then sleeps on the gate).</summary>
    private void Park()
    {
        _gate.Reset();
        Volatile.Write(ref _run, 0);
        while (Volatile.Read(ref _parked) == 0)
            Thread.SpinWait(20);
    }

    private void StopFaulter()
    {
        if (_faulter == null)
            return;
        _stop = true;
        Volatile.Write(ref _run, 0);
        _gate.Set();
        _faulter.Join();
        _faulter = null;
    }
}
