using System.Buffers.Binary;
using System.Text;
using K4os.Compression.LZ4;
using Xunit;

namespace Tandem.Build.Tests;

/// <summary>Synthetic inputs: LZ4 legacy streams, bzImages and ELF64 files built in the tests.</summary>
internal static class Synthetic
{
    /// <summary>Bytes that compress a little (runs and a pattern) and differ with the seed.</summary>
    public static byte[] Data(int length, int seed)
    {
        var random = new Random(seed);
        byte[] b = new byte[length];
        for (int i = 0; i < length;)
        {
            int run = random.Next(1, 40);
            byte value = (byte)random.Next(256);
            bool repeat = random.Next(2) == 0;
            for (int j = 0; j < run && i < length; j++, i++)
                b[i] = repeat ? value : (byte)random.Next(256);
        }
        return b;
    }

    /// <summary>An LZ4 legacy stream of <paramref name="data"/> cut into blocks of <paramref name="blockSize"/>, with the kernel's le32 size trailer.</summary>
    public static byte[] Lz4Legacy(byte[] data, int blockSize, bool sizeTrailer = true)
    {
        using var s = new MemoryStream();
        s.Write(BitConverter.GetBytes(0x184C2102u));
        for (int at = 0; at < data.Length; at += blockSize)
            WriteBlock(s, data.AsSpan(at, Math.Min(blockSize, data.Length - at)));
        if (sizeTrailer)
            s.Write(BitConverter.GetBytes((uint)data.Length));
        return s.ToArray();
    }

    public static void WriteBlock(Stream s, ReadOnlySpan<byte> block)
    {
        byte[] compressed = new byte[LZ4Codec.MaximumOutputSize(block.Length)];
        int n = LZ4Codec.Encode(block, compressed, LZ4Level.L09_HC);
        Assert.True(n > 0);
        s.Write(BitConverter.GetBytes((uint)n));
        s.Write(compressed, 0, n);
    }

