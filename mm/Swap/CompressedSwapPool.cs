using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Threading;

namespace Tandem.Mm;

/// <summary>
/// A swap device that keeps page images in RAM (compare Linux's zram and zswap): zero and
/// same-filled pages as markers in the handle, other pages as LZ4 blocks (<see cref="Lz4Block"/>)
/// in fixed-size chunks of frames taken from the <see cref="FrameDatabase{TPlatform}"/>, and pages
/// that do not compress well as raw copies, one frame each. The pool holds at most a fixed number
/// of frames; a store that would need more is refused, nothing is ever evicted.
/// </summary>
/// <remarks>
/// <para>Storage: a frame of the pool is cut into chunks of one size class. A class is a chunk size
/// in 16-byte granules; there is one class per chunks-per-frame count (the largest size with that
/// count), since within one frame a finer size cannot fit more chunks. A chunk holds an 8-byte
/// header (block length in bits 0-11 and the store's 20-bit tag in bits 12-31; then a checksum of
/// the block, since LZ4 has none and the device must report a corrupt block) and the LZ4 block. A
/// raw frame's tag and checksum are kept in its slot. Each class keeps a list of its frames that
/// have a free chunk; a frame whose last chunk is freed goes back to the frame allocator at once.</para>
/// <para>Handles (low 3 bits: the kind): zero; same-filled with a 61-bit sign-extended word in bits
/// 3-63; same-filled with a repeated 32-bit word in bits 3-34; compressed or raw with the chunk in
/// bits 3-10, the tag in bits 11-30 and the frame's slot in bits 31-63. The tag makes a stale handle
/// (its chunk freed and reused) fail to load, unless 2^20 stores later the tag comes round again.</para>
/// <para>Locking: one spin lock guards the slots, the class lists and the chunk contents; inside it
/// only the frame allocator is called (device lock → per-CPU frame cache → zone lock). Compression
/// and decompression run outside it, on per-call stack buffers: a store copies its finished block
/// in under the lock, a load copies the block out under the lock. Counters change with Interlocked
/// and are read lock-free.</para>
/// </remarks>
public sealed unsafe class CompressedSwapPool<TPlatform> : ISwapDevice where TPlatform : struct, IMmPlatform
{
    /// <summary>Bytes of a page image.</summary>
    public const int PageBytes = 4096;

    /// <summary>Chunk sizes are multiples of this.</summary>
    public const int GranuleBytes = 16;

    /// <summary>Chunk header: block length and tag, then the block's checksum.</summary>
    public const int HeaderBytes = 8;

    /// <summary>
    /// The longest LZ4 block kept compressed. A longer block would need a chunk of more than half a
    /// frame, so a frame of its own, which a raw copy takes too without the decompression.
    /// </summary>
    public const int MaxBlockBytes = PageBytes / 2 - HeaderBytes;

    /// <summary>Handle kinds (low 3 bits).</summary>
    internal const ulong KindZero = 1;
    internal const ulong KindFill61 = 2;
    internal const ulong KindFill32 = 3;
    internal const ulong KindCompressed = 4;
    internal const ulong KindRaw = 5;
    internal const int ChunkShift = 3;
    internal const int TagShift = 11;
    internal const int SlotShift = 31;
    internal const int TagBits = 20;
    internal const uint TagMask = (1u << TagBits) - 1;
    private const uint LengthMask = 0xFFF;

    private const int GranulesPerFrame = PageBytes / GranuleBytes;
    private const byte NoClass = 0xFF;
    private const byte RawClass = 0xFE;

    private readonly TPlatform _platform;
    private readonly FrameDatabase<TPlatform> _frames;
    private SpinLock _lock;

    // One slot per frame the pool may hold, indexed by the handle's slot field.
    private readonly ulong[] _slotFrame;
    private readonly byte[] _slotClass;
    private readonly int[] _slotUsed;
    private readonly int[] _slotNext;
    private readonly int[] _slotPrev;
    private readonly int[] _slotRawTag;
    private readonly uint[] _slotRawChecksum;
    // Four words per slot: bit set = chunk in use (at most 256 chunks of one granule).
    private readonly ulong[] _slotChunks;
    private int _freeSlot;

    // Size classes, ascending.
    private readonly int[] _classGranules;
    private readonly int[] _classChunks;
    private readonly int[] _classPartial;
    // Smallest class whose chunk holds n granules, n = 0..GranulesPerFrame / 2.
    private readonly byte[] _classForGranules;

    private uint _nextTag;

