using System.Buffers.Binary;
using System.Text;

namespace Tandem.StubGen.Elf;

/// <summary>
/// Serialises sections, symbols and relocations as an ELF64 little-endian x86-64 relocatable object
/// (ET_REL), the subset ld.lld needs: content sections, one .rela.X per section with relocations,
/// .symtab (locals first, sh_info = first global), .strtab, .shstrtab. Layout follows the System V
/// gABI, chapter 4 ("Object Files"), and the AMD64 psABI.
/// </summary>
internal static class ElfWriter
{
    private const int EhdrSize = 64, ShdrSize = 64, SymSize = 24, RelaSize = 24;
    private const uint ShtSymtab = 2, ShtStrtab = 3, ShtRela = 4;
    private const ulong ShfInfoLink = 0x40;
    private const byte SttSection = 3, StbLocal = 0, StbGlobal = 1;

    private sealed record SectionHeader(
        string Name, uint Type, ulong Flags, ulong Offset, ulong Size, uint Link, uint Info, ulong Align, ulong EntSize);

    private sealed record SymbolEntry(string Name, byte Info, ushort Shndx, ulong Value, ulong Size);

    public static byte[] Write(IReadOnlyList<Section> allSections, IReadOnlyList<DefinedSymbol> symbols)
    {
        // Drop sections that ended up empty (and hold no symbols), so readelf stays readable.
        var sections = allSections
            .Where(s => s.Size != 0 || symbols.Any(sym => sym.Section == s))
            .ToList();
        foreach (var sym in symbols)
            if (!sections.Contains(sym.Section))
                throw new InvalidOperationException($"symbol {sym.Name} is in a dropped section");

        // Section indices: 0 = null, then the content sections in order.
        var sectionIndex = new Dictionary<Section, ushort>();
        for (int i = 0; i < sections.Count; i++)
            sectionIndex[sections[i]] = (ushort)(i + 1);

        // Symbol table: null, one STT_SECTION per content section, defined locals, defined globals,
        // then undefined globals (names relocations use but nobody here defines, e.g. tandem_main).
        var syms = new List<SymbolEntry> { new("", 0, 0, 0, 0) };
        foreach (var s in sections)
            syms.Add(new("", (byte)((StbLocal << 4) | SttSection), sectionIndex[s], 0, 0));
        foreach (var d in symbols.Where(d => !d.Global))
            syms.Add(new(d.Name, (byte)((StbLocal << 4) | (byte)d.Kind), sectionIndex[d.Section], d.Value, d.Size));
        int firstGlobal = syms.Count;
        foreach (var d in symbols.Where(d => d.Global))
            syms.Add(new(d.Name, (byte)((StbGlobal << 4) | (byte)d.Kind), sectionIndex[d.Section], d.Value, d.Size));
        var symbolIndex = new Dictionary<string, int>();
        for (int i = 1; i < syms.Count; i++)
            if (syms[i].Name.Length != 0 && !symbolIndex.TryAdd(syms[i].Name, i))
                throw new InvalidOperationException($"symbol {syms[i].Name} defined twice");
        foreach (var s in sections)
            foreach (var r in s.Relocations)
                if (!symbolIndex.ContainsKey(r.Symbol))
                {
                    symbolIndex[r.Symbol] = syms.Count;
                    syms.Add(new(r.Symbol, (byte)(StbGlobal << 4), 0, 0, 0)); // SHN_UNDEF, STT_NOTYPE
                }

        var strtab = new StringTable();
        var shstrtab = new StringTable();
        var file = new MemoryStream();
        file.Write(new byte[EhdrSize]);
        var headers = new List<SectionHeader> { new("", 0, 0, 0, 0, 0, 0, 0, 0) };

        // Content sections.
        foreach (var s in sections)
        {
            ulong offset = AlignStream(file, Math.Max(s.Alignment, 1));
            if (!s.IsNobits)
                file.Write(s.Data.ToArray());
            headers.Add(new(s.Name, s.Type, s.Flags, offset, s.Size, 0, 0, s.Alignment, 0));
        }

        // Symbol table index is known in advance: after content + rela sections + .note.GNU-stack.
        int relaCount = sections.Count(s => s.Relocations.Count != 0);
        uint symtabIndex = (uint)(1 + sections.Count + relaCount + 1);

        foreach (var s in sections.Where(s => s.Relocations.Count != 0))
        {
            ulong offset = AlignStream(file, 8);
            foreach (var r in s.Relocations.OrderBy(r => r.Offset))
            {
                var e = new byte[RelaSize].AsSpan();
                BinaryPrimitives.WriteUInt64LittleEndian(e, r.Offset);
                BinaryPrimitives.WriteUInt64LittleEndian(e[8..], ((ulong)symbolIndex[r.Symbol] << 32) | (uint)r.Type);
                BinaryPrimitives.WriteInt64LittleEndian(e[16..], r.Addend);
                file.Write(e);
            }
            headers.Add(new(".rela" + s.Name, ShtRela, ShfInfoLink, offset, (ulong)(s.Relocations.Count * RelaSize),
                symtabIndex, sectionIndex[s], 8, RelaSize));
        }

        // Empty .note.GNU-stack: tells GNU-compatible linkers the stack need not be executable.
        headers.Add(new(".note.GNU-stack", Section.ShtProgbits, 0, (ulong)file.Length, 0, 0, 0, 1, 0));

        {
            ulong offset = AlignStream(file, 8);
            foreach (var sym in syms)
            {
                var e = new byte[SymSize].AsSpan();
                BinaryPrimitives.WriteUInt32LittleEndian(e, strtab.Add(sym.Name));
                e[4] = sym.Info;
                e[5] = 0; // st_other: STV_DEFAULT
                BinaryPrimitives.WriteUInt16LittleEndian(e[6..], sym.Shndx);
                BinaryPrimitives.WriteUInt64LittleEndian(e[8..], sym.Value);
                BinaryPrimitives.WriteUInt64LittleEndian(e[16..], sym.Size);
                file.Write(e);
            }
            if (headers.Count != symtabIndex)
                throw new InvalidOperationException("symtab index mismatch");
            headers.Add(new(".symtab", ShtSymtab, 0, offset, (ulong)(syms.Count * SymSize),
                symtabIndex + 1, (uint)firstGlobal, 8, SymSize));
        }
        {
            ulong offset = (ulong)file.Length;
            var bytes = strtab.ToArray();
            file.Write(bytes);
            headers.Add(new(".strtab", ShtStrtab, 0, offset, (ulong)bytes.Length, 0, 0, 1, 0));
        }
        {
            foreach (var h in headers)
                shstrtab.Add(h.Name);
            shstrtab.Add(".shstrtab");
            ulong offset = (ulong)file.Length;
            var bytes = shstrtab.ToArray();
            file.Write(bytes);
            headers.Add(new(".shstrtab", ShtStrtab, 0, offset, (ulong)bytes.Length, 0, 0, 1, 0));
        }

        ulong shoff = AlignStream(file, 8);
        foreach (var h in headers)
        {
            var e = new byte[ShdrSize].AsSpan();
            BinaryPrimitives.WriteUInt32LittleEndian(e, h.Name.Length == 0 ? 0 : shstrtab.Add(h.Name));
            BinaryPrimitives.WriteUInt32LittleEndian(e[4..], h.Type);
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], h.Flags);
            BinaryPrimitives.WriteUInt64LittleEndian(e[16..], 0); // sh_addr: 0 in relocatable files
            BinaryPrimitives.WriteUInt64LittleEndian(e[24..], h.Offset);
            BinaryPrimitives.WriteUInt64LittleEndian(e[32..], h.Size);
            BinaryPrimitives.WriteUInt32LittleEndian(e[40..], h.Link);
            BinaryPrimitives.WriteUInt32LittleEndian(e[44..], h.Info);
            BinaryPrimitives.WriteUInt64LittleEndian(e[48..], h.Align);
            BinaryPrimitives.WriteUInt64LittleEndian(e[56..], h.EntSize);
            file.Write(e);
        }

        // ELF header (gABI "ELF Header").
        var image = file.ToArray();
        Span<byte> eh = image.AsSpan(0, EhdrSize);
        eh[0] = 0x7F; eh[1] = (byte)'E'; eh[2] = (byte)'L'; eh[3] = (byte)'F';
        eh[4] = 2;                                                  // ELFCLASS64
        eh[5] = 1;                                                  // ELFDATA2LSB
        eh[6] = 1;                                                  // EV_CURRENT
        eh[7] = 0;                                                  // ELFOSABI_NONE
        BinaryPrimitives.WriteUInt16LittleEndian(eh[16..], 1);      // e_type = ET_REL
        BinaryPrimitives.WriteUInt16LittleEndian(eh[18..], 62);     // e_machine = EM_X86_64
        BinaryPrimitives.WriteUInt32LittleEndian(eh[20..], 1);      // e_version
        BinaryPrimitives.WriteUInt64LittleEndian(eh[40..], shoff);  // e_shoff
        BinaryPrimitives.WriteUInt16LittleEndian(eh[52..], EhdrSize);
        BinaryPrimitives.WriteUInt16LittleEndian(eh[58..], ShdrSize);
        BinaryPrimitives.WriteUInt16LittleEndian(eh[60..], (ushort)headers.Count);
        BinaryPrimitives.WriteUInt16LittleEndian(eh[62..], (ushort)(headers.Count - 1)); // .shstrtab is last
        return image;
    }

    private static ulong AlignStream(MemoryStream s, ulong alignment)
    {
        while ((ulong)s.Length % alignment != 0)
            s.WriteByte(0);
        return (ulong)s.Length;
    }

    /// <summary>A string table: NUL first, each distinct string once.</summary>
    private sealed class StringTable
    {
        private readonly MemoryStream _bytes = new();
        private readonly Dictionary<string, uint> _offsets = new();

        public StringTable() => _bytes.WriteByte(0);

        public uint Add(string s)
        {
            if (s.Length == 0)
                return 0;
            if (_offsets.TryGetValue(s, out uint o))
                return o;
            o = (uint)_bytes.Length;
            _bytes.Write(Encoding.ASCII.GetBytes(s));
            _bytes.WriteByte(0);
            _offsets[s] = o;
            return o;
        }

        public byte[] ToArray() => _bytes.ToArray();
    }
}
