using Tandem.Mm;

namespace Tandem.Bench;

/// <summary>A registered secondary MMU that maps nothing: measures the notifier machinery alone.</summary>
public sealed class NullNotifier : IMmuNotifier
{
    public long Calls;
    public void InvalidateRangeStart(in MmuNotifierRange range) => Calls++;
    public void InvalidateRangeEnd(in MmuNotifierRange range) => Calls++;
    public bool ClearFlushYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
    public bool ClearYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
    public bool TestYoung(IAddressSpace space, VirtAddr start, VirtAddr end) => false;
    public bool TestClearYoungFastOnly(IAddressSpace space, VirtAddr start, VirtAddr end, bool clear) => false;
    public void Release(IAddressSpace space) { }
}
