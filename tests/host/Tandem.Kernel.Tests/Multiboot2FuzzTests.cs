using System;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Threading;
using CsCheck;
using Tandem.Kernel.Parsers;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kernel.Tests;

/// <summary>
/// <see cref="Multiboot2Parser"/> as if a broken boot loader handed the boot information over:
/// 100,000 cases, nine in ten mutations of valid seeds (tag sizes past the end or zero, memory
/// maps with overlaps, zero lengths, wrapping entries, RAM above 4 GiB, strings without a NUL,
/// unaligned sizes; half of them with the total size repaired so the mutations reach the tags)
/// and one in ten random bytes, with a bad magic or a misaligned pointer now and then. The parser
/// sees only a span: a read outside it throws, which fails the case. It must return one of its
/// documented refusals or a result whose every offset lies inside the structure, and whose
/// usable RAM agrees, page by page at every boundary, with a naive reading of the map.
/// </summary>
public sealed class Multiboot2FuzzTests
{
    public const int Cases = 100_000;
    private readonly ITestOutputHelper _out;
    public Multiboot2FuzzTests(ITestOutputHelper output) { _out = output; }

    private static readonly string[] Refusals =
    {
        Multiboot2Parser.NotMultiboot2, Multiboot2Parser.BadPointer, Multiboot2Parser.ImplausibleSize,
        Multiboot2Parser.TagPastEnd, Multiboot2Parser.NoEndTag,
    };

