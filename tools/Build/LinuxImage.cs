using System.Buffers.Binary;
using System.Text;
using K4os.Compression.LZ4;

namespace Tandem.Build;

/// <summary>
/// LZ4's "legacy" frame, the one the Linux kernel uses for an LZ4-compressed bzImage payload: the
/// magic 0x184C2102 (little-endian), then blocks, each a little-endian u32 compressed length and an
/// LZ4 block that decompresses to at most 8 MiB. The stream ends at a length that cannot be a block
/// (larger than LZ4's bound for 8 MiB, or running past the input; the kernel's own trailer, the
/// uncompressed size, is such a length) or when fewer than 4 bytes are left. A magic where a length
/// is expected starts a further frame, as in the kernel's decompressor.
/// </summary>
internal static class Lz4Legacy
{
    public const uint Magic = 0x184C2102;
    public const int MaxBlockOutput = 8 << 20;

    /// <summary>LZ4_compressBound: the largest compressed size of <paramref name="n"/> bytes.</summary>
    public static int CompressBound(int n) => n + n / 255 + 16;

    public static bool IsLegacy(ReadOnlySpan<byte> data) => data.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(data) == Magic;

    /// <summary>
    /// Decodes the stream; <paramref name="consumed"/> is where it ended (the offset of the length
    /// that was not a block, or of the leftover bytes). Throws <see cref="InvalidDataException"/> for
    /// a missing magic, a bad block, or a stream with no block.
    /// </summary>
    public static byte[] Decode(ReadOnlySpan<byte> data, out int consumed)
    {
        if (!IsLegacy(data))
            throw new InvalidDataException("not an LZ4 legacy stream (no magic 0x184C2102)");
        using var output = new MemoryStream();
        byte[] block = new byte[MaxBlockOutput];
        int at = 4, blocks = 0;
        int bound = CompressBound(MaxBlockOutput);
        while (data.Length - at >= 4)
        {
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(data[at..]);
            if (length == Magic)
            {
                at += 4;
                continue;
            }
            if (length == 0 || length > (uint)bound || length > (uint)(data.Length - at - 4))
                break;
            int n = LZ4Codec.Decode(data.Slice(at + 4, (int)length), block);
            if (n < 0)
                throw new InvalidDataException($"LZ4 block {blocks} at offset {at} ({length} bytes) does not decode");
            output.Write(block, 0, n);
            at += 4 + (int)length;
            blocks++;
        }
        if (blocks == 0)
            throw new InvalidDataException("LZ4 legacy stream with no block");
        consumed = at;
        return output.ToArray();
    }
}

/// <summary>The x86 bzImage's setup header (Documentation/arch/x86/boot.rst): where the compressed kernel is.</summary>
internal static class BzImage
{
    /// <summary>
    /// The compressed payload: <c>payload_length</c> (0x24C) bytes at <c>payload_offset</c> (0x248),
    /// counted from the protected-mode code, which starts at (setup_sects + 1) * 512 (setup_sects at
    /// 0x1F1; 0 means 4). Needs "HdrS" at 0x202 and boot protocol 2.08 or later.
    /// </summary>
    public static ReadOnlyMemory<byte> Payload(byte[] image)
    {
        if (image.Length < 0x250 || Encoding.ASCII.GetString(image, 0x202, 4) != "HdrS")
            throw new InvalidDataException("not a bzImage (no \"HdrS\" at 0x202)");
        int protocol = BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(0x206));
        if (protocol < 0x208)
            throw new InvalidDataException($"boot protocol {protocol >> 8}.{protocol & 0xFF:D2} has no payload fields (2.08 or later needed)");
        int setupSects = image[0x1F1] == 0 ? 4 : image[0x1F1];
        long code = (setupSects + 1L) * 512;
        long offset = code + BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x248));
        long length = BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x24C));
        if (length == 0 || offset + length > image.Length)
            throw new InvalidDataException($"payload (offset 0x{offset:X}, length 0x{length:X}) outside the {image.Length}-byte image");
        return image.AsMemory((int)offset, (int)length);
    }
}

/// <summary>ELF64 (little-endian) helpers for the vmlinux that the PVH entry boots.</summary>
internal static class ElfImage
{
    public const uint PtLoad = 1;
    public const uint PtNote = 4;
    public const uint XenElfNotePhys32Entry = 18;

    private const int EhdrSize = 64;
    private const int PhdrSize = 56;

    private readonly record struct Phdr(uint Type, uint Flags, ulong Offset, ulong Vaddr, ulong Paddr, ulong FileSize, ulong MemSize, ulong Align);