    private long _zeroPages;
    private long _sameFilledPages;
    private long _compressedPages;
    private long _rawPages;
    private long _compressedBytes;
    private long _framesInUse;
    private readonly long _limitFrames;
    private long _refusedFull;
    private long _refusedNoMemory;
    private long _badHandles;
    private long _corruptBlocks;

    /// <summary>
    /// A pool that holds at most <paramref name="limitBytes"/> / 4096 frames of
    /// <paramref name="frames"/> (its metadata is allocated here, once).
    /// </summary>
    public CompressedSwapPool(TPlatform platform, FrameDatabase<TPlatform> frames, long limitBytes)
    {
        if (limitBytes < 0 || limitBytes / PageBytes > int.MaxValue / 4)
            throw new ArgumentOutOfRangeException(nameof(limitBytes), "CompressedSwapPool: limit out of range");
        _platform = platform;
        _frames = frames;
        int slots = (int)(limitBytes / PageBytes);
        _limitFrames = slots;
        _slotFrame = new ulong[slots];
        _slotClass = new byte[slots];
        _slotUsed = new int[slots];
        _slotNext = new int[slots];
        _slotPrev = new int[slots];
        _slotRawTag = new int[slots];
        _slotRawChecksum = new uint[slots];
        _slotChunks = new ulong[slots * 4];
        for (int i = 0; i < slots; i++)
        {
            _slotClass[i] = NoClass;
            _slotNext[i] = i + 1 < slots ? i + 1 : -1;
            _slotPrev[i] = -1;
        }
        _freeSlot = slots > 0 ? 0 : -1;

        int count = 0;
        for (int g = 1; g <= GranulesPerFrame / 2; g++)
        {
            if (IsClassSize(g))
                count++;
        }
        _classGranules = new int[count];
        _classChunks = new int[count];
        _classPartial = new int[count];
        _classForGranules = new byte[GranulesPerFrame / 2 + 1];
        int c = 0;
        for (int g = 1; g <= GranulesPerFrame / 2; g++)
        {
            if (!IsClassSize(g))
                continue;
            _classGranules[c] = g;
            _classChunks[c] = GranulesPerFrame / g;
            _classPartial[c] = -1;
            c++;
        }
        c = 0;
        for (int g = 0; g <= GranulesPerFrame / 2; g++)
        {
            while (_classGranules[c] < g)
                c++;
            _classForGranules[g] = (byte)c;
        }
    }

    /// <summary>A class size: the largest chunk size in granules with its chunks-per-frame count.</summary>
    private static bool IsClassSize(int granules)
    {
        return GranulesPerFrame / (granules + 1) < GranulesPerFrame / granules || granules == GranulesPerFrame / 2;
    }

    /// <summary>Number of size classes (chunk sizes) for compressed blocks.</summary>
    public int ClassCount { get { return _classGranules.Length; } }

    /// <summary>Chunk size of class <paramref name="index"/> in bytes.</summary>
    public int ClassChunkBytes(int index) { return _classGranules[index] * GranuleBytes; }

    /// <inheritdoc/>
    public bool TryStore(byte* page, out ulong handle)
    {
        ulong word = *(ulong*)page;
        if (IsSameFilled(page, word))
        {
            if (TrySameFilledHandle(word, out handle))
            {
                Interlocked.Increment(ref word == 0 ? ref _zeroPages : ref _sameFilledPages);
                return true;
            }
            // A word the handle cannot carry: compresses to a few dozen bytes below.
        }

        // Compression runs outside the lock, into this call's stack.
        ushort* table = stackalloc ushort[Lz4Block.HashEntries];
        byte* block = stackalloc byte[MaxBlockBytes];
        int length = Lz4Block.Compress(page, PageBytes, block, MaxBlockBytes, table);
        uint checksum = length == 0 ? Checksum(page, PageBytes) : Checksum(block, length);

        _lock.Enter(_platform);
        int slot;
        int chunk = 0;
        uint tag = _nextTag++ & TagMask;
        if (length == 0)
        {
            if (!TryTakeFrameLocked(out slot))
            {
                _lock.Exit(_platform);
                handle = 0;
                return false;
            }
            _slotClass[slot] = RawClass;
            _slotRawTag[slot] = (int)tag;
            _slotRawChecksum[slot] = checksum;
            Copy(FrameBytes(slot), page, PageBytes);
            _lock.Exit(_platform);
            Interlocked.Increment(ref _rawPages);
            handle = KindRaw | ((ulong)tag << TagShift) | ((ulong)slot << SlotShift);
            return true;
        }

        int cls = _classForGranules[(HeaderBytes + length + GranuleBytes - 1) / GranuleBytes];
        if (!TryTakeChunkLocked(cls, out slot, out chunk))
        {
            _lock.Exit(_platform);
            handle = 0;
            return false;
        }
        byte* at = ChunkBytes(slot, cls, chunk);
        *(uint*)at = (uint)length | (tag << 12);
        *(uint*)(at + 4) = checksum;
        Copy(at + HeaderBytes, block, length);
        _lock.Exit(_platform);
        Interlocked.Increment(ref _compressedPages);
        Interlocked.Add(ref _compressedBytes, length);
        handle = KindCompressed | ((ulong)chunk << ChunkShift) | ((ulong)tag << TagShift) | ((ulong)slot << SlotShift);
        return true;
    }

