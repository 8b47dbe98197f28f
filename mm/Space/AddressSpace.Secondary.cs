namespace Tandem.Mm;

public sealed unsafe partial class AddressSpace<TPlatform>
{
    /// <inheritdoc/>
    public FaultStatus ResolveForSecondary(VirtAddr address, bool write, out ResolvedPage page)
    {
        VirtAddr va = address.AlignDown(PageSizes.Size4K);
        while (true)
        {
            _ptLock.Enter(_platform);
            if (_dead != 0)
            {
                // Dying: a resolve must not hand out (or fault in) anything more.
                _ptLock.Exit(_platform);
                page = default;
                return FaultStatus.Dead;
            }
            PageTableWalker<TPlatform> w = new PageTableWalker<TPlatform>(_platform, Root, va, va + 1);
            w.MoveNext();
            PteSlot s = w.Current;
            PageTableEntry e = s.Value;
            if (e.IsPresent && (!write || e.IsWritable))
            {
                Pfn frame = new PhysAddr(e.LeafAddress(s.Level).Value + (va.Value & (s.Size - 1))).Pfn;
                bool tracked = !e.IsSpecial;
                // Under _ptLock the mapping holds a reference, so the count is > 0. A tracked
                // 2 MiB page counts its references on its head (a split waits for this one).
                if (tracked)
                    _mm.Frames.GetRef(s.Level == 2 ? e.LeafAddress(2).Pfn : frame);
                _ptLock.Exit(_platform);
                page = new ResolvedPage(frame, e.IsWritable, tracked, s.Level);
                _platform.Checkpoint(MmCheckpoint.SecondaryResolved);
                return FaultStatus.Ok;
            }
            _ptLock.Exit(_platform);
            FaultStatus status = HandleFault(va, write);
            if (status != FaultStatus.Ok)
            {
                page = default;
                return status;
            }
        }
    }

    /// <inheritdoc/>
    public void ReleaseResolved(in ResolvedPage page)
    {
        if (page.HoldsReference)
            _mm.Frames.PutRef(page.Level == 2 ? new Pfn(page.Frame.Value & ~(ulong)(FrameDatabase<TPlatform>.HugeFrames - 1)) : page.Frame);
    }

    /// <inheritdoc/>
    public void MarkFrameDirty(Pfn frame)
    {
        if (frame.Value < (ulong)_mm.Frames.FrameCount)
            _mm.Frames.SetFlags(frame, FrameFlags.Dirty);
    }
}
