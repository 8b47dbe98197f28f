using System.Buffers.Binary;
using System.Text;
using ELFSharp.ELF;
using ELFSharp.ELF.Sections;
using ElfSymbols = ELFSharp.ELF.Sections.SymbolTable<ulong>;

namespace Tandem.Build;

/// <summary>
/// Extracts the function and object symbols from the linked ELF (read with ELFSharp) and writes the
/// table the kernel uses to symbolise backtraces (kernel/Symbols.cs): "TSYM", count, (address, name
/// offset) rows sorted by address, then the NUL-terminated names.
/// </summary>
internal static class SymbolTable
{
    /// <summary>A symbol the table keeps: its address, its size in the ELF (not written) and its name.</summary>
    internal readonly record struct Symbol(ulong Address, ulong Size, string Name);

    public static void Write(string elfPath, string output)
    {
        List<Symbol> symbols = Read(elfPath);
        var names = new MemoryStream();
        var rows = new byte[symbols.Count * 16];
        for (int i = 0; i < symbols.Count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(rows.AsSpan(i * 16), symbols[i].Address);
            BinaryPrimitives.WriteUInt32LittleEndian(rows.AsSpan(i * 16 + 8), (uint)names.Length);
            byte[] n = Encoding.ASCII.GetBytes(symbols[i].Name);
            names.Write(n);
            names.WriteByte(0);
        }
        using var file = File.Create(output);
        file.Write("TSYM\0\0\0\0"u8);
        Span<byte> count = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(count, (ulong)symbols.Count);
        file.Write(count);
        file.Write(rows);
        file.Write(names.ToArray());
    }

    /// <summary>
    /// The symbols of every SHT_SYMTAB of a 64-bit ELF that a backtrace can name: defined (not
    /// SHN_UNDEF), at a non-zero address, of type NOTYPE, OBJECT or FUNC, named, and not "__" or ".L"
    /// names. One per address (the first in the file), sorted by address.
    /// </summary>
    internal static List<Symbol> Read(string elfPath)
    {
        if (ELFReader.CheckELFType(elfPath) != Class.Bit64)
            throw new InvalidDataException($"{elfPath} is not a 64-bit ELF file");
        using ELF<ulong> elf = ELFReader.Load<ulong>(elfPath);
        var symbols = new List<Symbol>();
        foreach (ElfSymbols table in elf.GetSections<ElfSymbols>().Where(t => t.Type == SectionType.SymbolTable))
        {
            foreach (SymbolEntry<ulong> sym in table.Entries)
            {
                bool kind = sym.Type is SymbolType.NotSpecified or SymbolType.Object or SymbolType.Function;
                if (sym.Name.Length == 0 || sym.PointedSectionIndex == 0 || sym.Value == 0 || !kind)
                    continue;
                if (sym.Name.StartsWith("__") || sym.Name.StartsWith(".L"))
                    continue;
                symbols.Add(new Symbol(sym.Value, sym.Size, sym.Name));
            }
        }
        return symbols.DistinctBy(s => s.Address).OrderBy(s => s.Address).ToList();
    }
}