    private static Phdr ReadPhdr(ReadOnlySpan<byte> p) => new(
        BinaryPrimitives.ReadUInt32LittleEndian(p), BinaryPrimitives.ReadUInt32LittleEndian(p[4..]),
        BinaryPrimitives.ReadUInt64LittleEndian(p[8..]), BinaryPrimitives.ReadUInt64LittleEndian(p[16..]),
        BinaryPrimitives.ReadUInt64LittleEndian(p[24..]), BinaryPrimitives.ReadUInt64LittleEndian(p[32..]),
        BinaryPrimitives.ReadUInt64LittleEndian(p[40..]), BinaryPrimitives.ReadUInt64LittleEndian(p[48..]));

    /// <summary>The program headers of an ELF64 little-endian file, checked against its size.</summary>
    private static List<Phdr> ProgramHeaders(ReadOnlySpan<byte> elf, out ulong phoff, out int phentsize)
    {
        if (elf.Length < EhdrSize || !elf[..4].SequenceEqual((ReadOnlySpan<byte>)[0x7F, (byte)'E', (byte)'L', (byte)'F']))
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("not a little-endian ELF64 file");
        phoff = BinaryPrimitives.ReadUInt64LittleEndian(elf[0x20..]);
        phentsize = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x36..]);
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x38..]);
        if (phentsize < PhdrSize || phoff > (ulong)elf.Length || (ulong)phnum * (ulong)phentsize > (ulong)elf.Length - phoff)
            throw new InvalidDataException("the program header table is outside the file");
        var list = new List<Phdr>(phnum);
        for (int i = 0; i < phnum; i++)
        {
            Phdr h = ReadPhdr(elf[(int)(phoff + (ulong)(i * phentsize))..]);
            if (h.FileSize > 0 && (h.Offset > (ulong)elf.Length || h.FileSize > (ulong)elf.Length - h.Offset))
                throw new InvalidDataException($"program header {i}: its bytes (offset 0x{h.Offset:X}, size 0x{h.FileSize:X}) are outside the file");
            list.Add(h);
        }
        return list;
    }

    /// <summary>
    /// The file without what a loader does not read: the ELF header, then the program header table,
    /// then only the bytes of the PT_LOAD and PT_NOTE segments (ranges that overlap are kept once,
    /// each placed at the same offset modulo 4096 as before, so a segment's offset and address stay
    /// congruent modulo the page size). Section headers are dropped (e_shoff, e_shnum, e_shstrndx = 0).
    /// Other program headers keep their entry: remapped if their bytes lie in a kept range, else
    /// given offset 0 and file size 0.
    /// </summary>
    public static byte[] Shrink(ReadOnlySpan<byte> elf)
    {
        List<Phdr> headers = ProgramHeaders(elf, out ulong phoff, out int phentsize);
        // The kept ranges, merged where they overlap or touch.
        var merged = new List<(ulong Start, ulong End)>();
        foreach (Phdr h in headers.Where(h => h.Type is PtLoad or PtNote && h.FileSize > 0).OrderBy(h => h.Offset))
        {
            if (merged.Count > 0 && h.Offset <= merged[^1].End)
                merged[^1] = (merged[^1].Start, Math.Max(merged[^1].End, h.Offset + h.FileSize));
            else
                merged.Add((h.Offset, h.Offset + h.FileSize));
        }
        // Each at the next offset congruent to its old one modulo 4096.
        var placed = new List<(ulong Start, ulong End, ulong NewStart)>();
        ulong cursor = (ulong)(EhdrSize + headers.Count * phentsize);
        foreach (var (start, end) in merged)
        {
            ulong newStart = cursor + ((start - cursor) & 0xFFF);
            placed.Add((start, end, newStart));
            cursor = newStart + (end - start);
        }
        byte[] output = new byte[checked((int)cursor)];
        elf[..EhdrSize].CopyTo(output);
        BinaryPrimitives.WriteUInt64LittleEndian(output.AsSpan(0x20), EhdrSize);     // e_phoff
        BinaryPrimitives.WriteUInt64LittleEndian(output.AsSpan(0x28), 0);            // e_shoff
        BinaryPrimitives.WriteUInt16LittleEndian(output.AsSpan(0x3C), 0);            // e_shnum
        BinaryPrimitives.WriteUInt16LittleEndian(output.AsSpan(0x3E), 0);            // e_shstrndx
        foreach (var (start, end, newStart) in placed)
            elf[(int)start..(int)end].CopyTo(output.AsSpan((int)newStart));
        for (int i = 0; i < headers.Count; i++)
        {
            Phdr h = headers[i];
            Span<byte> p = output.AsSpan(EhdrSize + i * phentsize, phentsize);
            elf.Slice((int)phoff + i * phentsize, phentsize).CopyTo(p);
            ulong offset = 0, size = 0;
            foreach (var (start, end, newStart) in placed)
            {
                if (h.FileSize > 0 && h.Offset >= start && h.Offset + h.FileSize <= end)
                {
                    offset = newStart + (h.Offset - start);
                    size = h.FileSize;
                    break;
                }
            }
            BinaryPrimitives.WriteUInt64LittleEndian(p[8..], offset);
            BinaryPrimitives.WriteUInt64LittleEndian(p[32..], size);
        }
        return output;
    }

    /// <summary>
    /// The PVH entry: the descriptor (4 or 8 bytes) of the note named "Xen" of type 18
    /// (XEN_ELFNOTE_PHYS32_ENTRY) in a PT_NOTE segment, or null when there is none.
    /// </summary>
    public static ulong? PvhEntry(ReadOnlySpan<byte> elf)
    {
        foreach (Phdr h in ProgramHeaders(elf, out _, out _).Where(h => h.Type == PtNote))
        {
            ReadOnlySpan<byte> notes = elf.Slice((int)h.Offset, (int)h.FileSize);
            int at = 0;
            while (notes.Length - at >= 12)
            {
                uint namesz = BinaryPrimitives.ReadUInt32LittleEndian(notes[at..]);
                uint descsz = BinaryPrimitives.ReadUInt32LittleEndian(notes[(at + 4)..]);
                uint type = BinaryPrimitives.ReadUInt32LittleEndian(notes[(at + 8)..]);
                long nameAt = at + 12, descAt = nameAt + Align4(namesz), next = descAt + Align4(descsz);
                if (next > notes.Length)
                    break;
                ReadOnlySpan<byte> name = notes.Slice((int)nameAt, (int)namesz);
                if (type == XenElfNotePhys32Entry && name.SequenceEqual("Xen\0"u8))
                {
                    ReadOnlySpan<byte> desc = notes.Slice((int)descAt, (int)descsz);
                    return descsz switch
                    {
                        4 => BinaryPrimitives.ReadUInt32LittleEndian(desc),
                        8 => BinaryPrimitives.ReadUInt64LittleEndian(desc),
                        _ => throw new InvalidDataException($"the Xen PHYS32_ENTRY note has a {descsz}-byte descriptor (4 or 8 expected)"),
                    };
                }
                at = (int)next;
            }
        }
        return null;
    }

    private static long Align4(uint n) => (n + 3L) & ~3L;
}

