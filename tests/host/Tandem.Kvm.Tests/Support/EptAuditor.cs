using System.Collections.Concurrent;
using System.Threading;
using Tandem.Kvm.Ept;
using Tandem.Mm;

namespace Tandem.Kvm.Tests;

/// <summary>
/// The mm tests' recording checks, extended to the EPT shadow: a second notifier registered after
/// the <see cref="EptMmu{TPlatform}"/>, so on every invalidation it runs after the EPT has zapped,
/// and checks the whole EPT: no leaf may map a freed frame (invariant 1), and in strict mode
/// (single-threaded tests) every leaf maps exactly the frame the primary maps now, with no more
/// rights.
/// </summary>
public sealed class EptAuditor : IMmuNotifier
{
    private readonly EptBed _bed;
    public bool Strict;
    public long Checks;
    public int Violations;
    public readonly ConcurrentQueue<string> Messages = new ConcurrentQueue<string>();

    public EptAuditor(EptBed bed, bool strict)
    {
        _bed = bed;
        Strict = strict;
    }

    public void InvalidateRangeStart(in MmuNotifierRange range)
    {
        CheckRange(range, "start");
    }

    public void InvalidateRangeEnd(in MmuNotifierRange range) => Check("end");

    public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
    public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
    public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
    public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear) => false;
    public void Release(IAddressSpace space) { }

    private void CheckRange(in MmuNotifierRange range, string where)
    {
        // The EPT ran first: nothing backed by the range may be left.
        foreach (EptSlot s in _bed.Leaves())
        {
            VirtAddr hva = _bed.Slot.HostAddressOf(s.Address.Gfn);
            if (range.Overlaps(hva, hva + s.Size))
                Violation(where + ": EPT leaf for hva " + hva.Value.ToString("x") + " survived InvalidateRangeStart");
        }
        Check(where);
    }

    public void Check(string where)
    {
        Interlocked.Increment(ref Checks);
        foreach (string problem in _bed.Problems(Strict))
            Violation(where + ": " + problem);
    }

    private void Violation(string message)
    {
        Interlocked.Increment(ref Violations);
        if (Messages.Count < 20)
            Messages.Enqueue(message);
    }
}