    /// <inheritdoc/>
    public bool TryLoad(ulong handle, byte* page)
    {
        switch (handle & 7)
        {
            case KindZero:
                if (handle != KindZero)
                    break;
                Fill(page, 0);
                return true;
            case KindFill61:
                Fill(page, (ulong)((long)handle >> 3));
                return true;
            case KindFill32:
                if ((handle >> 35) != 0)
                    break;
                ulong low = (uint)(handle >> 3);
                Fill(page, low | (low << 32));
                return true;
            case KindCompressed:
                return LoadCompressed(handle, page);
            case KindRaw:
                _lock.Enter(_platform);
                if (!IsLiveRawLocked(handle, out int slot))
                {
                    _lock.Exit(_platform);
                    break;
                }
                uint expected = _slotRawChecksum[slot];
                Copy(page, FrameBytes(slot), PageBytes);
                _lock.Exit(_platform);
                if (Checksum(page, PageBytes) != expected)
                {
                    Interlocked.Increment(ref _corruptBlocks);
                    return false;
                }
                return true;
        }
        Interlocked.Increment(ref _badHandles);
        return false;
    }

    // No zeroing of the block buffer (half a page, on every load): only the copied-out bytes are read.
    [System.Runtime.CompilerServices.SkipLocalsInit]
    private bool LoadCompressed(ulong handle, byte* page)
    {
        byte* block = stackalloc byte[MaxBlockBytes];
        _lock.Enter(_platform);
        if (!IsLiveChunkLocked(handle, out int slot, out int cls, out int chunk, out int length))
        {
            _lock.Exit(_platform);
            Interlocked.Increment(ref _badHandles);
            return false;
        }
        // Copied out under the lock: a racing free cannot hand the chunk to another store mid-read.
        byte* at = ChunkBytes(slot, cls, chunk);
        uint expected = *(uint*)(at + 4);
        Copy(block, at + HeaderBytes, length);
        _lock.Exit(_platform);
        // LZ4 has no check of its own: a flipped literal would decode to a wrong page.
        if (Checksum(block, length) != expected || Lz4Block.Decompress(block, length, page, PageBytes) != PageBytes)
        {
            Interlocked.Increment(ref _corruptBlocks);
            return false;
        }
        return true;
    }

    /// <inheritdoc/>
    public void Free(ulong handle)
    {
        switch (handle & 7)
        {
            case KindZero:
                if (handle == KindZero)
                    Interlocked.Decrement(ref _zeroPages);
                return;
            case KindFill61:
                // Markers own no storage; only the count changes.
                Interlocked.Decrement(ref _sameFilledPages);
                return;
            case KindFill32:
                if ((handle >> 35) != 0)
                    break;
                Interlocked.Decrement(ref _sameFilledPages);
                return;
            case KindCompressed:
                {
                    _lock.Enter(_platform);
                    if (!IsLiveChunkLocked(handle, out int slot, out int cls, out int chunk, out int length))
                    {
                        _lock.Exit(_platform);
                        break;
                    }
                    ReleaseChunkLocked(slot, cls, chunk);
                    _lock.Exit(_platform);
                    Interlocked.Decrement(ref _compressedPages);
                    Interlocked.Add(ref _compressedBytes, -length);
                    return;
                }
            case KindRaw:
                {
                    _lock.Enter(_platform);
                    if (!IsLiveRawLocked(handle, out int slot))
                    {
                        _lock.Exit(_platform);
                        break;
                    }
                    ReleaseFrameLocked(slot);
                    _lock.Exit(_platform);
                    Interlocked.Decrement(ref _rawPages);
                    return;
                }
        }
        Interlocked.Increment(ref _badHandles);
    }

