using System;
using Tandem.Mm;
using Xunit;

namespace Tandem.Mm.Tests.Swap;

/// <summary>
/// One test per bounds or validity check of <see cref="Lz4Block.Decompress"/> and
/// <see cref="CompressedSwapPool{TPlatform}"/>, each on a hand-made input that only that check
/// stops. A mutant without a destination check breaks a guard byte; one without a source check
/// reads the inaccessible page right after the block (the test run dies with SIGSEGV, which is a
/// kill too); one without a validity check returns success where the test expects failure.
/// </summary>
public unsafe class SwapMutationKillTests
{
    private const int Page = PageContents.PageBytes;

    private static int DecodeInto(byte[] block, int capacity, out bool guardsIntact, out byte[] output)
    {
        using CanaryBuffer dst = new CanaryBuffer(capacity);
        int n;
        fixed (byte* s = block)
            n = Lz4Block.Decompress(s, block.Length, dst.Data, capacity);
        guardsIntact = dst.GuardsIntact();
        output = dst.Span.ToArray();
        return n;
    }

    /// <summary>Decodes a block that ends flush against an inaccessible page.</summary>
    private static int DecodeFlush(byte[] block, int capacity = Page)
    {
        using GuardedBuffer src = new GuardedBuffer(1);
        using CanaryBuffer dst = new CanaryBuffer(capacity);
        int n = Lz4Block.Decompress(src.PlaceAtEnd(block), block.Length, dst.Data, capacity);
        Assert.True(dst.GuardsIntact());
        return n;
    }

    [Fact]
    public void TheHandMadeBlocksAreRightWhenWellFormed()
    {
        // 'a', then a match of 8 at offset 1, then an empty last sequence: 9 bytes of 'a'.
        Assert.Equal(9, DecodeInto(new byte[] { 0x14, (byte)'a', 0x01, 0x00, 0x00 }, 9, out bool ok, out byte[] o));
        Assert.True(ok);
        Assert.Equal(new string('a', 9), System.Text.Encoding.ASCII.GetString(o));
        Assert.Equal(5, DecodeFlush(new byte[] { 0x50, 1, 2, 3, 4, 5 }));
    }

    /// <summary>Kills: <c>literals &gt; dstCapacity - op</c> removed (or off by one).</summary>
    [Fact]
    public void LiteralsLongerThanTheDestinationAreRejected()
    {
        Assert.Equal(Lz4Block.Corrupt, DecodeInto(new byte[] { 0x50, 1, 2, 3, 4, 5 }, 4, out bool ok, out _));
        Assert.True(ok, "literal copy wrote past the destination");
        Assert.Equal(5, DecodeInto(new byte[] { 0x50, 1, 2, 3, 4, 5 }, 5, out ok, out _));
    }

    /// <summary>Kills: <c>matchLength &gt; dstCapacity - op</c> removed (or off by one).</summary>
    [Fact]
    public void AMatchLongerThanTheDestinationIsRejected()
    {
        Assert.Equal(Lz4Block.Corrupt, DecodeInto(new byte[] { 0x14, (byte)'a', 0x01, 0x00, 0x00 }, 8, out bool ok, out _));
        Assert.True(ok, "match copy wrote past the destination");
    }

    /// <summary>Kills: <c>offset &gt; op</c> removed (the match would copy from before the destination).</summary>
    [Fact]
    public void AnOffsetBeforeTheOutputIsRejected()
    {
        Assert.Equal(Lz4Block.Corrupt, DecodeInto(new byte[] { 0x10, (byte)'a', 0x02, 0x00, 0x00 }, 16, out bool ok, out _));
        Assert.True(ok);
        Assert.Equal(5, DecodeInto(new byte[] { 0x10, (byte)'a', 0x01, 0x00, 0x00 }, 16, out _, out _));
    }

    /// <summary>Kills: <c>offset == 0</c> removed.</summary>
    [Fact]
    public void OffsetZeroIsRejected()
    {
        Assert.Equal(Lz4Block.Corrupt, DecodeInto(new byte[] { 0x10, (byte)'a', 0x00, 0x00, 0x00 }, 16, out _, out _));
    }

    /// <summary>Kills: the token read's <c>ip &gt;= srcLength</c> removed (a block that ends after a match).</summary>
    [Fact]
    public void ABlockEndingAfterAMatchIsRejectedWithoutReadingOn()
    {
        Assert.Equal(Lz4Block.Corrupt, DecodeFlush(new byte[] { 0x10, (byte)'a', 0x01, 0x00 }));
        Assert.Equal(Lz4Block.Corrupt, DecodeFlush(new byte[] { 0x1F, (byte)'a', 0x01, 0x00, 0x10 }));
    }

    /// <summary>Kills: <c>srcLength - ip &lt; 2</c> removed (an offset cut in half).</summary>
    [Fact]
    public void AHalfOffsetIsRejectedWithoutReadingOn()
    {
        Assert.Equal(Lz4Block.Corrupt, DecodeFlush(new byte[] { 0x10, (byte)'a', 0x01 }));
    }