/// <summary>The uncompressed kernel inside a bzImage, as the Linux guest's <c>linux-vmlinux</c> module.</summary>
internal static class Vmlinux
{
    /// <summary>
    /// The bzImage's LZ4 legacy payload decoded and checked against the size the kernel's build
    /// appends to it (le32), then shrunk (<see cref="ElfImage.Shrink"/>); with its PVH entry (the
    /// Xen note of type 18, which must survive the shrinking) and the size before shrinking.
    /// </summary>
    public static (byte[] Image, ulong Entry, long FullSize) FromBzImage(byte[] bzImage)
    {
        ReadOnlySpan<byte> payload = BzImage.Payload(bzImage).Span;
        if (!Lz4Legacy.IsLegacy(payload))
            throw new InvalidDataException($"the payload is not LZ4 legacy (it starts {Convert.ToHexString(payload[..Math.Min(4, payload.Length)])})");
        byte[] full = Lz4Legacy.Decode(payload, out int consumed);
        if (consumed != payload.Length - 4 || BinaryPrimitives.ReadUInt32LittleEndian(payload[^4..]) != (uint)full.Length)
            throw new InvalidDataException($"the LZ4 stream ends at {consumed} of {payload.Length} bytes with {full.Length} bytes out, which the payload's size trailer does not confirm");
        ulong entry = ElfImage.PvhEntry(full) ?? throw new InvalidDataException("the vmlinux has no Xen ELF note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY)");
        byte[] shrunk = ElfImage.Shrink(full);
        if (ElfImage.PvhEntry(shrunk) != entry)
            throw new InvalidDataException("the shrunk vmlinux lost its PVH entry note");
        return (shrunk, entry, full.Length);
    }
}
