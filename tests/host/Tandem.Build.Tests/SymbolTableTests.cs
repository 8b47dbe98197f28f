using System.Buffers.Binary;
using System.Text;
using Xunit;

namespace Tandem.Build.Tests;

/// <summary>
/// The backtrace symbol table (tools/Build/SymbolTable.cs) read from a real ELF: a tiny program
/// assembled by gcc and linked by ld with a linker script that fixes every address, so the
/// symbols' addresses and sizes are known without another ELF reader.
/// </summary>
public sealed class SymbolTableTests : IDisposable
{
    private const string Source = """
            .file "tiny.s"
            .text
            .globl sym_first
            .type sym_first, @function
        sym_first:
            .fill 24, 1, 0x90
            ret
            .size sym_first, . - sym_first
            .p2align 5
            .type local_func, @function
        local_func:
            ret
            .size local_func, . - local_func
            .globl alias_of_local
            .set alias_of_local, local_func
            .globl __hidden_helper
            .type __hidden_helper, @function
        __hidden_helper:
            ret
            .size __hidden_helper, 1
            .globl sym_absolute
            .set sym_absolute, 0x1234
            .data
            .globl sym_object
            .type sym_object, @object
        sym_object:
            .long 1, 2, 3
            .size sym_object, 12
            .globl zero_sized
        zero_sized:
        """;

    private const string Script = """
        ENTRY(sym_first)
        SECTIONS
        {
            . = 0x400000;
            .text : { *(.text) }
            . = 0x600000;
            .data : { *(.data) }
        }
        """;

    private readonly string _dir = Directory.CreateTempSubdirectory("tandem-symtab-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string LinkTinyElf()
    {
        File.WriteAllText(Path.Combine(_dir, "tiny.s"), Source + "\n");
        File.WriteAllText(Path.Combine(_dir, "tiny.ld"), Script + "\n");
        var cc = Host.Run("gcc", ["-c", "tiny.s", "-o", "tiny.o"], _dir);
        Assert.True(cc.Code == 0, "gcc -c failed: " + cc.Stderr);
        var ld = Host.Run("ld", ["-static", "-nostdlib", "--build-id=none", "-T", "tiny.ld", "-o", "tiny.elf", "tiny.o"], _dir);
        Assert.True(ld.Code == 0, "ld failed: " + ld.Stderr);
        return Path.Combine(_dir, "tiny.elf");
    }

    [FactWithTools("gcc", "ld")]
    public void ReadsTheAddressAndSizeOfKnownSymbols()
    {
        var symbols = SymbolTable.Read(LinkTinyElf());
        var byName = symbols.ToDictionary(s => s.Name);

        Assert.Equal(new SymbolTable.Symbol(0x400000, 25, "sym_first"), byName["sym_first"]);
        Assert.Equal(new SymbolTable.Symbol(0x400020, 1, "local_func"), byName["local_func"]);
        Assert.Equal(new SymbolTable.Symbol(0x600000, 12, "sym_object"), byName["sym_object"]);
        Assert.Equal(0x1234UL, byName["sym_absolute"].Address);   // SHN_ABS counts as defined
        // "__" names go; one name per address, the first in the file (locals come before globals);
        // section and file symbols go; a symbol at the end of .data stays.
        Assert.DoesNotContain("__hidden_helper", byName.Keys);
        Assert.DoesNotContain("alias_of_local", byName.Keys);
        Assert.Equal(0x60000CUL, byName["zero_sized"].Address);
        Assert.Equal(["sym_absolute", "sym_first", "local_func", "sym_object", "zero_sized"], symbols.Select(s => s.Name));
    }

    [FactWithTools("gcc", "ld")]
    public void WritesTheKernelsTable()
    {
        string table = Path.Combine(_dir, "tiny.sym");
        SymbolTable.Write(LinkTinyElf(), table);
        byte[] b = File.ReadAllBytes(table);

        Assert.Equal("TSYM\0\0\0\0"u8.ToArray(), b[..8]);
        ulong count = BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(8));
        Assert.Equal(5UL, count);
        int names = 16 + (int)count * 16;
        var rows = new List<(ulong Address, string Name)>();
        for (int i = 0; i < (int)count; i++)
        {
            ulong address = BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(16 + i * 16));
            int offset = (int)BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(16 + i * 16 + 8));
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(16 + i * 16 + 12)));
            int end = Array.IndexOf(b, (byte)0, names + offset);
            rows.Add((address, Encoding.ASCII.GetString(b, names + offset, end - names - offset)));
        }
        Assert.Equal(
            [(0x1234UL, "sym_absolute"), (0x400000UL, "sym_first"), (0x400020UL, "local_func"), (0x600000UL, "sym_object"), (0x60000CUL, "zero_sized")],
            rows);
        Assert.Equal(0, b[^1]);
    }

    [Fact]
    public void RefusesAFileThatIsNotA64BitElf()
    {
        string path = Path.Combine(_dir, "not.elf");
        File.WriteAllBytes(path, new byte[128]);
        Assert.Throws<InvalidDataException>(() => SymbolTable.Read(path));
    }
}