    /// <summary>Kills: <c>literals &gt; srcLength - ip</c> removed (literals past the block).</summary>
    [Fact]
    public void LiteralsPastTheSourceAreRejectedWithoutReadingThem()
    {
        Assert.Equal(Lz4Block.Corrupt, DecodeFlush(new byte[] { 0x50, 1, 2 }));
        Assert.Equal(Lz4Block.Corrupt, DecodeFlush(new byte[] { 0xF0, 0x40, 1, 2 }));
    }

    /// <summary>Kills: ReadLengthBytes' <c>ip &gt;= srcLength</c> removed (length bytes run off the block).</summary>
    [Fact]
    public void LengthBytesPastTheSourceAreRejectedWithoutReadingThem()
    {
        Assert.Equal(Lz4Block.Corrupt, DecodeFlush(new byte[] { 0xF0, 0xFF, 0xFF }));
        Assert.Equal(Lz4Block.Corrupt, DecodeFlush(new byte[] { 0x1F, (byte)'a', 0x01, 0x00, 0xFF }));
    }

    /// <summary>
    /// Kills: ReadLengthBytes' <c>sum &gt; cap</c> removed. 16 843 010 length bytes of 255 sum to
    /// 2^32 + 254: the int wraps round to 254, past the caller's "negative" test, and the mutant
    /// reads 269 literals where the block says four billion, returning 269 for a malformed block.
    /// (A single wrap to a negative sum is caught by the caller either way.) The check stops at the
    /// 17th length byte.
    /// </summary>
    [Fact]
    public void AnOverflowingLengthIsRejected()
    {
        const int Run = 16_843_010;
        const int Tail = 15 + 254;
        byte[] block = new byte[1 + Run + 1 + Tail];
        block[0] = 0xF0;
        block.AsSpan(1, Run).Fill(0xFF);
        block[Run + 1] = 0x00;
        block.AsSpan(Run + 2).Fill((byte)'x');
        byte* dst = stackalloc byte[Page];
        fixed (byte* s = block)
            Assert.Equal(Lz4Block.Corrupt, Lz4Block.Decompress(s, block.Length, dst, Page));
    }

    /// <summary>Kills: <c>ip == srcLength</c> (the end of a block) changed: every valid block would fail.</summary>
    [Fact]
    public void TheEndOfABlockIsTheEndOfItsLiterals()
    {
        Assert.Equal(0, DecodeFlush(new byte[] { 0x00 }));
        Assert.Equal(Lz4Block.Corrupt, DecodeFlush(Array.Empty<byte>()));
    }

    private static CompressedSwapPoolTests.Bed TextPageStored(out byte[] page, out ulong handle, out byte* chunk)
    {
        CompressedSwapPoolTests.Bed bed = new CompressedSwapPoolTests.Bed(1L << 20);
        page = PageContents.Make(PageKind.Text, new Random(11_2300));
        Assert.True(CompressedSwapPoolTests.Store(bed.Pool, page, out handle));
        Assert.Equal(CompressedSwapPool<HostPlatform>.KindCompressed, handle & 7);
        Assert.Equal(0UL, (handle >> CompressedSwapPool<HostPlatform>.ChunkShift) & 0xFF);
        Pfn frame = Assert.Single(bed.PoolFrames());
        chunk = bed.Machine.Memory + frame.Address.Value; // chunk 0
        return bed;
    }

    /// <summary>Kills: the checksum compare in the compressed load removed (a flipped literal decodes "fine").</summary>
    [Fact]
    public void AFlippedLiteralFailsTheChecksum()
    {
        using CompressedSwapPoolTests.Bed bed = TextPageStored(out byte[] page, out ulong h, out byte* chunk);
        int length = (int)(*(uint*)chunk & 0xFFF);
        byte[] back = new byte[Page];
        Assert.True(CompressedSwapPoolTests.Load(bed.Pool, h, back));
        // The last byte of a block is a literal of its final sequence.
        chunk[CompressedSwapPool<HostPlatform>.HeaderBytes + length - 1] ^= 0x20;
        Assert.False(CompressedSwapPoolTests.Load(bed.Pool, h, back));
        Assert.Equal(1, bed.Pool.ReadStatistics().CorruptBlocks);
    }

    /// <summary>Kills: <c>!= PageBytes</c> after the decompression removed (a block that decodes to less than a page).</summary>
    [Fact]
    public void AShortBlockIsNotAPage()
    {
        using CompressedSwapPoolTests.Bed bed = TextPageStored(out _, out ulong h, out byte* chunk);
        // A well-formed block of 100 bytes with a correct checksum and the handle's tag.
        byte[] shortPage = new byte[100];
        new Random(3).NextBytes(shortPage);
        byte[] block = Lz4BlockTests.Compress(shortPage);
        uint header = *(uint*)chunk;
        *(uint*)chunk = (header & ~0xFFFu) | (uint)block.Length;
        fixed (byte* b = block)
        {
            *(uint*)(chunk + 4) = CompressedSwapPool<HostPlatform>.Checksum(b, block.Length);
            new ReadOnlySpan<byte>(b, block.Length).CopyTo(new Span<byte>(chunk + CompressedSwapPool<HostPlatform>.HeaderBytes, block.Length));
        }
        Assert.False(CompressedSwapPoolTests.Load(bed.Pool, h, new byte[Page]));
    }

