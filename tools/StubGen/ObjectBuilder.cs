using Iced.Intel;
using Tandem.StubGen.Elf;

namespace Tandem.StubGen;

/// <summary>
/// Collects the stubs into sections. Code is assembled by Iced at its final section offset, so
/// branches and RIP-relative references inside one <see cref="CodeBlock"/> need no relocation; every
/// reference to another symbol (external, another section, or an absolute address) becomes an ELF
/// relocation and the field is left zero (RELA: the addend lives in the relocation).
/// </summary>
internal sealed class ObjectBuilder
{
    private readonly List<DefinedSymbol> _symbols = new();

    public Section Multiboot { get; } = new(".multiboot", Section.ShtProgbits, Section.ShfAlloc, 0);
    public Section TextBoot { get; } = new(".text.boot", Section.ShtProgbits, Section.ShfAlloc | Section.ShfExecInstr, 0xCC);
    public Section Text { get; } = new(".text", Section.ShtProgbits, Section.ShfAlloc | Section.ShfExecInstr, 0xCC);
    public Section Rodata { get; } = new(".rodata", Section.ShtProgbits, Section.ShfAlloc, 0);
    public Section Data { get; } = new(".data", Section.ShtProgbits, Section.ShfAlloc | Section.ShfWrite, 0);
    public Section Bss { get; } = new(".bss", Section.ShtNobits, Section.ShfAlloc | Section.ShfWrite, 0);

    private IReadOnlyList<Section> Sections => [Multiboot, TextBoot, Text, Rodata, Data, Bss];

    public void Define(string name, Section section, ulong value, ulong size, SymbolKind kind, bool global) =>
        _symbols.Add(new DefinedSymbol(name, section, value, size, kind, global));

    /// <summary>Defines global <paramref name="alias"/> at the same address, size and kind as <paramref name="name"/>.</summary>
    public void DefineAlias(string name, string alias)
    {
        var target = _symbols.Single(s => s.Name == name);
        _symbols.Add(target with { Name = alias, Global = true });
    }

    /// <summary>Reserves a zeroed object in .bss and defines its symbol; returns its offset.</summary>
    public ulong ReserveBss(string name, ulong size, ulong alignment, bool global)
    {
        Bss.Align(alignment);
        ulong offset = Bss.Reserve(size);
        Define(name, Bss, offset, size, SymbolKind.Object, global);
        return offset;
    }

    /// <summary>Assembles <paramref name="block"/> at the end of <paramref name="section"/>.</summary>
    public void Emit(Section section, CodeBlock block, ulong alignment = 16)
    {
        ulong start = section.Align(alignment);
        var image = block.Assemble(start);
        section.Append(image.Bytes);
        foreach (var r in image.Relocations)
            section.Relocations.Add(r);
        foreach (var s in image.Symbols)
            Define(s.Name, section, s.Value, s.Size, s.Kind, s.Global);
    }

    /// <summary>Appends <paramref name="block"/> (data with optional relocations) to <paramref name="section"/>.</summary>
    public void Emit(Section section, DataBlock block, ulong alignment = 8)
    {
        ulong start = section.Align(alignment);
        section.Append(block.Bytes);
        foreach (var r in block.Relocations)
            section.Relocations.Add(r with { Offset = start + r.Offset });
        foreach (var s in block.Symbols)
            Define(s.Name, section, start + s.Offset, s.Size ?? (ulong)block.Bytes.Length - s.Offset, s.Kind, s.Global);
    }

    public byte[] Write() => ElfWriter.Write(Sections, _symbols);
}

/// <summary>Which constant field of an instruction a relocation patches.</summary>
internal enum Field
{
    /// <summary>The immediate, or a branch's rel32 / far pointer offset.</summary>
    Immediate,
    /// <summary>The memory operand's displacement (absolute disp32 or RIP-relative disp32).</summary>
    Displacement,
}

