namespace Tandem.StubGen.Elf;

/// <summary>x86-64 relocation types used by the stubs (System V AMD64 psABI, table "Relocation Types").</summary>
internal enum RelocType : uint
{
    /// <summary>R_X86_64_64: S + A, 64-bit absolute (address tables, extable).</summary>
    Abs64 = 1,
    /// <summary>R_X86_64_PC32: S + A - P, 32-bit PC-relative (RIP-relative data references).</summary>
    Pc32 = 2,
    /// <summary>R_X86_64_PLT32: L + A - P, 32-bit PC-relative call/jmp to a function (static link: same as PC32).</summary>
    Plt32 = 4,
    /// <summary>R_X86_64_32: S + A, 32-bit absolute zero-extended (32-bit boot code, addresses &lt; 4 GiB).</summary>
    Abs32 = 10,
}

/// <summary>What an ELF symbol names (STT_*).</summary>
internal enum SymbolKind : byte
{
    /// <summary>STT_NOTYPE: a label inside a function (local helper names for relocations and disassembly).</summary>
    Label = 0,
    /// <summary>STT_OBJECT: data.</summary>
    Object = 1,
    /// <summary>STT_FUNC: code.</summary>
    Function = 2,
}

/// <summary>A relocation: patch <see cref="Offset"/> in its section with <see cref="Symbol"/> + <see cref="Addend"/>.</summary>
internal sealed record Relocation(ulong Offset, RelocType Type, string Symbol, long Addend);

/// <summary>A symbol defined in this object.</summary>
internal sealed record DefinedSymbol(string Name, Section Section, ulong Value, ulong Size, SymbolKind Kind, bool Global);

/// <summary>One output section (PROGBITS with bytes, or NOBITS with only a size).</summary>
internal sealed class Section
{
    public const uint ShtProgbits = 1, ShtNobits = 8;
    public const ulong ShfWrite = 1, ShfAlloc = 2, ShfExecInstr = 4;

    private readonly List<byte> _data = new();
    private ulong _nobitsSize;

    public Section(string name, uint type, ulong flags, byte fill)
    {
        Name = name;
        Type = type;
        Flags = flags;
        Fill = fill;
    }

    public string Name { get; }
    public uint Type { get; }
    public ulong Flags { get; }

    /// <summary>Padding byte between blocks: int3 (0xCC) in code, 0 in data.</summary>
    public byte Fill { get; }

    /// <summary>Largest alignment any block asked for; becomes sh_addralign.</summary>
    public ulong Alignment { get; private set; } = 1;

    public List<Relocation> Relocations { get; } = new();

    public bool IsNobits => Type == ShtNobits;

    public ulong Size => IsNobits ? _nobitsSize : (ulong)_data.Count;

    public IReadOnlyList<byte> Data => _data;

    /// <summary>Pads the section to <paramref name="alignment"/> and returns the new end offset.</summary>
    public ulong Align(ulong alignment)
    {
        if (alignment == 0 || (alignment & (alignment - 1)) != 0)
            throw new ArgumentException($"alignment {alignment} is not a power of two");
        Alignment = Math.Max(Alignment, alignment);
        ulong aligned = (Size + alignment - 1) & ~(alignment - 1);
        if (IsNobits)
            _nobitsSize = aligned;
        else
            while ((ulong)_data.Count < aligned)
                _data.Add(Fill);
        return aligned;
    }

    /// <summary>Appends bytes (PROGBITS only) and returns their offset.</summary>
    public ulong Append(ReadOnlySpan<byte> bytes)
    {
        if (IsNobits)
            throw new InvalidOperationException($"{Name} holds no bytes");
        ulong offset = Size;
        _data.AddRange(bytes.ToArray());
        return offset;
    }

    /// <summary>Reserves <paramref name="size"/> zero bytes (NOBITS only) and returns their offset.</summary>
    public ulong Reserve(ulong size)
    {
        if (!IsNobits)
            throw new InvalidOperationException($"{Name} is not NOBITS");
        ulong offset = _nobitsSize;
        _nobitsSize += size;
        return offset;
    }
}