    /// <summary>A bzImage-shaped file: setup header fields only, then the payload inside the protected-mode code.</summary>
    public static byte[] BzImage(byte[] payload, byte setupSects, int payloadOffset, ushort protocol = 0x020F)
    {
        int code = ((setupSects == 0 ? 4 : setupSects) + 1) * 512;
        byte[] image = new byte[code + payloadOffset + payload.Length + 100];
        image[0x1F1] = setupSects;
        Encoding.ASCII.GetBytes("HdrS").CopyTo(image, 0x202);
        BinaryPrimitives.WriteUInt16LittleEndian(image.AsSpan(0x206), protocol);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x248), (uint)payloadOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x24C), (uint)payload.Length);
        image.AsSpan(code, payloadOffset).Fill(0xCC);
        payload.CopyTo(image, code + payloadOffset);
        image.AsSpan(code + payloadOffset + payload.Length).Fill(0xEE);
        return image;
    }

    public sealed record Segment(uint Type, ulong Offset, byte[] Bytes, ulong Vaddr, ulong MemSize = 0, ulong Align = 0x1000);

    /// <summary>
    /// An ELF64 executable: the header, the program headers at 64, the segments' bytes at their
    /// offsets, filler (0xAB) everywhere else, and a section header table at the end.
    /// </summary>
    public static byte[] Elf(IReadOnlyList<Segment> segments, ulong entry = 0x1000000)
    {
        int phoff = 64, phnum = segments.Count;
        int end = segments.Select(s => (int)s.Offset + s.Bytes.Length).Append(phoff + phnum * 56).Max();
        int shoff = (end + 7) & ~7, shnum = 3;
        byte[] elf = new byte[shoff + shnum * 64];
        elf.AsSpan().Fill(0xAB);
        elf.AsSpan(0, 64).Clear();
        elf[0] = 0x7F; elf[1] = (byte)'E'; elf[2] = (byte)'L'; elf[3] = (byte)'F'; elf[4] = 2; elf[5] = 1; elf[6] = 1;
        Span<byte> h = elf;
        BinaryPrimitives.WriteUInt16LittleEndian(h[16..], 2);
        BinaryPrimitives.WriteUInt16LittleEndian(h[18..], 62);
        BinaryPrimitives.WriteUInt32LittleEndian(h[20..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(h[24..], entry);
        BinaryPrimitives.WriteUInt64LittleEndian(h[32..], (ulong)phoff);
        BinaryPrimitives.WriteUInt64LittleEndian(h[40..], (ulong)shoff);
        BinaryPrimitives.WriteUInt16LittleEndian(h[52..], 64);
        BinaryPrimitives.WriteUInt16LittleEndian(h[54..], 56);
        BinaryPrimitives.WriteUInt16LittleEndian(h[56..], (ushort)phnum);
        BinaryPrimitives.WriteUInt16LittleEndian(h[58..], 64);
        BinaryPrimitives.WriteUInt16LittleEndian(h[60..], (ushort)shnum);
        BinaryPrimitives.WriteUInt16LittleEndian(h[62..], 2);
        for (int i = 0; i < phnum; i++)
        {
            Segment s = segments[i];
            Span<byte> p = h.Slice(phoff + i * 56, 56);
            p.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(p, s.Type);
            BinaryPrimitives.WriteUInt32LittleEndian(p[4..], 5);
            BinaryPrimitives.WriteUInt64LittleEndian(p[8..], s.Offset);
            BinaryPrimitives.WriteUInt64LittleEndian(p[16..], s.Vaddr);
            BinaryPrimitives.WriteUInt64LittleEndian(p[24..], s.Vaddr & 0x7FFF_FFFF);
            BinaryPrimitives.WriteUInt64LittleEndian(p[32..], (ulong)s.Bytes.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(p[40..], Math.Max(s.MemSize, (ulong)s.Bytes.Length));
            BinaryPrimitives.WriteUInt64LittleEndian(p[48..], s.Align);
            s.Bytes.CopyTo(elf, (int)s.Offset);
        }
        return elf;
    }

    /// <summary>One ELF note (name padded to 4, descriptor padded to 4).</summary>
    public static byte[] Note(string name, uint type, byte[] desc)
    {
        byte[] n = Encoding.ASCII.GetBytes(name + "\0");
        byte[] note = new byte[12 + ((n.Length + 3) & ~3) + ((desc.Length + 3) & ~3)];
        BinaryPrimitives.WriteUInt32LittleEndian(note, (uint)n.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(note.AsSpan(4), (uint)desc.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(note.AsSpan(8), type);
        n.CopyTo(note, 12);
        desc.CopyTo(note, 12 + ((n.Length + 3) & ~3));
        return note;
    }
}

/// <summary>tools/Build/LinuxImage.cs: Lz4Legacy.</summary>
public class Lz4LegacyTests
{
    [Theory]
    [InlineData(1, 1 << 20)]
    [InlineData(100_000, 1 << 20)]
    [InlineData(300_000, 65_536)]
    [InlineData(65_536, 65_536)]
    public void DecodesBlocksUpToTheSizeTrailer(int length, int blockSize)
    {
        byte[] data = Synthetic.Data(length, length);
        byte[] stream = Synthetic.Lz4Legacy(data, blockSize);
        Assert.Equal(data, Lz4Legacy.Decode(stream, out int consumed));
        Assert.Equal(stream.Length - 4, consumed);                     // stopped at the size trailer
    }

    [Fact]
    public void DecodesAFullEightMebibyteBlock()
    {
        byte[] data = Synthetic.Data((8 << 20) + 1000, 8);
        byte[] stream = Synthetic.Lz4Legacy(data, 8 << 20);
        Assert.Equal(data, Lz4Legacy.Decode(stream, out _));
    }

    [Fact]
    public void StopsWhenFewerThanFourBytesAreLeft()
    {
        byte[] data = Synthetic.Data(5000, 1);
        byte[] stream = [.. Synthetic.Lz4Legacy(data, 4096, sizeTrailer: false), 0xFF, 0xFF];
        Assert.Equal(data, Lz4Legacy.Decode(stream, out int consumed));
        Assert.Equal(stream.Length - 2, consumed);
    }

    [Fact]
    public void ALengthLargerThanTheBoundEndsTheStream()
    {
        byte[] data = Synthetic.Data(5000, 2);
        using var s = new MemoryStream();
        s.Write(Synthetic.Lz4Legacy(data, 4096, sizeTrailer: false));
        s.Write(BitConverter.GetBytes((uint)Lz4Legacy.CompressBound(8 << 20) + 1));
        s.Write(new byte[64]);
        Assert.Equal(data, Lz4Legacy.Decode(s.ToArray(), out int consumed));
        Assert.Equal(s.Length - 68, consumed);
    }

    [Fact]
    public void AMagicBetweenBlocksStartsAnotherFrame()
    {
        byte[] a = Synthetic.Data(3000, 3), b = Synthetic.Data(7000, 4);
        byte[] stream = [.. Synthetic.Lz4Legacy(a, 4096, sizeTrailer: false), .. Synthetic.Lz4Legacy(b, 4096)];
        Assert.Equal([.. a, .. b], Lz4Legacy.Decode(stream, out _));
    }

    [Fact]
    public void BadStreamsAreRefused()
    {
        Assert.Throws<InvalidDataException>(() => Lz4Legacy.Decode(new byte[16], out _));                         // no magic
        Assert.Throws<InvalidDataException>(() => Lz4Legacy.Decode(BitConverter.GetBytes(0x184C2102u), out _));   // no block
        // One literal 'a' and then a match: a block must end with literals, so LZ4 refuses it.
        byte[] corrupt = [.. BitConverter.GetBytes(0x184C2102u), .. BitConverter.GetBytes(4u), 0x10, (byte)'a', 0x01, 0x00];
        Assert.Throws<InvalidDataException>(() => Lz4Legacy.Decode(corrupt, out _));
    }
}

/// <summary>tools/Build/LinuxImage.cs: BzImage and Vmlinux.</summary>
public class BzImageTests
{
    [Theory]
    [InlineData(0, 0x3A0)]          // setup_sects 0 means 4
    [InlineData(4, 0x3A0)]
    [InlineData(27, 0x4F5)]
    public void ThePayloadIsFoundThroughTheSetupHeader(byte setupSects, int payloadOffset)
    {
        byte[] payload = Synthetic.Data(777, setupSects);
        byte[] image = Synthetic.BzImage(payload, setupSects, payloadOffset);
        Assert.Equal(payload, BzImage.Payload(image).ToArray());
    }

    [Fact]
    public void BadImagesAreRefused()
    {
        byte[] image = Synthetic.BzImage([1, 2, 3], 4, 0x100);
        byte[] noMagic = (byte[])image.Clone();
        noMagic[0x202] = (byte)'X';
        Assert.Throws<InvalidDataException>(() => BzImage.Payload(noMagic));
        Assert.Throws<InvalidDataException>(() => BzImage.Payload(Synthetic.BzImage([1, 2, 3], 4, 0x100, protocol: 0x0207)));
        byte[] tooLong = (byte[])image.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(tooLong.AsSpan(0x24C), (uint)image.Length);
        Assert.Throws<InvalidDataException>(() => BzImage.Payload(tooLong));
    }

    [Fact]
    public void TheVmlinuxComesOutShrunkWithItsPvhEntry()
    {
        byte[] note = Synthetic.Note("Xen", 18, BitConverter.GetBytes(0x1000850u));
        byte[] elf = Synthetic.Elf(
        [
            new(ElfImage.PtLoad, 0x200000, Synthetic.Data(50_000, 9), 0xFFFFFFFF81000000),
            new(ElfImage.PtNote, 0x200000 + 40_000, note, 0xFFFFFFFF81000000 + 40_000),
        ]);
        byte[] payload = Synthetic.Lz4Legacy(elf, 1 << 20);
        byte[] image = Synthetic.BzImage(payload, 0, 0x3A0);
        var (vmlinux, entry, fullSize) = Vmlinux.FromBzImage(image);
        Assert.Equal(0x1000850ul, entry);
        Assert.Equal(elf.Length, fullSize);
        Assert.True(vmlinux.Length < 60_000, $"{vmlinux.Length} bytes");
        Assert.Equal(0x1000850ul, ElfImage.PvhEntry(vmlinux));
    }

    [Fact]
    public void AVmlinuxWithoutTheNoteOrWithABadTrailerIsRefused()
    {
        byte[] elf = Synthetic.Elf([new(ElfImage.PtLoad, 0x1000, Synthetic.Data(5000, 10), 0xFFFFFFFF81000000)]);
        Assert.Throws<InvalidDataException>(() => Vmlinux.FromBzImage(Synthetic.BzImage(Synthetic.Lz4Legacy(elf, 4096), 0, 0x100)));
        byte[] note = Synthetic.Note("Xen", 18, BitConverter.GetBytes(0x1000000u));
        byte[] withNote = Synthetic.Elf([new(ElfImage.PtNote, 0x1000, note, 0)]);
        byte[] payload = Synthetic.Lz4Legacy(withNote, 4096);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(payload.Length - 4), (uint)withNote.Length + 1);
        Assert.Throws<InvalidDataException>(() => Vmlinux.FromBzImage(Synthetic.BzImage(payload, 0, 0x100)));
        byte[] gzip = [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3];
        Assert.Throws<InvalidDataException>(() => Vmlinux.FromBzImage(Synthetic.BzImage(gzip, 0, 0x100)));
    }

    /// <summary>The module on disk is what the extraction gives for the bzImage on disk.</summary>
    [FactWithLinuxGuest("linux-vmlinux")]
    public void TheBuiltVmlinuxMatchesTheBuiltBzImage()
    {
        var (vmlinux, entry, _) = Vmlinux.FromBzImage(File.ReadAllBytes(Host.LinuxModule("linux")));
        Assert.Equal(vmlinux, File.ReadAllBytes(Host.LinuxModule("linux-vmlinux")));
        Assert.InRange(entry, 0x100000ul, 0xFFFF_FFFFul);
    }
}

/// <summary>tools/Build/LinuxImage.cs: ElfImage.</summary>
public class ElfImageTests
{
    private static ulong U64(byte[] b, int at) => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(at));
    private static ushort U16(byte[] b, int at) => BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(at));

    [Fact]
    public void ShrinkKeepsOnlyLoadAndNoteBytesAtCongruentOffsets()
    {
        byte[] text = Synthetic.Data(0x3000, 1), data = Synthetic.Data(0x1234, 2), percpu = Synthetic.Data(0x800, 3);
        byte[] note = [.. Synthetic.Note("GNU", 3, [1, 2, 3, 4]), .. Synthetic.Note("Xen", 18, BitConverter.GetBytes(0x1000850u))];
        byte[] stack = [];
        byte[] elf = Synthetic.Elf(
        [
            new(ElfImage.PtLoad, 0x200000, text, 0xFFFFFFFF81000000, Align: 0x200000),
            new(ElfImage.PtLoad, 0x400000, data, 0xFFFFFFFF82000000, MemSize: 0x10000, Align: 0x200000),
            new(ElfImage.PtLoad, 0x500000, percpu, 0, Align: 0x200000),
            new(ElfImage.PtNote, 0x200000 + 0x2000, note, 0xFFFFFFFF81002000, Align: 4),     // inside the first PT_LOAD
            new(0x6474E551, 0, stack, 0, Align: 0x10),                                        // PT_GNU_STACK
            new(6, 0x600000, new byte[16], 0),                                                 // PT_PHDR-like: not kept
        ]);
        byte[] shrunk = ElfImage.Shrink(elf);

        Assert.True(shrunk.Length < 0x8000, $"{shrunk.Length:X} bytes");
        Assert.Equal(elf.AsSpan(0, 0x20).ToArray(), shrunk.AsSpan(0, 0x20).ToArray());   // ident, type, machine, entry
        Assert.Equal(64ul, U64(shrunk, 0x20));                                             // e_phoff
        Assert.Equal(0ul, U64(shrunk, 0x28));                                              // e_shoff
        Assert.Equal(0, U16(shrunk, 0x3C));                                                // e_shnum
        Assert.Equal(0, U16(shrunk, 0x3E));                                                // e_shstrndx
        Assert.Equal(6, U16(shrunk, 0x38));
        byte[][] bytes = [text, data, percpu, note];
        for (int i = 0; i < 6; i++)
        {
            int p = 64 + i * 56;
            // Everything but p_offset and p_filesz is the original's.
            Assert.Equal(elf.AsSpan(p, 8).ToArray(), shrunk.AsSpan(p, 8).ToArray());
            Assert.Equal(elf.AsSpan(p + 16, 16).ToArray(), shrunk.AsSpan(p + 16, 16).ToArray());
            Assert.Equal(elf.AsSpan(p + 40, 16).ToArray(), shrunk.AsSpan(p + 40, 16).ToArray());
            ulong offset = U64(shrunk, p + 8), size = U64(shrunk, p + 32);
            if (i < 4)
            {
                Assert.Equal(U64(elf, p + 8) % 0x1000, offset % 0x1000);
                Assert.Equal((ulong)bytes[i].Length, size);
                Assert.Equal(elf.AsSpan((int)U64(elf, p + 8), (int)size).ToArray(), shrunk.AsSpan((int)offset, (int)size).ToArray());
            }
            else
                Assert.Equal((0ul, 0ul), (offset, size));
        }
        // The note inside the first PT_LOAD is kept once, where that segment's bytes are.
        Assert.Equal(U64(shrunk, 64 + 8) + 0x2000, U64(shrunk, 64 + 3 * 56 + 8));
        Assert.Equal(0x1000850ul, ElfImage.PvhEntry(shrunk));
        Assert.Equal(shrunk, ElfImage.Shrink(shrunk));                                     // already as small as it gets
    }

    [Fact]
    public void ThePvhEntryIsReadFromA4Or8ByteDescriptor()
    {
        byte[] four = Synthetic.Elf([new(ElfImage.PtNote, 0x100, Synthetic.Note("Xen", 18, BitConverter.GetBytes(0x1234u)), 0)]);
        Assert.Equal(0x1234ul, ElfImage.PvhEntry(four));
        byte[] eight = Synthetic.Elf([new(ElfImage.PtNote, 0x100,
            [.. Synthetic.Note("Linux", 18, BitConverter.GetBytes(0x99u)), .. Synthetic.Note("Xen", 18, BitConverter.GetBytes(0x1_0000_5678ul))], 0)]);
        Assert.Equal(0x1_0000_5678ul, ElfImage.PvhEntry(eight));
        byte[] none = Synthetic.Elf([new(ElfImage.PtNote, 0x100, Synthetic.Note("Xen", 17, BitConverter.GetBytes(1u)), 0)]);
        Assert.Null(ElfImage.PvhEntry(none));
        byte[] odd = Synthetic.Elf([new(ElfImage.PtNote, 0x100, Synthetic.Note("Xen", 18, [1, 2]), 0)]);
        Assert.Throws<InvalidDataException>(() => ElfImage.PvhEntry(odd));
    }

    [Fact]
    public void BadFilesAreRefused()
    {
        Assert.Throws<InvalidDataException>(() => ElfImage.Shrink(new byte[100]));
        byte[] elf = Synthetic.Elf([new(ElfImage.PtLoad, 0x100, new byte[16], 0)]);
        byte[] elf32 = (byte[])elf.Clone();
        elf32[4] = 1;
        Assert.Throws<InvalidDataException>(() => ElfImage.Shrink(elf32));
        byte[] past = (byte[])elf.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(past.AsSpan(64 + 32), (ulong)elf.Length);      // p_filesz past the end
        Assert.Throws<InvalidDataException>(() => ElfImage.Shrink(past));
        byte[] table = (byte[])elf.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(table.AsSpan(0x38), 60000);                       // e_phnum past the end
        Assert.Throws<InvalidDataException>(() => ElfImage.Shrink(table));
    }
}
