using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using CsCheck;
using Tandem.Kvm.Boot;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;
using static Tandem.Kvm.Tests.Loaders.ImageBuilders;

namespace Tandem.Kvm.Tests.Loaders;

/// <summary>
/// Feeds each loader 100,000 images: mutations of valid seeds (bit flips, byte replacement,
/// interesting values such as 0, 0xFFFFFFFF and 0x80000000 written over header fields,
/// truncation, extension, with the multiboot checksums repaired half of the time so mutations
/// reach past them) and random images (half of them stamped with the format's magic). Guest RAM is
/// 8 MiB so that out-of-range addresses are common. Every load must return (no exception, no
/// hang), never write outside guest RAM or into the legacy hole, write nothing when it refuses,
/// and on success enter inside RAM. CsCheck generates the cases (a list of mutation operations
/// over a seed, or random bytes), shrinks a failing one, and prints its seed; TANDEM_SEED replays it.
/// </summary>
public sealed unsafe class LoaderFuzzTests
{
    private const int Iterations = 100_000;
    private const ulong RamSize = 8UL << 20;
    private readonly ITestOutputHelper _out;
    public LoaderFuzzTests(ITestOutputHelper output) { _out = output; }

    private sealed record Seed(byte[] Bytes, int HeaderOffset);

    private static Seed[] Seeds(LoaderKind kind)
    {
        switch (kind)
        {
            case LoaderKind.Multiboot:
                {
                    const uint load = 0x30_0000;
                    byte[] aout = Concat(Pattern(0x40, 5), Multiboot(0, new uint[] { load + 0x40, load, load + 0x160, load + 0x2160, load + 0x60 }), Pattern(0x100, 4));
                    ElfFile e32 = MultibootTests.Kernel(false), e64 = MultibootTests.Kernel(true), ev = MultibootTests.Kernel(false, vaddr: 0xC020_0000);
                    return new[] { new Seed(e32.Bytes, (int)e32.SegmentOffsets[0]), new Seed(e64.Bytes, (int)e64.SegmentOffsets[0]), new Seed(ev.Bytes, (int)ev.SegmentOffsets[0]), new Seed(aout, 0x40),
                    new Seed(e32.Bytes, (int)e32.PhOff), new Seed(e64.Bytes, (int)e64.PhOff) };
                }
            case LoaderKind.Multiboot2:
                {
                    ElfFile e32 = Multiboot2Tests.Kernel(false, Multiboot2Tests.InfoRequest(0, 1, 2, 6), Tag(6, 0));
                    ElfFile e64 = Multiboot2Tests.Kernel(true, Tag(3, 0, 0x20_0040), Tag(4, 1, 1));
                    const uint load = 0x30_0000;
                    byte[] h = Multiboot2(0, Tag(2, 0, load, load, 0, load + 0x4000), Tag(3, 0, load + 0x40));
                    return new[] { new Seed(e32.Bytes, (int)e32.SegmentOffsets[0]), new Seed(e64.Bytes, (int)e64.SegmentOffsets[0]), new Seed(Concat(h, Pattern(0x200)), 0),
                    new Seed(e32.Bytes, (int)e32.PhOff), new Seed(e64.Bytes, (int)e64.PhOff) };
                }
            case LoaderKind.Linux:
                return new[] { new Seed(BzImage(new BzOptions()), 0x1F0), new Seed(BzImage(new BzOptions { SetupSects = 0, InitSize = 0x8_0000, PrefAddress = 0x40_0000 }), 0x1F0) };
            case LoaderKind.Pvh:
                {
                    ElfFile a = PvhTests.Kernel(true), b = PvhTests.Kernel(false, asSection: true);
                    return new[] { new Seed(a.Bytes, (int)a.PhOff), new Seed(b.Bytes, (int)b.PhOff), new Seed(a.Bytes, (int)a.SegmentOffsets[1]) };
                }
            default:
                {
                    byte[] t64 = Pattern(0x200), t32 = Pattern(0x80);
                    Put32(t64, 0, 0x54534754); Put32(t64, 4, 64); Put32(t64, 8, 0x10);
                    Put32(t32, 0, 0x54534754); Put32(t32, 4, 32); Put32(t32, 8, 0x10);
                    return new[] { new Seed(t64, 0), new Seed(t32, 0), new Seed(Pattern(0x1000), 0) };
                }
        }
    }

    private static readonly ulong[] Interesting =
    {
        0, 1, 2, 4, 7, 8, 0x10, 0x7F, 0x80, 0xFF, 0x100, 0x200, 0x7FFF, 0x8000, 0xFFFF, 0x1000, 0xFFF,
        0xA_0000, 0xF_FFFF, 0x10_0000, 0x20_0000, 0x7F_F000, 0x80_0000, 0x7F_FFFF, 0x100_0000,
        0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFE, 0xFFFF_FFFF, 0x1_0000_0000, 0x8000_0000_0000_0000, ulong.MaxValue,
        0x1BAD_B002, 0xE852_50D6, 0x5372_6448, 0x464C_457F, 18, 0x206, 0x20F, 0x205,
    };