    public static Gen<(uint Magic, ulong Address, byte[] Info)> Inputs()
    {
        byte[][] seeds = Multiboot2Builder.Seeds();
        Gen<byte[]> mutated = Gen.Select(Gen.Int[0, seeds.Length - 1], Mutations.Operation.Array[1, 6], Gen.Bool)
            .Select((s, ops, fixSize) =>
            {
                byte[] b = Mutations.Apply(seeds[s], ops);
                if (fixSize && b.Length >= 4)
                    BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)b.Length);
                return b;
            });
        Gen<byte[]> random = Gen.Select(Gen.Byte.Array[0, 600], Gen.Bool).Select((b, stamp) =>
        {
            if (stamp && b.Length >= 8)
                BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)b.Length);
            return b;
        });
        return Gen.Select(Gen.Frequency((9, mutated), (1, random)), Gen.Int[0, 39]).Select((b, pick) =>
            (pick == 0 ? 0x2BADB002u : Multiboot2Parser.BootloaderMagic, pick == 1 ? 0x10_0004UL : pick == 2 ? 0UL : 0x10_0000UL, b));
    }

    [Fact]
    public void BrokenBootInformationIsRefusedOrReadSanely()
    {
        string? seed = TestSeed.FromEnvironment();
        long accepted = 0, refused = 0, withUsable = 0, messy = 0;
        var clock = Stopwatch.StartNew();
        Inputs().Sample(input =>
        {
            if (Check(input.Magic, input.Address, input.Info, out bool hasUsable, out bool mapProblems))
            {
                Interlocked.Increment(ref accepted);
                if (hasUsable)
                    Interlocked.Increment(ref withUsable);
                if (mapProblems)
                    Interlocked.Increment(ref messy);
            }
            else
                Interlocked.Increment(ref refused);
        }, seed: seed!, iter: Cases, writeLine: _out.WriteLine, print: i => $"magic {i.Magic:X} at {i.Address:X}: {Convert.ToHexString(i.Info)}");
        _out.WriteLine($"{Cases} cases in {clock.Elapsed.TotalSeconds:F1} s: {accepted} accepted ({withUsable} with usable RAM, {messy} with a memory map the sanitizer reported), {refused} refused");
        Assert.Equal(Cases, accepted + refused);
        Assert.True(accepted > Cases / 5, "the mutations rarely get past the header: " + accepted);
        Assert.True(messy > Cases / 50, "few messy memory maps reached the sanitizer: " + messy);
    }

    /// <summary>Parses one input and checks the result; true when accepted.</summary>
    public static bool Check(uint magic, ulong address, byte[] bytes, out bool hasUsable, out bool mapProblems)
    {
        hasUsable = mapProblems = false;
        var info = new Multiboot2Info();
        string? problem = Multiboot2Parser.Parse(magic, address, bytes, ref info);
        if (problem != null)
        {
            Assert.Contains(problem, Refusals);
            return false;
        }
        Assert.True(info.TotalSize >= 16 && info.TotalSize <= bytes.Length, "total size");
        CheckString(bytes, info.TotalSize, info.CommandLineOffset, info.CommandLineLength);
        if (info.BootloaderNameOffset >= 0)
            CheckString(bytes, info.TotalSize, info.BootloaderNameOffset, Array.IndexOf(bytes, (byte)0, info.BootloaderNameOffset) - info.BootloaderNameOffset);
        if (info.RsdpOffset >= 0)
            Assert.True(info.RsdpOffset >= 16 && info.RsdpLength >= AcpiParser.RsdpV1Length && info.RsdpOffset + info.RsdpLength <= info.TotalSize, "RSDP outside");
        Assert.InRange(info.ModuleCount, 0, Multiboot2Info.MaxModules);
        for (int i = 0; i < info.ModuleCount; i++)
        {
            ModuleInfo m = info.Module(i);
            Assert.True(m.Start <= m.End, "module ends before it starts");
            CheckString(bytes, info.TotalSize, m.CommandLineOffset, m.CommandLineLength);
        }
        Assert.InRange(info.RegionCount, 0, Multiboot2Info.MaxRegions);
        CheckUsable(ref info);
        hasUsable = info.UsableCount > 0;
        mapProblems = !info.MapReport.Clean;
        return true;
    }

    private static void CheckString(byte[] b, uint total, int offset, int length)
    {
        if (offset < 0)
            return;
        Assert.True(offset >= 16 && length >= 0 && offset + length < total, "string outside the boot information");
        Assert.Equal(0, b[offset + length]);
        Assert.True(Array.IndexOf(b, (byte)0, offset, length) < 0, "NUL inside the string's length");
    }

    private const ulong Page = 4096, Limit = 4UL << 30;

    private static ulong End(MemoryRegion r) => r.Base + r.Length < r.Base ? ulong.MaxValue : r.Base + r.Length;

    /// <summary>The naive reading: the page at p is usable when it is below 4 GiB, inside a RAM entry, and touches no other non-empty entry.</summary>
    private static bool NaiveUsable(ref Multiboot2Info info, ulong p)
    {
        if (p + Page > Limit)
            return false;
        bool ram = false;
        for (int i = 0; i < info.RegionCount; i++)
        {
            MemoryRegion r = info.Region(i);
            if (r.Length == 0)
                continue;
            if (r.Type == 1 && r.Base <= p && p + Page <= End(r))
                ram = true;
            if (r.Type != 1 && r.Base < p + Page && End(r) > p)
                return false;
        }
        return ram;
    }

    private static bool InUsable(ref Multiboot2Info info, ulong p)
    {
        for (int i = 0; i < info.UsableCount; i++)
        {
            if (info.Usable(i).Start <= p && p < info.Usable(i).End)
                return true;
        }
        return false;
    }

    private static void CheckUsable(ref Multiboot2Info info)
    {
        Assert.InRange(info.UsableCount, 0, Multiboot2Info.MaxUsable);
        for (int i = 0; i < info.UsableCount; i++)
        {
            UsableRange u = info.Usable(i);
            Assert.True(u.Start < u.End && u.End <= Limit && u.Start % Page == 0 && u.End % Page == 0, $"usable range {i}: {u.Start:X}-{u.End:X}");
            if (i > 0)
                Assert.True(info.Usable(i - 1).End < u.Start, "usable ranges not sorted, disjoint and merged");
        }
        if (info.MapReport.DroppedUsable > 0)
            return;
        // Both readings change only at these points: check the page at each and the one before it.
        Span<ulong> at = stackalloc ulong[8];
        for (int i = 0; i < info.RegionCount + info.UsableCount; i++)
        {
            int n;
            if (i < info.RegionCount)
            {
                MemoryRegion r = info.Region(i);
                ulong e = End(r);
                at[0] = r.Base & ~(Page - 1); at[1] = (r.Base & ~(Page - 1)) + Page; at[2] = e & ~(Page - 1); at[3] = (e & ~(Page - 1)) + Page;
                n = 4;
            }
            else
            {
                at[0] = info.Usable(i - info.RegionCount).Start; at[1] = info.Usable(i - info.RegionCount).End;
                n = 2;
            }
            for (int k = 0; k < n; k++)
            {
                foreach (ulong p in new[] { at[k], at[k] - Page })
                {
                    if (p >= Limit)
                        continue;
                    Assert.True(NaiveUsable(ref info, p) == InUsable(ref info, p), $"page {p:X}: naive {NaiveUsable(ref info, p)}, sanitized {InUsable(ref info, p)}");
                }
            }
        }
    }
}
