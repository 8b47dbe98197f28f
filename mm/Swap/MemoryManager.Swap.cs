using System.Threading;

namespace Tandem.Mm;

public sealed partial class MemoryManager<TPlatform>
{
    /// <summary>The swap map and swap cache; null until <see cref="AttachSwap"/> (until then an anonymous page is not reclaimed, see <see cref="DropAnonymousWithoutSwap"/>).</summary>
    public SwapMap<TPlatform>? Swap;

    /// <summary>
    /// Without a swap device, may eviction and <see cref="TryReclaim"/> drop an anonymous page's
    /// contents? False, the default and the kernel's: an anonymous page is reclaimed only into swap,
    /// so nothing a guest wrote is ever lost (with <c>swap=off</c>, memory pressure ends in a fault
    /// that finds no frame, which stops that VM with a clear reason). True only in test and
    /// benchmark beds that use dropping as a model of a discardable page, to drive the unmap path.
    /// </summary>
    public bool DropAnonymousWithoutSwap;

    /// <summary>
    /// Attaches a swap device with <paramref name="slots"/> slots (once, before any eviction):
    /// from then on <see cref="TryReclaim"/> swaps anonymous pages out instead of dropping them.
    /// </summary>
    public SwapMap<TPlatform> AttachSwap(ISwapDevice device, int slots)
    {
        if (Swap != null)
            throw new System.InvalidOperationException("MemoryManager.AttachSwap: a swap device is already attached");
        SwapMap<TPlatform> map = new SwapMap<TPlatform>(Platform, Frames, device, slots);
        // Release store: the map's arrays are visible before the reference; pairs with the reads
        // of Swap (plain reads of a reference published once before any swap entry exists).
        Volatile.Write(ref Swap, map);
        return map;
    }

    /// <summary>
    /// Swap-out of one anonymous frame, in Linux's order (add_to_swap, try_to_unmap installing
    /// swap entries, pageout, removal from the swap cache):
    /// <list type="number">
    /// <item>the frame gets a slot and enters the swap cache (the cache holds a reference); a frame
    /// that came back from swap keeps its slot and copy;</item>
    /// <item>every mapping is replaced by a swap entry under its page-table lock (atomic exchange,
    /// D carried to <see cref="FrameFlags.Dirty"/>, rmap entry removed), then the primary TLB is
    /// flushed and the notifiers run (their zap carries a secondary D bit to the frame), and only
    /// then is the mapping's reference dropped (invariant 1);</item>
    /// <item>with no mapping left the contents are stable: they are stored if the frame is dirty or
    /// has no copy yet (a clean page with a copy costs no write); a full device stops here, the page
    /// staying in the swap cache;</item>
    /// <item>the frame leaves the swap cache (and memory) only if nobody took it meanwhile.</item>
    /// </list>
    /// A frame mapped more than once (merged) goes with all its mappings, as swap entries of its
    /// one slot; frames that are not anonymous are refused (<see cref="SwapOutResult.Refused"/>). No mm lock
    /// is held across a device call. The caller need not hold a reference.
    /// </summary>
    public SwapOutResult TrySwapOut(Pfn frame)
    {
        return TrySwapOut(frame, 0);
    }

    /// <summary>
    /// <see cref="TrySwapOut(Pfn)"/> for a caller that holds <paramref name="callerReferences"/>
    /// references of its own across the call (eviction's isolation reference): the frame may still
    /// leave the swap cache, the caller's references being counted as taken by nobody else.
    /// </summary>
    public unsafe SwapOutResult TrySwapOut(Pfn frame, int callerReferences)
    {
        SwapMap<TPlatform>? swap = Volatile.Read(ref Swap);
        if (swap == null)
            return SwapOutResult.NoSwap;
        // A full device would refuse a page with no copy yet: leave it mapped (unmapping it would
        // only make it fault back in from the swap cache).
        if (swap.DeviceFull && swap.SlotOf(frame) < 0)
            return SwapOutResult.DeviceFull;
        // Our own reference for the whole swap-out: the frame is freed only after the last step.
        if (!Frames.TryGetRef(frame))
            return SwapOutResult.NotResident;
        // 1. add_to_swap.
        int slot = swap.BeginSwapOut(frame, out bool refused);
        if (slot < 0)
        {
            Frames.PutRef(frame);
            return refused ? SwapOutResult.Refused : SwapOutResult.Busy;
        }
        // 2. try_to_unmap, installing swap entries.
        RmapCursor cursor = default;
        while (Rmap.TryGetNext(frame, ref cursor, out AddressSpace<TPlatform>? space, out VirtAddr address))
        {
            Platform.Checkpoint(MmCheckpoint.RmapEntryCopied);
            if (!space!.TryGetUser())
                continue;
            space.UnmapOneForSwap(frame, address, slot);
            space.PutUser();
        }
        if (Frames.MapCountOf(frame) != 0)
        {
            // A mapping we could not remove (its space is being torn down, or a new one): keep
            // the frame; it stays in the swap cache while mapped.
            swap.EndSwapOut(slot, frame, 0);
            Frames.PutRef(frame);
            return SwapOutResult.StillMapped;
        }
        // 3. pageout. Clear Dirty first (atomic: a zap on another CPU may be setting it): a
        // mapping that appears later (a swap-in that finds the frame in the cache) and writes
        // sets D again, which EndSwapOut or the next eviction sees.
        int oldFlags = Interlocked.And(ref Frames.Record(frame).Flags, ~(int)FrameFlags.Dirty);
        bool dirty = (oldFlags & (int)FrameFlags.Dirty) != 0;
        ulong newHandle = 0;
        if (dirty || swap.CurrentHandle(slot) == 0)
        {
            // No mm lock is held here (ISwapDevice rule).
            // Full: the copies of pages that are in memory anyway make room first (once).
            if (!swap.Device.TryStore(Platform.PhysToVirt(frame.Address), out newHandle)
                && !(swap.FreeCopiesOfMappedPages(32) > 0 && swap.Device.TryStore(Platform.PhysToVirt(frame.Address), out newHandle)))
            {
                // Full: nothing stored. The contents stay only in this frame, so it stays dirty
                // and in the swap cache, where the next fault on the swap entry finds it.
                if (dirty)
                    Frames.SetFlags(frame, FrameFlags.Dirty);
                swap.CountDeviceFull();
                swap.EndSwapOut(slot, frame, 0);
                Frames.PutRef(frame);
                return SwapOutResult.DeviceFull;
            }
        }
        else
            swap.CountCleanEviction();
        // 4. Remove from the swap cache unless someone took the frame meanwhile.
        bool left = swap.EndSwapOut(slot, frame, newHandle, callerReferences);
        Frames.PutRef(frame);
        return left ? SwapOutResult.Evicted : SwapOutResult.Remapped;
    }
}