/// <summary>
/// A run of code for one bitness, written with Iced's <see cref="Assembler"/> (exposed as
/// <see cref="A"/>), plus symbols at labels and relocations attached to the last emitted instruction.
/// </summary>
internal sealed class CodeBlock
{
    private readonly List<(int Instruction, Field Field, RelocType Type, string Symbol, long Addend)> _relocs = new();
    private readonly List<(Label Label, string Name, SymbolKind Kind, bool Global)> _symbols = new();

    public CodeBlock(int bitness) => A = new Assembler(bitness);

    /// <summary>The Iced assembler; emit instructions with it directly.</summary>
    public Assembler A { get; }

    /// <summary>Defines a symbol at the next instruction.</summary>
    public Label Symbol(string name, SymbolKind kind = SymbolKind.Function, bool global = true)
    {
        // Iced allows one label per instruction: a second symbol at the same spot shares the label.
        if (_pending is { } pending && pending.AtInstruction == A.Instructions.Count)
        {
            _symbols.Add((pending.Label, name, kind, global));
            return pending.Label;
        }
        return Place(A.CreateLabel(name), name, kind, global);
    }

    /// <summary>Places a label created earlier (e.g. a forward jump target) and defines a symbol there.</summary>
    public Label Place(Label label, string name, SymbolKind kind = SymbolKind.Function, bool global = true)
    {
        A.Label(ref label);
        _pending = (label, A.Instructions.Count);
        _symbols.Add((label, name, kind, global));
        return label;
    }

    private (Label Label, int AtInstruction)? _pending;

    /// <summary>A local label that also appears in the symbol table (helps objdump; usable as a relocation target).</summary>
    public Label LocalLabel(string name) => Symbol(name, SymbolKind.Label, global: false);

    /// <summary>
    /// Makes <paramref name="field"/> of the instruction just emitted refer to <paramref name="symbol"/> +
    /// <paramref name="addend"/>. Emit that instruction with a 0 placeholder (or target 0 for branches).
    /// For PC-relative types the addend is corrected by the distance from the field to the end of the
    /// instruction, so callers pass the plain offset from the symbol.
    /// </summary>
    public void Reloc(Field field, RelocType type, string symbol, long addend = 0) =>
        _relocs.Add((A.Instructions.Count - 1, field, type, symbol, addend));

    /// <summary>
    /// <c>lea dst, [rip + symbol + addend]</c> with an R_X86_64_PC32 relocation: the address of a symbol
    /// in another block, section or object, position-independently.
    /// </summary>
    public void LeaRipRelative(Register dst, string symbol, long addend = 0)
    {
        A.AddInstruction(Instruction.Create(Code.Lea_r64_m, dst, new MemoryOperand(Register.RIP, 0L)));
        Reloc(Field.Displacement, RelocType.Pc32, symbol, addend);
    }

    public sealed record AssembledSymbol(string Name, ulong Value, ulong Size, SymbolKind Kind, bool Global);

    public sealed record Image(byte[] Bytes, List<Relocation> Relocations, List<AssembledSymbol> Symbols);