    /// <summary>One case: the image, and whether a module goes with it.</summary>
    public sealed record Case(byte[] Image, bool WithModule);

    /// <summary>
    /// One mutation of a seed image. Kind (0-99) picks the operation as the weights below; Raw
    /// places it (and gives the byte, the cut or the extension); Pick chooses the bit or the
    /// interesting value; Delta nudges that value; Width (0-8) its size.
    /// </summary>
    public readonly record struct Op(int Kind, uint Raw, int Pick, int Delta, int Width);

    /// <summary>The images: 1 in 10 random (half of them stamped with the format's magic), the rest mutated seeds.</summary>
    private static Gen<Case> Cases(LoaderKind kind)
    {
        Seed[] seeds = Seeds(kind);
        Gen<int> delta = Gen.Frequency((3, Gen.Const(0)), (1, Gen.Int[-16, 16]));
        Gen<Op> op = Gen.Select(Gen.Int[0, 99], Gen.UInt, Gen.Int[0, 1023], delta, Gen.Int[0, 8], (k, raw, pick, d, w) => new Op(k, raw, pick, d, w));
        Gen<byte[]> mutated = Gen.Select(Gen.Int[0, seeds.Length - 1], op.Array[1, 4], Gen.Bool, (s, ops, repair) => Mutate(seeds[s], ops, repair, kind));
        Gen<byte[]> random = Gen.Select(Gen.Byte.Array[0, 2999], Gen.Bool, Gen.Int[16, 3000], (b, stamp, length) =>
        {
            if (stamp)
                Stamp(b, kind, length);
            return b;
        });
        return Gen.Select(Gen.Frequency((1, random), (9, mutated)), Gen.Int[0, 2], (image, m) => new Case(image, m != 0));
    }

    [Theory]
    [InlineData(LoaderKind.Multiboot)]
    [InlineData(LoaderKind.Multiboot2)]
    [InlineData(LoaderKind.Linux)]
    [InlineData(LoaderKind.Pvh)]
    [InlineData(LoaderKind.Flat)]
    public void MutatedAndRandomImagesNeverEscapeGuestRam(LoaderKind kind)
    {
        string? seed = TestSeed.FromEnvironment();
        _out.WriteLine(seed != null
            ? "seed " + seed + " (from " + TestSeed.Variable + ")"
            : "seed: a fresh one (CsCheck prints it with the smallest failing image; replay with " + TestSeed.Variable + "=<seed> dotnet test --filter " + nameof(MutatedAndRandomImagesNeverEscapeGuestRam) + ")");
        var ram = new TestRam(RamSize);
        var map = new GuestMemoryMap(RamSize);

        // Command line and one module, in native memory for the whole run.
        byte[] cmdline = Encoding.ASCII.GetBytes("console=ttyS0 panic=-1");
        byte[] moduleBytes = Pattern(3000, 9);
        byte[] moduleCmdline = Encoding.ASCII.GetBytes("module one");
        IntPtr native = Marshal.AllocHGlobal(cmdline.Length + moduleBytes.Length + moduleCmdline.Length + sizeof(BootModule));
        byte* p = (byte*)native;
        var module = (BootModule*)p;
        byte* c = p + sizeof(BootModule);
        cmdline.CopyTo(new Span<byte>(c, cmdline.Length));
        byte* md = c + cmdline.Length;
        moduleBytes.CopyTo(new Span<byte>(md, moduleBytes.Length));
        byte* mc = md + moduleBytes.Length;
        moduleCmdline.CopyTo(new Span<byte>(mc, moduleCmdline.Length));
        *module = new BootModule { Data = md, Length = (ulong)moduleBytes.Length, Cmdline = mc, CmdlineLength = (ulong)moduleCmdline.Length };

        int loaded = 0, refused = 0, cases = 0;
        var stopwatch = Stopwatch.StartNew();
        try
        {
            // One thread: the loaders write into one TestRam. A failure (an exception or a failed
            // assertion) makes CsCheck look for a smaller failing case and report it with its seed.
            Cases(kind).Sample(x =>
            {
                cases++;
                ram.Reset();
                bool ok;
                BootEntry entry;
                LoadError error;
                fixed (byte* img = x.Image)
                {
                    var input = new BootInput
                    {
                        Image = img,
                        ImageLength = (ulong)x.Image.Length,
                        Cmdline = c,
                        CmdlineLength = (ulong)cmdline.Length,
                        Modules = module,
                        ModuleCount = x.WithModule ? 1 : 0,
                    };
                    ok = LoaderRun.Invoke(kind, ram, map, input, out entry, out error);
                }
                if (ram.Violation != null)
                    Assert.Fail($"{kind}: {ram.Violation}; ok={ok}");
                if (ok)
                {
                    loaded++;
                    Assert.True(entry.Rip < RamSize, $"{kind}: entry 0x{entry.Rip:X} outside RAM");
                    Assert.True(entry.Rbx < RamSize && entry.Rsi < RamSize, $"{kind}: boot information outside RAM");
                }
                else
                {
                    refused++;
                    Assert.True(error.IsError && error.Template != null, $"{kind}: refused without an error");
                    if (error.Kind != LoadErrorKind.WriteFailed)
                        Assert.True(ram.Writes == 0, $"{kind}: refused ({StringSink.Format(error)}) after {ram.Writes} writes");
                    StringSink.Format(error);
                }
            }, seed: seed!, iter: Iterations, threads: 1, print: x => $"{x.Image.Length} bytes, module {x.WithModule}: {Convert.ToHexString(x.Image.AsSpan(0, Math.Min(x.Image.Length, 256)))}");
        }
        finally
        {
            Marshal.FreeHGlobal(native);
        }
        _out.WriteLine($"{kind}: {cases} images in {stopwatch.Elapsed.TotalSeconds:F1} s: {loaded} loaded, {refused} refused");
        Assert.True(cases >= Iterations, $"only {cases} images were tried");
        Assert.True(loaded > Iterations / 50, $"only {loaded} images loaded: the mutations rarely reach the loading code");
    }

