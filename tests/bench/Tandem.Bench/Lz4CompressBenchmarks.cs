using System;
using BenchmarkDotNet.Attributes;
using K4os.Compression.LZ4;
using Tandem.Benchmarks;
using Tandem.Mm;
using Tandem.Mm.Tests.Swap;

namespace Tandem.Bench;

/// <summary>
/// Compressing a fixed mix of <see cref="Pages"/> 4 KiB pages (every <see cref="PageKind"/> in
/// turn, seed <see cref="Seed"/>: zero, random, text, repetitive, slices of this assembly, sparse
/// structures, half random) with Tandem's <see cref="Lz4Block.Compress"/> (A) against K4os'
/// <c>LZ4Codec.Encode</c> at <c>L00_FAST</c> (B), <see cref="Passes"/> passes over the mix,
/// alternating <see cref="ChunkPages"/> pages by <see cref="ChunkPages"/> pages
/// (<see cref="Paired.Interleaved"/>). Goals: time ratio ≤ 2; and the compressed size of the mix,
/// Tandem / K4os, within 5 % (≤ 1.05), measured once in the setup.
/// </summary>
public unsafe class Lz4CompressBenchmarks
{
    public const int Pages = 2048;
    public const int Passes = 8;
    public const int ChunkPages = 256;
    public const int Seed = 112_500;

    /// <summary>Tandem's compressed size of the mix over K4os' (null until the setup ran).</summary>
    public static double? SizeRatio;
    public static long TandemBytes;
    public static long K4osBytes;

    private byte[] _pages = null!;
    private byte[] _out = null!;
    private ushort[] _table = null!;
    private int _sink;

    [GlobalSetup]
    public void Setup()
    {
        Random r = new Random(Seed);
        _pages = new byte[Pages * PageContents.PageBytes];
        for (int i = 0; i < Pages; i++)
            PageContents.Fill(PageContents.Kinds[i % PageContents.Kinds.Length], r, _pages.AsSpan(i * PageContents.PageBytes, PageContents.PageBytes));
        _out = new byte[LZ4Codec.MaximumOutputSize(PageContents.PageBytes)];
        _table = new ushort[Lz4Block.HashEntries];
        long tandem = 0, k4os = 0;
        for (int i = 0; i < Pages; i++)
        {
            tandem += CompressTandem(i);
            k4os += CompressK4os(i);
        }
        TandemBytes = tandem;
        K4osBytes = k4os;
        SizeRatio = (double)tandem / k4os;
    }

    private int CompressTandem(int page)
    {
        fixed (byte* src = &_pages[page * PageContents.PageBytes])
        fixed (byte* dst = _out)
        fixed (ushort* table = _table)
        {
            int n = Lz4Block.Compress(src, PageContents.PageBytes, dst, _out.Length, table);
            if (n <= 0)
                throw new InvalidOperationException("bench: Tandem compress failed");
            return n;
        }
    }

    private int CompressK4os(int page)
    {
        int n = LZ4Codec.Encode(_pages.AsSpan(page * PageContents.PageBytes, PageContents.PageBytes), _out, LZ4Level.L00_FAST);
        if (n <= 0)
            throw new InvalidOperationException("bench: K4os encode failed");
        return n;
    }

    private void TandemChunk(int c)
    {
        int first = c * ChunkPages % Pages;
        for (int i = first; i < first + ChunkPages; i++)
            _sink += CompressTandem(i);
    }

    private void K4osChunk(int c)
    {
        int first = c * ChunkPages % Pages;
        for (int i = first; i < first + ChunkPages; i++)
            _sink += CompressK4os(i);
    }

    [Benchmark(Description = "A: Tandem Lz4Block.Compress | B: K4os LZ4Codec.Encode L00_FAST, 2048-page mix x 8 (interleaved per 256 pages)")]
    public void TandemVsK4os() => Paired.Interleaved(nameof(TandemVsK4os), null, Pages * Passes / ChunkPages, TandemChunk, K4osChunk, shared: false);
}
