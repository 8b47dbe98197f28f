using System.Threading;
using BenchmarkDotNet.Attributes;
using Tandem.Kvm.Tests;
using Tandem.Mm;

namespace Tandem.Kvm.Bench;

/// <summary>
/// The lockless aging pass (10% young) alone, and with one thread faulting into the same VM the
/// whole time (EPT violations on other pages: resolve through the primary, MMU lock, install);
/// plus the global-lock pass against a faulter that takes the same VM-wide lock, for contrast.
/// </summary>
public unsafe class ConcurrentAgingBench
{
    private const int Pages = 57344;
    private const int FaultPages = 8192;
    private EptBed _bed = null!;
    private ulong*[] _leaves = null!;
    private Thread? _faulter;
    private volatile bool _stop;
    private volatile bool _faulterTakesGlobalLock;
    private Tandem.Mm.SpinLock _globalLock;
    public static long FaultsDone;

    [GlobalSetup]
    public void Setup()
    {
        _bed = BenchBeds.Filled(Pages, FaultPages);
        _leaves = BenchBeds.LeafPointers(_bed, Pages);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        StopFaulter();
        _bed.Dispose();
    }

    [IterationSetup(Target = nameof(AgingPassAlone))]
    public void SetupAlone()
    {
        StopFaulter();
        BenchBeds.SetYoung(_leaves, 10);
    }

    [IterationSetup(Target = nameof(AgingPassWithConcurrentFaulter))]
    public void SetupFaulter()
    {
        BenchBeds.SetYoung(_leaves, 10);
        StartFaulter(false);
    }

    [IterationSetup(Target = nameof(GlobalLockAgingWithConcurrentFaulter))]
    public void SetupLockedFaulter()
    {
        BenchBeds.SetYoung(_leaves, 10);
        StartFaulter(true);
    }

    [IterationCleanup]
    public void AfterIteration() => StopFaulter();

    [Benchmark(Baseline = true)]
    public bool AgingPassAlone() => _bed.Ept.TestClearYoungFastOnly(_bed.Space, _bed.Hva(0), _bed.Hva(Pages), true);

    [Benchmark]
    public bool AgingPassWithConcurrentFaulter() => _bed.Ept.TestClearYoungFastOnly(_bed.Space, _bed.Hva(0), _bed.Hva(Pages), true);

    [Benchmark]
    public bool GlobalLockAgingWithConcurrentFaulter()
    {
        Lock();
        bool young = _bed.Ept.ClearYoung(_bed.Space, _bed.Hva(0), _bed.Hva(Pages));
        _globalLock.Exit();
        return young;
    }

    private void Lock()
    {
        while (!_globalLock.TryEnter())
            Thread.SpinWait(1);
    }

    private void StartFaulter(bool globalLock)
    {
        _stop = false;
        _faulterTakesGlobalLock = globalLock;
        using ManualResetEventSlim started = new ManualResetEventSlim();
        _faulter = new Thread(() =>
        {
            KvmMachine.ThreadCpu = 1;
            int i = 0;
            started.Set();
            while (!_stop)
            {
                if (_faulterTakesGlobalLock)
                    Lock();
                _bed.Ept.HandleViolation(_bed.Gpa(Pages + (i++ % FaultPages)), true);
                if (_faulterTakesGlobalLock)
                    _globalLock.Exit();
                Interlocked.Increment(ref FaultsDone);
            }
        });
        _faulter.Start();
        started.Wait();
    }

    private void StopFaulter()
    {
        _stop = true;
        _faulter?.Join();
        _faulter = null;
    }
}
