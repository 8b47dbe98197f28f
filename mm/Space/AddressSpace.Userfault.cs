using System;
using System.Threading;

namespace Tandem.Mm;

public sealed unsafe partial class AddressSpace<TPlatform>
{
    /// <summary>
    /// A fault on a missing page of a userfault region: tell the handler, then wait until a fill or
    /// a wake happens; the fault is then retried from the start (invariant 6).
    /// </summary>
    private void WaitForUserfault(Region region, VirtAddr page, bool write)
    {
        // Read the event counter before telling the handler, so a fill that completes before we
        // wait is not lost; pairs with the Interlocked.Increment in SignalUserfault.
        int observed = Volatile.Read(ref _userfaultEvents);
        region.Userfault!.OnMissing(this, page, write);
        if (TranslateFrame(page, out Pfn _))
            return;
        _platform.WaitForChange(ref _userfaultEvents, observed);
    }

    private void SignalUserfault()
    {
        // Full barrier: the entry installed before is visible to a woken waiter; pairs with the
        // Volatile.Read in WaitForUserfault and the platform's wait.
        Interlocked.Increment(ref _userfaultEvents);
    }

    /// <summary>
    /// Handler side: fills the missing page at <paramref name="page"/> with <paramref name="data"/>
    /// (at most 4 KiB; the rest is zero) and wakes the waiters. Exists if it is already mapped.
    /// </summary>
    public FaultStatus UserfaultCopy(VirtAddr page, ReadOnlySpan<byte> data)
    {
        Region? region = Regions.Find(page);
        if (region == null || region.Userfault == null)
            return FaultStatus.NoRegion;
        if (!_mm.Frames.AllocateFrame(out Pfn frame))
            return FaultStatus.OutOfMemory;
        Span<byte> target = new Span<byte>(_platform.PhysToVirt(frame.Address), (int)PageSizes.Size4K);
        target.Clear();
        data.CopyTo(target);
        FaultStatus status = InstallAnonymous(page.AlignDown(PageSizes.Size4K), frame, region.Prot);
        SignalUserfault();
        return status;
    }

    /// <summary>Handler side: fills the missing page with zeroes and wakes the waiters.</summary>
    public FaultStatus UserfaultZero(VirtAddr page)
    {
        return UserfaultCopy(page, default(ReadOnlySpan<byte>));
    }

    /// <summary>Handler side: wakes the waiters without filling (they retry and may ask again).</summary>
    public void UserfaultWake()
    {
        SignalUserfault();
    }
}