    private static void Stamp(byte[] b, LoaderKind kind, int length)
    {
        switch (kind)
        {
            case LoaderKind.Multiboot:
                if (b.Length >= 12) { Put32(b, 0, 0x1BADB002); Put32(b, 8, unchecked(0u - 0x1BADB002u - BitConverter.ToUInt32(b, 4))); }
                break;
            case LoaderKind.Multiboot2:
                if (b.Length >= 16)
                {
                    Put32(b, 0, 0xE85250D6); Put32(b, 4, 0); Put32(b, 8, (ulong)Math.Min(length, b.Length));
                    Put32(b, 12, unchecked(0u - 0xE85250D6u - BitConverter.ToUInt32(b, 8)));
                }
                break;
            case LoaderKind.Linux:
                if (b.Length >= 0x206) { Put32(b, 0x202, 0x53726448); Put16(b, 0x1FE, 0xAA55); }
                break;
            default:
                if (b.Length >= 64) { b[0] = 0x7F; b[1] = (byte)'E'; b[2] = (byte)'L'; b[3] = (byte)'F'; b[4] = (byte)(1 + (length & 1)); b[5] = 1; Put16(b, 16, 2); Put16(b, 18, 62); }
                if (kind == LoaderKind.Flat && b.Length >= 16) Put32(b, 0, 0x54534754);
                break;
        }
    }

    private static byte[] Mutate(Seed seed, Op[] ops, bool repair, LoaderKind kind)
    {
        byte[] b = (byte[])seed.Bytes.Clone();
        foreach (Op o in ops)
        {
            if (b.Length == 0)
                break;
            if (o.Kind < 25)
                b[o.Raw % (uint)b.Length] ^= (byte)(1 << (o.Pick & 7));
            else if (o.Kind < 40)
                b[o.Raw % (uint)b.Length] = (byte)o.Pick;
            else if (o.Kind < 80)
            {
                // An interesting value over a header field: near the seed's header, or in the first 0x300 bytes.
                int at = (o.Raw & 1) == 0 ? seed.HeaderOffset + (int)(o.Raw >> 1) % 64 : (int)((o.Raw >> 1) % 0x300);
                at &= ~3;
                ulong v = Interesting[o.Pick % Interesting.Length] + (ulong)(long)o.Delta;
                if (o.Width <= 2 && at + 8 <= b.Length)
                    Put64(b, (ulong)at, v);
                else if (o.Width <= 4 && at + 2 <= b.Length)
                    Put16(b, (ulong)at, v);
                else if (at + 4 <= b.Length)
                    Put32(b, (ulong)at, v);
            }
            else if (o.Kind < 90)
                Array.Resize(ref b, (int)(o.Raw % (uint)b.Length));
            else
            {
                int old = b.Length;
                Array.Resize(ref b, old + 1 + (int)(o.Raw % 511));
                new Random((int)o.Raw).NextBytes(b.AsSpan(old));
            }
        }
        if (repair)
            RepairChecksum(b, seed.HeaderOffset, kind);
        return b;
    }

    /// <summary>Recomputes a multiboot checksum whose magic survived, so mutations get past it.</summary>
    private static void RepairChecksum(byte[] b, int at, LoaderKind kind)
    {
        if (kind == LoaderKind.Multiboot && at + 12 <= b.Length && BitConverter.ToUInt32(b, at) == 0x1BADB002)
            Put32(b, (ulong)at + 8, unchecked(0u - 0x1BADB002u - BitConverter.ToUInt32(b, at + 4)));
        if (kind == LoaderKind.Multiboot2 && at + 16 <= b.Length && BitConverter.ToUInt32(b, at) == 0xE85250D6)
            Put32(b, (ulong)at + 12, unchecked(0u - 0xE85250D6u - BitConverter.ToUInt32(b, at + 4) - BitConverter.ToUInt32(b, at + 8)));
    }
}
