using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using ELFSharp;
using ELFSharp.ELF;
using ELFSharp.ELF.Sections;
using Tandem.StubGen.Elf;
using Xunit;
using ElfSection = ELFSharp.ELF.Sections.Section<ulong>;
using ElfSymbols = ELFSharp.ELF.Sections.SymbolTable<ulong>;
using Section = Tandem.StubGen.Elf.Section;

namespace Tandem.StubGen.Tests;

/// <summary>
/// The objects tools/StubGen/Elf/ElfWriter.cs writes, read back by readers that share nothing with
/// it: ELFSharp (header, sections, symbols; the RELA entries decoded here from the section bytes,
/// which ELFSharp leaves raw) and, where installed, llvm-readelf, whose listing must name the same
/// symbols and relocations. One object is small and built by hand so every value is known; the
/// other is the real stubs.o (StubImage.BuildObject).
/// </summary>
public sealed partial class ElfRoundTripTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tandem-stubgen-elf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A symbol as read back: its index in .symtab and the section it points at (null: SHN_UNDEF).</summary>
    private sealed record Sym(int Index, string Name, ulong Value, ulong Size, SymbolType Type, SymbolBinding Binding, string? Section);

    /// <summary>One RELA entry as read back, with its symbol's name.</summary>
    private sealed record Rela(string Section, ulong Offset, uint Type, string Symbol, long Addend);

    private sealed record ReadBack(ELF<ulong> Elf, List<ElfSection> Sections, List<Sym> Symbols, List<Rela> Relocations);

    /// <summary>
    /// The hand-built object: call extern_fn (PLT32, addend -4) and ret in .text; a 64-bit pointer to
    /// entry + 0x10 and a counter in .data; a 4 KiB-aligned buffer in .bss; an empty .rodata (dropped).
    /// </summary>
    private static byte[] HandBuiltObject()
    {
        var text = new Section(".text", Section.ShtProgbits, Section.ShfAlloc | Section.ShfExecInstr, 0xCC);
        var rodata = new Section(".rodata", Section.ShtProgbits, Section.ShfAlloc, 0);
        var data = new Section(".data", Section.ShtProgbits, Section.ShfAlloc | Section.ShfWrite, 0);
        var bss = new Section(".bss", Section.ShtNobits, Section.ShfAlloc | Section.ShfWrite, 0);
        text.Align(16);
        text.Append([0xE8, 0, 0, 0, 0, 0xC3]);
        text.Relocations.Add(new Relocation(1, RelocType.Plt32, "extern_fn", -4));
        data.Align(8);
        data.Append([0, 0, 0, 0, 0, 0, 0, 0, 0x2A, 0, 0, 0]);
        data.Relocations.Add(new Relocation(0, RelocType.Abs64, "entry", 0x10));
        bss.Align(4096);
        bss.Reserve(0x100);
        var symbols = new List<DefinedSymbol>
        {
            new("entry", text, 0, 6, SymbolKind.Function, Global: true),
            new("after_call", text, 5, 0, SymbolKind.Label, Global: false),
            new("table", data, 0, 8, SymbolKind.Object, Global: false),
            new("counter", data, 8, 4, SymbolKind.Object, Global: true),
            new("buffer", bss, 0, 0x100, SymbolKind.Object, Global: true),
        };
        return ElfWriter.Write([text, rodata, data, bss], symbols);
    }

    private string Save(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static ReadBack Read(string path)
    {
        Assert.Equal(Class.Bit64, ELFReader.CheckELFType(path));
        ELF<ulong> elf = ELFReader.Load<ulong>(path);
        List<ElfSection> sections = elf.Sections.ToList();
        ElfSymbols symtab = Assert.Single(elf.GetSections<ElfSymbols>());
        var symbols = symtab.Entries
            .Select((e, i) => new Sym(i, e.Name, e.Value, e.Size, e.Type, e.Binding,
                e.PointedSectionIndex == 0 ? null : sections[e.PointedSectionIndex].Name))
            .ToList();
        var relocations = new List<Rela>();
        foreach (ElfSection rela in sections.Where(s => s.Type == SectionType.RelocationAddends))
        {
            Assert.StartsWith(".rela", rela.Name);
            Assert.Equal(24UL, rela.EntrySize);
            byte[] bytes = rela.GetContents();
            Assert.Equal(0, bytes.Length % 24);
            for (int at = 0; at < bytes.Length; at += 24)
            {
                ulong info = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(at + 8));
                int symbol = (int)(info >> 32);
                Assert.InRange(symbol, 1, symbols.Count - 1);
                relocations.Add(new Rela(rela.Name[".rela".Length..], BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(at)),
                    (uint)info, symbols[symbol].Name, BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(at + 16))));
            }
        }
        return new ReadBack(elf, sections, symbols, relocations);
    }

    [Fact]
    public void AHandBuiltObjectReadsBackWithElfSharp()
    {
        ReadBack r = Read(Save("hand.o", HandBuiltObject()));
        using ELF<ulong> elf = r.Elf;

        Assert.Equal(Endianess.LittleEndian, elf.Endianess);
        Assert.Equal(FileType.Relocatable, elf.Type);
        Assert.Equal(Machine.AMD64, elf.Machine);
        Assert.False(elf.HasSegmentHeader);

        // The empty .rodata is gone; one .rela per section with relocations, after the content.
        Assert.Equal(["", ".text", ".data", ".bss", ".rela.text", ".rela.data", ".note.GNU-stack", ".symtab", ".strtab", ".shstrtab"],
            r.Sections.Select(s => s.Name));
        ElfSection text = r.Sections[1], data = r.Sections[2], bss = r.Sections[3];
        Assert.Equal((SectionType.ProgBits, SectionFlags.Allocatable | SectionFlags.Executable, 16UL), (text.Type, text.Flags, text.Alignment));
        Assert.Equal(new byte[] { 0xE8, 0, 0, 0, 0, 0xC3 }, text.GetContents());
        Assert.Equal((SectionType.ProgBits, SectionFlags.Allocatable | SectionFlags.Writable, 8UL), (data.Type, data.Flags, data.Alignment));
        Assert.Equal(new byte[] { 0, 0, 0, 0, 0, 0, 0, 0, 0x2A, 0, 0, 0 }, data.GetContents());
        Assert.Equal((SectionType.NoBits, 0x100UL, 4096UL), (bss.Type, bss.Size, bss.Alignment));
        Assert.Equal(SectionType.ProgBits, r.Sections[6].Type);
        Assert.Equal(0UL, r.Sections[6].Size);
        Assert.Equal(SectionType.StringTable, r.Sections[8].Type);

        // .symtab: null, one SECTION symbol per content section, the locals, the globals, then the
        // undefined names the relocations use.
        Assert.Equal(
        [
            new Sym(0, "", 0, 0, SymbolType.NotSpecified, SymbolBinding.Local, null),
            new Sym(1, "", 0, 0, SymbolType.Section, SymbolBinding.Local, ".text"),
            new Sym(2, "", 0, 0, SymbolType.Section, SymbolBinding.Local, ".data"),
            new Sym(3, "", 0, 0, SymbolType.Section, SymbolBinding.Local, ".bss"),
            new Sym(4, "after_call", 5, 0, SymbolType.NotSpecified, SymbolBinding.Local, ".text"),
            new Sym(5, "table", 0, 8, SymbolType.Object, SymbolBinding.Local, ".data"),
            new Sym(6, "entry", 0, 6, SymbolType.Function, SymbolBinding.Global, ".text"),
            new Sym(7, "counter", 8, 4, SymbolType.Object, SymbolBinding.Global, ".data"),
            new Sym(8, "buffer", 0, 0x100, SymbolType.Object, SymbolBinding.Global, ".bss"),
            new Sym(9, "extern_fn", 0, 0, SymbolType.NotSpecified, SymbolBinding.Global, null),
        ], r.Symbols);

        Assert.Equal(
        [
            new Rela(".text", 1, 4, "extern_fn", -4),     // R_X86_64_PLT32
            new Rela(".data", 0, 1, "entry", 0x10),       // R_X86_64_64
        ], r.Relocations);
    }

    [Fact]
    public void TheStubObjectReadsBackWithElfSharp()
    {
        ReadBack r = Read(Save("stubs.o", StubImage.BuildObject()));
        using ELF<ulong> elf = r.Elf;

        Assert.Equal(FileType.Relocatable, elf.Type);
        Assert.Equal(Machine.AMD64, elf.Machine);
        var bySection = r.Sections.ToDictionary(s => s.Name);
        // Locals before globals, every name once, every defined symbol inside its section.
        int firstGlobal = r.Symbols.FindIndex(s => s.Binding != SymbolBinding.Local);
        Assert.True(firstGlobal > 0);
        Assert.All(r.Symbols.Skip(firstGlobal), s => Assert.Equal(SymbolBinding.Global, s.Binding));
        var named = r.Symbols.Where(s => s.Name.Length != 0).ToList();
        Assert.Equal(named.Count, named.Select(s => s.Name).Distinct().Count());
        foreach (Sym s in named.Where(s => s.Section != null))
            Assert.True(s.Value + s.Size <= bySection[s.Section!].Size, $"{s.Name} ends past {s.Section}");

        Sym header = Assert.Single(r.Symbols, s => s.Name == "tandem_multiboot_header");
        Assert.Equal((0UL, 24UL, SymbolType.Object, ".multiboot"), (header.Value, header.Size, header.Type, header.Section));
        Sym main = Assert.Single(r.Symbols, s => s.Name == "tandem_main");
        Assert.Equal((SymbolBinding.Global, (string?)null), (main.Binding, main.Section));
        Assert.Equal(SectionType.NoBits, bySection[".bss"].Type);

        // Every relocation patches a field inside its section, with a type the writer knows, and
        // names a symbol that is defined here or undefined (to be resolved by ld.lld).
        Assert.NotEmpty(r.Relocations);
        foreach (Rela rel in r.Relocations)
        {
            ulong width = rel.Type switch { 1 => 8UL, 2 or 4 or 10 => 4UL, _ => throw new Xunit.Sdk.XunitException($"relocation type {rel.Type}") };
            Assert.True(rel.Offset + width <= bySection[rel.Section].Size, $"{rel.Section}+0x{rel.Offset:X} past its end");
        }
        Assert.Contains(r.Relocations, x => x.Symbol == "tandem_main");
    }

    [FactWithTool("llvm-readelf", "llvm")]
    public void LlvmReadelfListsTheSameSymbolsAndRelocations()
    {
        foreach ((string name, byte[] bytes) in new[] { ("hand.o", HandBuiltObject()), ("stubs.o", StubImage.BuildObject()) })
        {
            string path = Save(name, bytes);
            ReadBack r = Read(path);
            r.Elf.Dispose();
            var (code, stdout, stderr) = Host.Run(Host.Which("llvm-readelf")!, "--wide", "--symbols", "--relocations", path);
            Assert.True(code == 0, $"llvm-readelf {name}: exit code {code}: {stderr}");
            Assert.True(stderr.Length == 0, $"llvm-readelf {name} warned: {stderr}");

            var symbols = SymbolLine().Matches(stdout).Select(m => new Sym(
                int.Parse(m.Groups["num"].Value, CultureInfo.InvariantCulture),
                m.Groups["name"].Value,
                ulong.Parse(m.Groups["value"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                ulong.Parse(m.Groups["size"].Value, CultureInfo.InvariantCulture),
                m.Groups["type"].Value switch
                {
                    "NOTYPE" => SymbolType.NotSpecified,
                    "OBJECT" => SymbolType.Object,
                    "FUNC" => SymbolType.Function,
                    "SECTION" => SymbolType.Section,
                    string t => throw new Xunit.Sdk.XunitException($"{name}: symbol type {t}"),
                },
                m.Groups["bind"].Value == "LOCAL" ? SymbolBinding.Local : SymbolBinding.Global,
                m.Groups["ndx"].Value == "UND" ? null : r.Sections[int.Parse(m.Groups["ndx"].Value, CultureInfo.InvariantCulture)].Name))
                .ToList();
            // llvm-readelf names a SECTION symbol after its section; the symbol itself has no name.
            var expected = r.Symbols.Select(s => s.Type == SymbolType.Section ? s with { Name = s.Section! } : s).ToList();
            Assert.Equal(expected.Count, symbols.Count);
            Assert.Equal(expected, symbols);

            var relocations = new List<Rela>();
            foreach (Match block in RelocationBlock().Matches(stdout))
                foreach (Match m in RelocationLine().Matches(block.Groups["lines"].Value))
                {
                    long addend = long.Parse(m.Groups["addend"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    ulong info = ulong.Parse(m.Groups["info"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    relocations.Add(new Rela(block.Groups["section"].Value[".rela".Length..],
                        ulong.Parse(m.Groups["offset"].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture),
                        (uint)info, m.Groups["symbol"].Value, m.Groups["sign"].Value == "-" ? -addend : addend));
                    Assert.Equal(RelocationName((uint)info), m.Groups["type"].Value);
                }
            Assert.Equal(r.Relocations.Count, relocations.Count);
            Assert.Equal(r.Relocations, relocations);
        }
    }

    private static string RelocationName(uint type) => type switch
    {
        1 => "R_X86_64_64",
        2 => "R_X86_64_PC32",
        4 => "R_X86_64_PLT32",
        10 => "R_X86_64_32",
        _ => $"type {type}",
    };

    // "    12: 00000000000000b0    71 FUNC    LOCAL  DEFAULT     2 tandem_boot_long_mode"
    [GeneratedRegex(@"^\s*(?<num>\d+): (?<value>[0-9a-f]{16})\s+(?<size>\d+) (?<type>\w+)\s+(?<bind>\w+)\s+\w+\s+(?<ndx>\w+) ?(?<name>\S*)$", RegexOptions.Multiline)]
    private static partial Regex SymbolLine();

    // "Relocation section '.rela.text' at offset 0x2120 contains 11 entries:" and its lines.
    [GeneratedRegex(@"^Relocation section '(?<section>[^']+)' at offset 0x[0-9a-f]+ contains \d+ entr(y|ies):\n[^\n]*\n(?<lines>(?:[0-9a-f]{16} [^\n]*\n?)*)", RegexOptions.Multiline)]
    private static partial Regex RelocationBlock();

    // "0000000000000003  0000000b0000000a R_X86_64_32  0000000000006000 tandem_boot_early_stack + 4000"
    [GeneratedRegex(@"^(?<offset>[0-9a-f]{16})\s+(?<info>[0-9a-f]{16})\s+(?<type>\S+)\s+[0-9a-f]{16}\s+(?<symbol>\S+) (?<sign>[+-]) (?<addend>[0-9a-f]+)$", RegexOptions.Multiline)]
    private static partial Regex RelocationLine();
}
