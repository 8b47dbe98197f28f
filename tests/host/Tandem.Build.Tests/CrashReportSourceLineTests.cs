using Xunit;

namespace Tandem.Build.Tests;

/// <summary>
/// With an image built with --debug-info, the decoded crash report gives each backtrace frame and
/// the host RIP their source file and line (addr2line over the DWARF). The ELF here is a tiny C
/// program compiled with -g and linked at a fixed address, so the lines are known.
/// </summary>
public sealed class CrashReportSourceLineTests : IDisposable
{
    private const string Source = """
        int first(int x) {
            return x + 1;
        }

        int second(int y) {
            int z = first(y);
            return z * 3;
        }
        """;

    private readonly string _dir = Directory.CreateTempSubdirectory("tandem-crashlines-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string LinkTinyElf()
    {
        File.WriteAllText(Path.Combine(_dir, "tiny.c"), Source + "\n");
        File.WriteAllText(Path.Combine(_dir, "tiny.ld"), "SECTIONS { . = 0x400000; .text : { *(.text) } }\n");
        var cc = Host.Run("gcc", ["-g", "-O0", "-ffreestanding", "-fno-pic", "-fno-asynchronous-unwind-tables", "-c", "tiny.c", "-o", "tiny.o"], _dir);
        Assert.True(cc.Code == 0, "gcc -c failed: " + cc.Stderr);
        var ld = Host.Run("ld", ["-static", "-nostdlib", "--build-id=none", "-e", "first", "-T", "tiny.ld", "-o", "tiny.elf", "tiny.o"], _dir);
        Assert.True(ld.Code == 0, "ld failed: " + ld.Stderr);
        return Path.Combine(_dir, "tiny.elf");
    }

    [FactWithTools("gcc", "ld", "addr2line")]
    public void FramesAndRipGetTheirSourceLines()
    {
        string elf = LinkTinyElf();
        // first() is at 0x400000 (the start of .text); a return address just inside second() is
        // where its call to first() returns to: line 6.
        var nm = Host.Run("nm", [elf], _dir);
        Assert.True(nm.Code == 0, "nm failed: " + nm.Stderr);
        ulong second = nm.Stdout.Split('\n').Where(l => l.EndsWith(" second", StringComparison.Ordinal))
            .Select(l => Convert.ToUInt64(l[..16], 16)).Single();
        var call = Host.Run("objdump", ["-d", "--no-show-raw-insn", elf], _dir);
        Assert.True(call.Code == 0, "objdump failed: " + call.Stderr);
        // The instruction after "call first" is the return address a backtrace shows.
        string[] lines = call.Stdout.Split('\n');
        int at = Array.FindIndex(lines, l => l.Contains("call", StringComparison.Ordinal) && l.Contains("<first>", StringComparison.Ordinal));
        Assert.True(at >= 0, "no call to first() in second():\n" + call.Stdout);
        ulong returnAddress = Convert.ToUInt64(lines[at + 1].Trim().Split(':')[0], 16);
        Assert.True(returnAddress > second);

        string serial = $"panic: test\nrip=0x0000000000400000 rsp=0x1\nbacktrace:\n  0x{returnAddress:x16}  second+0x{returnAddress - second:x}\n";
        string decoded = CrashReport.Decode(serial, elf)!;
        Assert.Matches(@"rip 0x0000000000400000  at \S*tiny\.c:1\b", decoded);
        Assert.Matches(@"second\+0x[0-9a-f]+  at \S*tiny\.c:6\b", decoded);

        // Without the debug image, or at an address nothing covers, no source line is made up.
        Assert.DoesNotContain("tiny.c", CrashReport.Decode(serial)!);
        string outside = CrashReport.Decode("backtrace:\n  0x0000000000900000  nowhere+0x0\n", elf)!;
        Assert.DoesNotContain(" at ", outside);
    }
}