    /// <summary>
    /// Kills: the header length bound removed. A corrupt length of 4095 would copy past the chunk
    /// and past the load's 2 KiB stack buffer (a stack smash).
    /// </summary>
    [Fact]
    public void ACorruptHeaderLengthIsRejectedBeforeTheCopy()
    {
        using CompressedSwapPoolTests.Bed bed = TextPageStored(out _, out ulong h, out byte* chunk);
        *(uint*)chunk |= 0xFFF;
        Assert.False(CompressedSwapPoolTests.Load(bed.Pool, h, new byte[Page]));
        Assert.Equal(1, bed.Pool.ReadStatistics().BadHandles);
    }

    /// <summary>Kills: the tag compare removed (a stale handle would load the chunk's new owner).</summary>
    [Fact]
    public void AStaleTagIsRejected()
    {
        using CompressedSwapPoolTests.Bed bed = TextPageStored(out byte[] page, out ulong h, out byte* chunk);
        *(uint*)chunk ^= 1u << 12;
        Assert.False(CompressedSwapPoolTests.Load(bed.Pool, h, new byte[Page]));
    }

    /// <summary>Kills: the chunk-map test removed (a freed chunk whose header is still there would load).</summary>
    [Fact]
    public void AFreedChunkIsNotLoadedEvenWithItsHeaderIntact()
    {
        using CompressedSwapPoolTests.Bed bed = new CompressedSwapPoolTests.Bed(1L << 20);
        Random r = new Random(11_2301);
        byte[] a = PageContents.Make(PageKind.Text, r);
        // Two pages of one class in one frame: freeing the first leaves the frame (and its bytes) in the pool.
        Assert.True(CompressedSwapPoolTests.Store(bed.Pool, a, out ulong ha));
        Assert.True(CompressedSwapPoolTests.Store(bed.Pool, a, out ulong hb));
        Assert.Equal(1, bed.Pool.FramesInUse);
        bed.Pool.Free(ha);
        Assert.False(CompressedSwapPoolTests.Load(bed.Pool, ha, new byte[Page]));
        bed.Pool.Free(ha); // a double free is refused too: hb keeps its frame
        Assert.Equal(1, bed.Pool.FramesInUse);
        byte[] back = new byte[Page];
        Assert.True(CompressedSwapPoolTests.Load(bed.Pool, hb, back));
        Assert.Equal(a, back);
    }

    /// <summary>Kills: the raw checksum compare removed.</summary>
    [Fact]
    public void AFlippedRawByteFailsTheChecksum()
    {
        using CompressedSwapPoolTests.Bed bed = new CompressedSwapPoolTests.Bed(1L << 20);
        byte[] page = PageContents.Make(PageKind.Random, new Random(11_2302));
        Assert.True(CompressedSwapPoolTests.Store(bed.Pool, page, out ulong h));
        Pfn frame = Assert.Single(bed.PoolFrames());
        bed.Machine.Memory[frame.Address.Value + 1234] ^= 1;
        Assert.False(CompressedSwapPoolTests.Load(bed.Pool, h, new byte[Page]));
    }

    /// <summary>Kills: the slot range checks removed (an index past the slot arrays throws).</summary>
    [Fact]
    public void SlotsPastTheLimitAreRejected()
    {
        using CompressedSwapPoolTests.Bed bed = new CompressedSwapPoolTests.Bed(4 * Page);
        foreach (ulong kind in new[] { CompressedSwapPool<HostPlatform>.KindCompressed, CompressedSwapPool<HostPlatform>.KindRaw })
        {
            foreach (ulong slot in new[] { 4UL, 5UL, 1UL << 32 })
            {
                ulong h = kind | (slot << CompressedSwapPool<HostPlatform>.SlotShift);
                Assert.False(CompressedSwapPoolTests.Load(bed.Pool, h, new byte[Page]));
                bed.Pool.Free(h);
            }
        }
    }

    /// <summary>Kills: the limit test in the frame take removed (the pool would grow past its limit or index slot −1).</summary>
    [Fact]
    public void TheLimitIsNeverExceeded()
    {
        using CompressedSwapPoolTests.Bed bed = new CompressedSwapPoolTests.Bed(2 * Page);
        Random r = new Random(11_2303);
        Assert.True(CompressedSwapPoolTests.Store(bed.Pool, PageContents.Make(PageKind.Random, r), out _));
        Assert.True(CompressedSwapPoolTests.Store(bed.Pool, PageContents.Make(PageKind.Random, r), out _));
        Assert.False(CompressedSwapPoolTests.Store(bed.Pool, PageContents.Make(PageKind.Random, r), out _));
        Assert.Equal(2, bed.Pool.FramesInUse);
        Assert.Equal(bed.FreeAtStart - 2, bed.FreeNow());
    }
}
