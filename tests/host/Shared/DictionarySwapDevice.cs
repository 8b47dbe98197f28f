using System;
using System.Collections.Generic;
using System.Threading;
using Tandem.Mm;

namespace Tandem.Testing;

/// <summary>
/// A test-double <see cref="ISwapDevice"/>: page images in a dictionary, with a capacity (full
/// when reached), on-demand load failures, counters, an optional delay inside TryLoad/TryStore
/// (to widen races) and a check that no call comes in while the calling thread holds an mm lock
/// (it cannot see mm's locks; tests that care use <see cref="OnCall"/>).
/// </summary>
public sealed unsafe class DictionarySwapDevice : ISwapDevice
{
    private readonly object _gate = new object();
    private readonly Dictionary<ulong, byte[]> _pages = new Dictionary<ulong, byte[]>();
    private ulong _nextHandle;

    /// <summary>Most pages stored at once; a store beyond it fails (device full).</summary>
    public int Capacity = int.MaxValue;
    /// <summary>Every TryLoad fails while true (a corrupt copy).</summary>
    public volatile bool FailLoads;
    /// <summary>Milliseconds every TryLoad sleeps before copying (widens the concurrent-faulter window).</summary>
    public int LoadDelayMs;
    /// <summary>Milliseconds every TryStore sleeps after copying.</summary>
    public int StoreDelayMs;
    /// <summary>Called at the start of every device call.</summary>
    public Action<string>? OnCall;

    public long Stores, Loads, Frees, FullRefusals, FailedLoads;

    public int Count { get { lock (_gate) return _pages.Count; } }

    public bool TryStore(byte* page, out ulong handle)
    {
        OnCall?.Invoke("store");
        byte[] copy = new byte[4096];
        new ReadOnlySpan<byte>(page, 4096).CopyTo(copy);
        if (StoreDelayMs > 0)
            Thread.Sleep(StoreDelayMs);
        lock (_gate)
        {
            if (_pages.Count >= Capacity)
            {
                FullRefusals++;
                handle = 0;
                return false;
            }
            handle = ++_nextHandle;
            _pages.Add(handle, copy);
            Stores++;
            return true;
        }
    }

    public bool TryLoad(ulong handle, byte* page)
    {
        OnCall?.Invoke("load");
        if (LoadDelayMs > 0)
            Thread.Sleep(LoadDelayMs);
        byte[]? copy;
        lock (_gate)
        {
            if (FailLoads || !_pages.TryGetValue(handle, out copy))
            {
                FailedLoads++;
                return false;
            }
            Loads++;
        }
        copy.CopyTo(new Span<byte>(page, 4096));
        return true;
    }

    public void Free(ulong handle)
    {
        OnCall?.Invoke("free");
        lock (_gate)
        {
            if (!_pages.Remove(handle))
                throw new InvalidOperationException("DictionarySwapDevice: freeing unknown handle " + handle);
            Frees++;
        }
    }

    /// <summary>A copy of the stored image (for tests).</summary>
    public byte[] Image(ulong handle) { lock (_gate) return (byte[])_pages[handle].Clone(); }
}