    /// <summary>Reads every counter (each lock-free, on its own).</summary>
    public CompressedSwapPoolStatistics ReadStatistics()
    {
        CompressedSwapPoolStatistics s;
        s.ZeroPages = Volatile.Read(ref _zeroPages);
        s.SameFilledPages = Volatile.Read(ref _sameFilledPages);
        s.CompressedPages = Volatile.Read(ref _compressedPages);
        s.RawPages = Volatile.Read(ref _rawPages);
        s.CompressedBytes = Volatile.Read(ref _compressedBytes);
        s.FramesInUse = Volatile.Read(ref _framesInUse);
        s.LimitFrames = _limitFrames;
        s.RefusedFull = Volatile.Read(ref _refusedFull);
        s.RefusedNoMemory = Volatile.Read(ref _refusedNoMemory);
        s.BadHandles = Volatile.Read(ref _badHandles);
        s.CorruptBlocks = Volatile.Read(ref _corruptBlocks);
        return s;
    }

    /// <summary>Frames the pool holds now.</summary>
    public long FramesInUse { get { return Volatile.Read(ref _framesInUse); } }

    /// <summary>The most frames the pool may hold.</summary>
    public long LimitFrames { get { return _limitFrames; } }

    /// <summary>Stores refused because the limit was reached.</summary>
    public long RefusedFull { get { return Volatile.Read(ref _refusedFull); } }

    /// <summary>
    /// The handle of a same-filled page whose word is <paramref name="word"/>, if the handle can
    /// carry it: a word whose top 4 bits are equal (small numbers, canonical addresses, all ones)
    /// or a 32-bit half repeated (repeated bytes, 16- and 32-bit patterns).
    /// </summary>
    internal static bool TrySameFilledHandle(ulong word, out ulong handle)
    {
        if (word == 0)
        {
            handle = KindZero;
            return true;
        }
        if ((ulong)((long)(word << 3) >> 3) == word)
        {
            handle = (word << 3) | KindFill61;
            return true;
        }
        if ((word >> 32) == (uint)word)
        {
            handle = ((ulong)(uint)word << 3) | KindFill32;
            return true;
        }
        handle = 0;
        return false;
    }

    private static bool IsSameFilled(byte* page, ulong word)
    {
        ulong* w = (ulong*)page;
        for (int i = 1; i < PageBytes / 8; i++)
        {
            if (w[i] != word)
                return false;
        }
        return true;
    }

    /// <summary>Validates a compressed handle against the slot, its class, the chunk map and the chunk header.</summary>
    private bool IsLiveChunkLocked(ulong handle, out int slot, out int cls, out int chunk, out int length)
    {
        chunk = (int)((handle >> ChunkShift) & 0xFF);
        cls = 0;
        length = 0;
        ulong slotField = handle >> SlotShift;
        slot = slotField < (ulong)_slotClass.Length ? (int)slotField : -1;
        if (slot < 0)
            return false;
        int c = _slotClass[slot];
        if (c == NoClass || c == RawClass || chunk >= _classChunks[c])
            return false;
        cls = c;
        if ((_slotChunks[slot * 4 + (chunk >> 6)] & (1UL << (chunk & 63))) == 0)
            return false;
        uint header = *(uint*)ChunkBytes(slot, cls, chunk);
        length = (int)(header & LengthMask);
        uint tag = (uint)(handle >> TagShift) & TagMask;
        // The header is pool memory: a corrupt length must not make the copy-out leave the chunk.
        return (header >> 12) == tag && length > 0 && length <= _classGranules[cls] * GranuleBytes - HeaderBytes;
    }

    private bool IsLiveRawLocked(ulong handle, out int slot)
    {
        ulong slotField = handle >> SlotShift;
        slot = slotField < (ulong)_slotClass.Length ? (int)slotField : -1;
        return slot >= 0 && _slotClass[slot] == RawClass && ((handle >> ChunkShift) & 0xFF) == 0
            && (uint)_slotRawTag[slot] == ((uint)(handle >> TagShift) & TagMask);
    }

    /// <summary>A free chunk of class <paramref name="cls"/>, from a partly used frame or a new one.</summary>
    private bool TryTakeChunkLocked(int cls, out int slot, out int chunk)
    {
        slot = _classPartial[cls];
        if (slot < 0)
        {
            if (!TryTakeFrameLocked(out slot))
            {
                chunk = 0;
                return false;
            }
            _slotClass[slot] = (byte)cls;
            PushPartialLocked(cls, slot);
        }
        int chunks = _classChunks[cls];
        chunk = -1;
        for (int w = 0; w < 4 && w * 64 < chunks; w++)
        {
            ulong used = _slotChunks[slot * 4 + w];
            if (chunks - w * 64 < 64)
                used |= ~0UL << (chunks - w * 64); // chunks past the frame's count never exist
            if (used != ~0UL)
            {
                chunk = w * 64 + BitOperations.TrailingZeroCount(~used);
                break;
            }
        }
        if (chunk < 0)
            throw new InvalidOperationException("CompressedSwapPool: partial frame without a free chunk");
        _slotChunks[slot * 4 + (chunk >> 6)] |= 1UL << (chunk & 63);
        if (++_slotUsed[slot] == chunks)
            RemovePartialLocked(cls, slot);
        return true;
    }

