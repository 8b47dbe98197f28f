using System.Buffers.Binary;
using System.Text;

namespace Tandem.Build;

/// <summary>
/// Extracts the function and object symbols from the linked ELF and writes the table the kernel
/// uses to symbolise backtraces (kernel/Symbols.cs): "TSYM", count, (address, name offset) rows
/// sorted by address, then the NUL-terminated names.
/// </summary>
internal static class SymbolTable
{
    public static void Write(string elfPath, string output)
    {
        byte[] elf = File.ReadAllBytes(elfPath);
        ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(elf.AsSpan(0x28));
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(0x3A));
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(0x3C));
        var symbols = new List<(ulong Address, string Name)>();
        for (int i = 0; i < shnum; i++)
        {
            var sh = elf.AsSpan((int)shoff + i * shentsize);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]);
            if (type != 2) // SHT_SYMTAB
                continue;
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(sh[0x18..]);
            ulong size = BinaryPrimitives.ReadUInt64LittleEndian(sh[0x20..]);
            uint link = BinaryPrimitives.ReadUInt32LittleEndian(sh[0x28..]);
            var strSh = elf.AsSpan((int)shoff + (int)link * shentsize);
            ulong strOffset = BinaryPrimitives.ReadUInt64LittleEndian(strSh[0x18..]);
            for (ulong at = offset; at < offset + size; at += 24)
            {
                var sym = elf.AsSpan((int)at, 24);
                uint nameIndex = BinaryPrimitives.ReadUInt32LittleEndian(sym);
                byte info = sym[4];
                ushort section = BinaryPrimitives.ReadUInt16LittleEndian(sym[6..]);
                ulong value = BinaryPrimitives.ReadUInt64LittleEndian(sym[8..]);
                int kind = info & 0xF;
                if (nameIndex == 0 || section == 0 || value == 0 || (kind != 1 && kind != 2 && kind != 0))
                    continue;
                int start = (int)(strOffset + nameIndex);
                int end = Array.IndexOf(elf, (byte)0, start);
                string name = Encoding.ASCII.GetString(elf, start, end - start);
                if (name.StartsWith("__") || name.StartsWith(".L") || name.Length == 0)
                    continue;
                symbols.Add((value, name));
            }
        }
        symbols = symbols.DistinctBy(s => s.Address).OrderBy(s => s.Address).ToList();
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
}
