using System;
using System.Collections.Generic;
using K4os.Compression.LZ4;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Mm.Tests.Swap;

/// <summary>
/// <see cref="Lz4Block.Decompress"/> on hostile input: mutated, truncated, spliced and random
/// blocks. The source lies flush against an inaccessible page (at its end, or at its start), so a
/// read outside it faults; the destination has guard bytes on both sides.
/// </summary>
public unsafe class Lz4FuzzTests
{
    public const int Blocks = 200_000;
    private readonly ITestOutputHelper _out;

    public Lz4FuzzTests(ITestOutputHelper output) { _out = output; }

    [Fact]
    public void HostileBlocksNeverThrowReadOrWriteOutsideTheirBuffers()
    {
        Random r = new Random(SwapSeed.Pick(_out.WriteLine, nameof(HostileBlocksNeverThrowReadOrWriteOutsideTheirBuffers), 11_2100));
        List<byte[]> valid = new List<byte[]>();
        byte[] k = new byte[LZ4Codec.MaximumOutputSize(PageContents.PageBytes)];
        foreach (PageKind kind in PageContents.Kinds)
        {
            for (int i = 0; i < 40; i++)
            {
                byte[] page = PageContents.Make(kind, r);
                valid.Add(Lz4BlockTests.Compress(page));
                int n = LZ4Codec.Encode(page, k, i % 2 == 0 ? LZ4Level.L00_FAST : LZ4Level.L09_HC);
                valid.Add(k.AsSpan(0, n).ToArray());
            }
        }

        using GuardedBuffer source = new GuardedBuffer(4);
        _out.WriteLine(source.Guarded ? "source flush against PROT_NONE pages" : "no guard pages on this OS: bounds checked by the destination guards only");
        using CanaryBuffer dst = new CanaryBuffer(PageContents.PageBytes);
        byte[] scratch = new byte[PageContents.PageBytes];
        int accepted = 0, rejected = 0, tighter = 0, agreeK4os = 0;
        for (int i = 0; i < Blocks; i++)
        {
            byte[] block = Mutate(valid[r.Next(valid.Count)], valid[r.Next(valid.Count)], r);
            byte* src = (i & 1) == 0 ? source.PlaceAtEnd(block) : source.PlaceAtStart(block);
            int cap = r.Next(8) == 0 ? r.Next(0, PageContents.PageBytes) : PageContents.PageBytes;
            dst.Reset();
            int n = Lz4Block.Decompress(src, block.Length, dst.Data, cap);
            Assert.True(dst.GuardsIntact(), "write outside the destination, block " + i);
            // The capacity is a hard bound: nothing past dst + cap changed either.
            for (int b = cap; b < PageContents.PageBytes; b++)
                Assert.True(dst.Data[b] == 0xA5, "write past the capacity, block " + i);
            Assert.True(n == Lz4Block.Corrupt || (n >= 0 && n <= cap));
            if (n < 0)
            {
                rejected++;
                continue;
            }
            accepted++;
            // Tight bounds: the same block decodes into exactly n bytes, and not into n - 1.
            if (n > 0 && (i & 7) == 0)
            {
                dst.Span.Slice(0, n).CopyTo(scratch);
                Assert.Equal(n, Lz4Block.Decompress(src, block.Length, dst.Data, n));
                Assert.True(dst.Span.Slice(0, n).SequenceEqual(scratch.AsSpan(0, n)));
                Assert.Equal(Lz4Block.Corrupt, Lz4Block.Decompress(src, block.Length, dst.Data, n - 1));
                tighter++;
            }
            // Where the reference decoder also accepts the block, both produce the same bytes.
            if (cap == PageContents.PageBytes && (i & 3) == 0)
            {
                byte[] theirs = new byte[cap];
                int m = LZ4Codec.Decode(block, 0, block.Length, theirs, 0, cap);
                if (m >= 0)
                {
                    Assert.Equal(m, n);
                    Assert.True(dst.Span.Slice(0, n).SequenceEqual(theirs.AsSpan(0, m)), "differs from K4os on block " + i);
                    agreeK4os++;
                }
            }
        }
        _out.WriteLine($"{Blocks} blocks: {accepted} decoded, {rejected} rejected; {tighter} tight-bound checks; {agreeK4os} compared with K4os");
        Assert.True(rejected > Blocks / 4, "the mutations should mostly break blocks");
        Assert.True(accepted > Blocks / 50, "some mutations should leave valid blocks");
    }

    /// <summary>One hostile variant of <paramref name="a"/> (and sometimes <paramref name="b"/>).</summary>
    private static byte[] Mutate(byte[] a, byte[] b, Random r)
    {
        switch (r.Next(9))
        {
            case 0: // flip a few bytes
                {
                    byte[] x = (byte[])a.Clone();
                    for (int n = r.Next(1, 4); n > 0; n--)
                        x[r.Next(x.Length)] ^= (byte)r.Next(1, 256);
                    return x;
                }
            case 1: // truncate
                return a.AsSpan(0, r.Next(0, a.Length)).ToArray();
            case 2: // extend with random bytes
                {
                    byte[] x = new byte[a.Length + r.Next(1, 64)];
                    a.CopyTo(x, 0);
                    r.NextBytes(x.AsSpan(a.Length));
                    return x;
                }
            case 3: // random bytes
                {
                    byte[] x = new byte[r.Next(0, 300)];
                    r.NextBytes(x);
                    return x;
                }
            case 4: // splice two blocks
                {
                    int cutA = r.Next(a.Length + 1), cutB = r.Next(b.Length + 1);
                    byte[] x = new byte[cutA + b.Length - cutB];
                    a.AsSpan(0, cutA).CopyTo(x);
                    b.AsSpan(cutB).CopyTo(x.AsSpan(cutA));
                    return x;
                }
            case 5: // long length runs: 0xFF where a length byte may be read
                {
                    byte[] x = (byte[])a.Clone();
                    int at = r.Next(x.Length);
                    int len = Math.Min(x.Length - at, r.Next(1, 40));
                    x.AsSpan(at, len).Fill(0xFF);
                    return x;
                }
            case 6: // set one byte to a boundary value (offsets 0 and 0xFFFF, nibbles 0 and 15)
                {
                    byte[] x = (byte[])a.Clone();
                    byte[] values = { 0x00, 0xFF, 0x0F, 0xF0, 0x01, 0x10 };
                    if (x.Length > 0)
                        x[r.Next(x.Length)] = values[r.Next(values.Length)];
                    return x;
                }
            case 7: // the block is valid: the decoder must accept it (checked by the caller's counts)
                return (byte[])a.Clone();
            default: // drop one byte
                {
                    if (a.Length == 0)
                        return a;
                    int at = r.Next(a.Length);
                    byte[] x = new byte[a.Length - 1];
                    a.AsSpan(0, at).CopyTo(x);
                    a.AsSpan(at + 1).CopyTo(x.AsSpan(at));
                    return x;
                }
        }
    }
}