    private void ReleaseChunkLocked(int slot, int cls, int chunk)
    {
        _slotChunks[slot * 4 + (chunk >> 6)] &= ~(1UL << (chunk & 63));
        int chunks = _classChunks[cls];
        int used = --_slotUsed[slot];
        if (used == chunks - 1)
            PushPartialLocked(cls, slot);
        if (used == 0)
        {
            RemovePartialLocked(cls, slot);
            ReleaseFrameLocked(slot);
        }
    }

    /// <summary>A slot with a fresh frame, unless the limit is reached or the allocator is empty.</summary>
    private bool TryTakeFrameLocked(out int slot)
    {
        slot = _freeSlot;
        if (slot < 0)
        {
            Interlocked.Increment(ref _refusedFull);
            return false;
        }
        // Lock order: device lock → per-CPU frame cache → zone lock.
        if (!_frames.AllocateFrame(out Pfn frame))
        {
            Interlocked.Increment(ref _refusedNoMemory);
            return false;
        }
        _freeSlot = _slotNext[slot];
        _slotFrame[slot] = frame.Value;
        _slotUsed[slot] = 0;
        _slotNext[slot] = -1;
        _slotPrev[slot] = -1;
        _slotChunks[slot * 4] = 0;
        _slotChunks[slot * 4 + 1] = 0;
        _slotChunks[slot * 4 + 2] = 0;
        _slotChunks[slot * 4 + 3] = 0;
        Interlocked.Increment(ref _framesInUse);
        return true;
    }

    private void ReleaseFrameLocked(int slot)
    {
        Pfn frame = new Pfn(_slotFrame[slot]);
        _slotClass[slot] = NoClass;
        _slotFrame[slot] = 0;
        _slotNext[slot] = _freeSlot;
        _slotPrev[slot] = -1;
        _freeSlot = slot;
        Interlocked.Decrement(ref _framesInUse);
        _frames.PutRef(frame);
    }

    private void PushPartialLocked(int cls, int slot)
    {
        int head = _classPartial[cls];
        _slotNext[slot] = head;
        _slotPrev[slot] = -1;
        if (head >= 0)
            _slotPrev[head] = slot;
        _classPartial[cls] = slot;
    }

    private void RemovePartialLocked(int cls, int slot)
    {
        int next = _slotNext[slot];
        int prev = _slotPrev[slot];
        if (prev >= 0)
            _slotNext[prev] = next;
        else
            _classPartial[cls] = next;
        if (next >= 0)
            _slotPrev[next] = prev;
        _slotNext[slot] = -1;
        _slotPrev[slot] = -1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* FrameBytes(int slot)
    {
        return _platform.PhysToVirt(new Pfn(_slotFrame[slot]).Address);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* ChunkBytes(int slot, int cls, int chunk)
    {
        return FrameBytes(slot) + chunk * _classGranules[cls] * GranuleBytes;
    }

    /// <summary>
    /// A 32-bit checksum of <c>[p, p + length)</c>: each 8-byte word is mixed in by an xor and a
    /// multiplication by an odd constant, both invertible, so a change in one word always changes the
    /// 64-bit state; folding it to 32 bits leaves a 2^-32 chance of missing a corruption.
    /// </summary>
    internal static uint Checksum(byte* p, int length)
    {
        ulong h = 0x9E3779B97F4A7C15UL ^ (ulong)length;
        while (length >= 8)
        {
            h = (h ^ Unsafe.ReadUnaligned<ulong>(p)) * 0xFF51AFD7ED558CCDUL;
            h ^= h >> 29;
            p += 8;
            length -= 8;
        }
        while (length > 0)
        {
            h = (h ^ *p++) * 0xC4CEB9FE1A85EC53UL;
            length--;
        }
        h ^= h >> 32;
        return (uint)h;
    }

    private static void Fill(byte* page, ulong word)
    {
        ulong* w = (ulong*)page;
        for (int i = 0; i < PageBytes / 8; i++)
            w[i] = word;
    }

    private static void Copy(byte* d, byte* s, int length) => Lz4Block.Copy(d, s, length);
}