    /// <summary>Assembles at <paramref name="rip"/> (a section offset, or a fixed address for blobs without relocations).</summary>
    public Image Assemble(ulong rip)
    {
        var writer = new BytesWriter();
        var result = A.Assemble(writer, rip,
            BlockEncoderOptions.ReturnNewInstructionOffsets | BlockEncoderOptions.ReturnConstantOffsets);
        byte[] bytes = writer.ToArray();
        var block = result.Result[0];

        var relocations = new List<Relocation>();
        foreach (var (index, field, type, symbol, addend) in _relocs)
        {
            uint instrOffset = block.NewInstructionOffsets[index];
            if (instrOffset == uint.MaxValue)
                throw new InvalidOperationException($"{A.Instructions[index]}: rewritten by the block encoder, cannot relocate");
            var offsets = block.ConstantOffsets[index];
            (int fieldOffset, int fieldSize) = field switch
            {
                Field.Immediate when offsets.HasImmediate => (offsets.ImmediateOffset, offsets.ImmediateSize),
                Field.Displacement when offsets.HasDisplacement => (offsets.DisplacementOffset, offsets.DisplacementSize),
                _ => throw new InvalidOperationException($"{A.Instructions[index]}: no {field} field to relocate"),
            };
            int wanted = type == RelocType.Abs64 ? 8 : 4;
            if (fieldSize != wanted)
                throw new InvalidOperationException($"{A.Instructions[index]}: {field} is {fieldSize} bytes, {type} needs {wanted}");
            int length = InstructionLength(bytes, instrOffset, A.Bitness, rip);
            long fixedAddend = type is RelocType.Pc32 or RelocType.Plt32
                ? addend - (length - fieldOffset) // S + A - P must equal S + addend - (end of instruction)
                : addend;
            ulong at = instrOffset + (ulong)fieldOffset;
            Array.Clear(bytes, (int)at, fieldSize);
            relocations.Add(new Relocation(rip + at, type, symbol, fixedAddend));
        }

        // Sized symbols (functions, objects) extend to the next sized symbol at a higher address, or to
        // the end of the block; labels get size 0.
        var placed = _symbols.Select(s => (s.Name, Value: result.GetLabelRIP(s.Label), s.Kind, s.Global)).ToList();
        ulong end = rip + (ulong)bytes.Length;
        var symbols = placed.Select(s =>
        {
            ulong size = 0;
            if (s.Kind != SymbolKind.Label)
            {
                ulong next = placed.Where(o => o.Kind != SymbolKind.Label && o.Value > s.Value)
                    .Select(o => o.Value).DefaultIfEmpty(end).Min();
                size = next - s.Value;
            }
            return new AssembledSymbol(s.Name, s.Value, size, s.Kind, s.Global);
        }).ToList();
        return new Image(bytes, relocations, symbols);
    }

    private static int InstructionLength(byte[] bytes, uint offset, int bitness, ulong rip)
    {
        var decoder = Decoder.Create(bitness, new ByteArrayCodeReader(bytes, (int)offset, bytes.Length - (int)offset));
        decoder.IP = rip + offset;
        return decoder.Decode().Length;
    }

    private sealed class BytesWriter : CodeWriter
    {
        private readonly List<byte> _bytes = new();
        public override void WriteByte(byte value) => _bytes.Add(value);
        public byte[] ToArray() => _bytes.ToArray();
    }
}

/// <summary>A run of data bytes with symbols and 64-bit/32-bit absolute relocations.</summary>
internal sealed class DataBlock
{
    private readonly List<byte> _bytes = new();

    public sealed record BlockSymbol(string Name, ulong Offset, ulong? Size, SymbolKind Kind, bool Global);

    public byte[] Bytes => _bytes.ToArray();
    public ulong Length => (ulong)_bytes.Count;
    public List<Relocation> Relocations { get; } = new();
    public List<BlockSymbol> Symbols { get; } = new();

    /// <summary>Defines a symbol here; size defaults to "to the end of the block".</summary>
    public void Symbol(string name, SymbolKind kind = SymbolKind.Object, bool global = true, ulong? size = null) =>
        Symbols.Add(new BlockSymbol(name, Length, size, kind, global));

    public void U8(byte v) => _bytes.Add(v);
    public void U16(ushort v) { U8((byte)v); U8((byte)(v >> 8)); }
    public void U32(uint v) { U16((ushort)v); U16((ushort)(v >> 16)); }
    public void U64(ulong v) { U32((uint)v); U32((uint)(v >> 32)); }
    public void Bytes_(ReadOnlySpan<byte> b) => _bytes.AddRange(b.ToArray());

    /// <summary>Pads with <paramref name="fill"/> up to <paramref name="offset"/> (which must not be behind us).</summary>
    public void PadTo(ulong offset, byte fill = 0)
    {
        if (Length > offset)
            throw new InvalidOperationException($"block is already {Length:X} bytes, past {offset:X}");
        while (Length < offset)
            U8(fill);
    }

    /// <summary>A u64 holding the absolute address <paramref name="symbol"/> + <paramref name="addend"/> (R_X86_64_64).</summary>
    public void Address64(string symbol, long addend = 0)
    {
        Relocations.Add(new Relocation(Length, RelocType.Abs64, symbol, addend));
        U64(0);
    }
}
