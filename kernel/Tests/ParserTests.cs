using System;
using Tandem.Kernel.Boot;
using Tandem.Kernel.Console;
using Tandem.Kernel.Parsers;

namespace Tandem.Kernel.Tests
{
    /// <summary>
    /// The portable parsers (kernel/Parsers, fuzzed on the host by tests/host/Tandem.Kernel.Tests)
    /// as the kernel runs them: a few bad inputs each, the documented refusal, and the console line
    /// the kernel prints for what it works around. No VMX needed. The other parts of this class
    /// do the same for the guest loaders (ParserTests.Loaders.cs), the monitor's commands and the
    /// swap pool's LZ4 blocks (ParserTests.MonitorAndSwap.cs).
    /// </summary>
    internal static partial class ParserTests
    {
        private static Multiboot2Info s_boot;
        private static AcpiInfo s_acpi;

        private static byte[] Ascii(string s)
        {
            var b = new byte[s.Length];
            for (int i = 0; i < s.Length; i++)
                b[i] = (byte)s[i];
            return b;
        }

        /// <summary>The refusal expected (the corelib's string has no ==).</summary>
        private static bool Is(string? problem, string expected)
        {
            if (problem == null || problem.Length != expected.Length)
                return false;
            for (int i = 0; i < expected.Length; i++)
            {
                if (problem[i] != expected[i])
                    return false;
            }
            return true;
        }

        private static void Put32(byte[] b, int at, uint v)
        {
            for (int i = 0; i < 4; i++)
                b[at + i] = (byte)(v >> (8 * i));
        }

        private static void Put64(byte[] b, int at, ulong v)
        {
            Put32(b, at, (uint)v);
            Put32(b, at + 4, (uint)(v >> 32));
        }

        private static void Refused(string parser, string problem) => Log.Info($"parsers: {parser} refused bad input: {problem}");

        /// <summary>
        /// Opens a <c>parsers: PARSER refused bad input: </c> line; the caller writes the problem and ends it
        /// (a <c>LoadError</c> writes itself through a sink, not as one interpolated hole).
        /// </summary>
        private static ulong RefusedBegin(string parser)
        {
            ulong f = Log.Begin();
            Log.Write("parsers: ");
            Log.Write(parser);
            Log.Write(" refused bad input: ");
            return f;
        }

        public static void CommandLineBadInputReported(TestContext t)
        {
            byte[] text = Ascii("vm=x,cpus=99 nonsense vm=y,mem=bad \"vm=z,cmdline=\\\"a b\\\"\" vm=,mem=1 ksm=maybe");
            CommandLineOptions o = CommandLineOptions.Defaults();
            var log = new CommandLine.ConsoleLog();
            CommandLineParser.Parse(new Span<byte>(text), ref o, ref log);
            if (!t.Check(o.VmCount == 1 && o.Vm(0).CmdlineLength == 3, "the good vm= among bad ones was not read", (ulong)o.VmCount))
                return;
            t.Check(log.Lines == 5, "not one line per bad option (5)", (ulong)log.Lines);
        }

        private static byte[] BootInfo(int size)
        {
            var b = new byte[size];
            Put32(b, 0, (uint)size);
            return b;
        }

        public static void Multiboot2BadInputRefused(TestContext t)
        {
            // A command-line tag whose size runs past the end.
            byte[] b = BootInfo(32);
            Put32(b, 8, Multiboot2Parser.TagCommandLine);
            Put32(b, 12, 200);
            string? problem = Multiboot2Parser.Parse(Multiboot2Parser.BootloaderMagic, 0x1000, new ReadOnlySpan<byte>(b), ref s_boot);
            if (!t.Check(Is(problem, Multiboot2Parser.TagPastEnd), "a tag past the end was not refused"))
                return;
            Refused("multiboot2", problem!);
            // A tag of size 0, then no end tag, then a bad magic and a misaligned pointer.
            Put32(b, 12, 0);
            problem = Multiboot2Parser.Parse(Multiboot2Parser.BootloaderMagic, 0x1000, new ReadOnlySpan<byte>(b), ref s_boot);
            if (!t.Check(Is(problem, Multiboot2Parser.TagPastEnd), "a tag of size 0 was not refused"))
                return;
            Put32(b, 8, 99);
            Put32(b, 12, 24);
            problem = Multiboot2Parser.Parse(Multiboot2Parser.BootloaderMagic, 0x1000, new ReadOnlySpan<byte>(b), ref s_boot);
            if (!t.Check(Is(problem, Multiboot2Parser.NoEndTag), "boot information without an end tag was not refused"))
                return;
            Refused("multiboot2", problem!);
            if (!t.Check(Is(Multiboot2Parser.Parse(0x2BADB002, 0x1000, new ReadOnlySpan<byte>(b), ref s_boot), Multiboot2Parser.NotMultiboot2), "a bad magic was not refused")
                || !t.Check(Is(Multiboot2Parser.Parse(Multiboot2Parser.BootloaderMagic, 0x1004, new ReadOnlySpan<byte>(b), ref s_boot), Multiboot2Parser.BadPointer), "a misaligned pointer was not refused"))
                return;

            // A sound structure with a broken memory map: overlapping RAM, a zero length, RAM
            // above 4 GiB, a reserved entry inside RAM; and a command line without its NUL.
            b = BootInfo(8 + 16 + 5 * 24 + 16 + 8);
            Put32(b, 8, Multiboot2Parser.TagMemoryMap);
            Put32(b, 12, 16 + 5 * 24);
            Put32(b, 16, 24);
            int at = 24;
            ulong[] map = { 0x10_0000, 0x100_0000, 1, 0x80_0000, 0x100_0000, 1, 0x20_0000, 0, 1, 0xF000_0000, 0x2000_0000, 1, 0x40_0000, 0x1000, 2 };
            for (int i = 0; i < map.Length; i += 3)
            {
                Put64(b, at, map[i]);
                Put64(b, at + 8, map[i + 1]);
                Put32(b, at + 16, (uint)map[i + 2]);
                at += 24;
            }
            Put32(b, at, Multiboot2Parser.TagCommandLine);
            Put32(b, at + 4, 16);
            for (int i = 8; i < 16; i++)
                b[at + i] = (byte)'x';
            problem = Multiboot2Parser.Parse(Multiboot2Parser.BootloaderMagic, 0x1000, new ReadOnlySpan<byte>(b), ref s_boot);
            if (!t.Check(problem == null, "a sound structure with a broken map was refused"))
                return;
            if (!t.Check(s_boot.CommandLineOffset < 0 && s_boot.BadTags == 1, "a command line without its NUL was used"))
                return;
            if (!t.Check(s_boot.UsableCount == 3, "the usable RAM is not the three pieces expected", (ulong)s_boot.UsableCount))
                return;
            int lines = Multiboot2.ReportProblems(ref s_boot);
            t.Check(lines == 5, "not one line per problem (5)", (ulong)lines);
        }

        /// <summary>Fake physical memory: the bytes of an array at a made-up address.</summary>
        private struct ArrayReader : IPhysicalReader
        {
            public byte[] Bytes;
            public ulong Base;

            public ReadOnlySpan<byte> Read(ulong address, int length)
            {
                if (address < Base || length < 0 || address - Base + (ulong)length > (ulong)Bytes.Length)
                    return ReadOnlySpan<byte>.Empty;
                return new ReadOnlySpan<byte>(Bytes, (int)(address - Base), length);
            }
        }

        private static void Checksum(byte[] b, int at, int length, int field)
        {
            b[at + field] = 0;
            byte sum = 0;
            for (int i = 0; i < length; i++)
                sum += b[at + i];
            b[at + field] = (byte)(0 - sum);
        }

        public static void AcpiBadInputRefused(TestContext t)
        {
            // No RSDP in an area of zeros.
            var area = new byte[4096];
            if (!t.Check(AcpiParser.FindRsdp(new ReadOnlySpan<byte>(area)) == -1, "an RSDP found in zeros"))
                return;
            Refused("acpi", AcpiParser.NoRsdp);

            // An RSDP with a bad checksum.
            const ulong Base = 0x7FE_0000;
            byte[] rsdp = Ascii("RSD PTR ?TANDEM?????");
            Put32(rsdp, 16, (uint)Base);
            rsdp[15] = 0;
            Checksum(rsdp, 0, 20, 8);
            rsdp[17] ^= 1;
            var memory = new ArrayReader { Bytes = new byte[256], Base = Base };
            string? problem = AcpiParser.Parse(ref memory, new ReadOnlySpan<byte>(rsdp), ref s_acpi);
            if (!t.Check(Is(problem, AcpiParser.BadRsdp), "an RSDP with a bad checksum was used"))
                return;
            Refused("acpi", problem!);

            // A good RSDP, an RSDT whose length runs past the memory.
            rsdp[17] ^= 1;
            byte[] rsdt = memory.Bytes;
            rsdt[0] = (byte)'R'; rsdt[1] = (byte)'S'; rsdt[2] = (byte)'D'; rsdt[3] = (byte)'T';
            Put32(rsdt, 4, 4096);
            problem = AcpiParser.Parse(ref memory, new ReadOnlySpan<byte>(rsdp), ref s_acpi);
            if (!t.Check(Is(problem, AcpiParser.NoMadt), "an RSDT past the end of memory was used"))
                return;
            Refused("acpi", problem!);

            // A MADT listing 70 processors (more than Tandem's 64), one twice, then a bad entry length.
            var madt = new byte[44 + 71 * 8 + 2];
            for (int i = 0; i <= 70; i++)
            {
                int at = 44 + i * 8;
                madt[at] = 0;
                madt[at + 1] = 8;
                madt[at + 3] = (byte)(i == 70 ? 5 : i);
                Put32(madt, at + 4, 1);
            }
            madt[44 + 71 * 8 + 1] = 0;
            s_acpi = default;
            AcpiParser.ParseMadt(new ReadOnlySpan<byte>(madt), ref s_acpi);
            if (!t.Check(s_acpi.ApicCount == AcpiInfo.MaxApics && s_acpi.DroppedCpus == 6 && s_acpi.DuplicateIds == 1 && s_acpi.MadtTruncated,
                "the MADT's processors were not capped, deduplicated and cut", (ulong)s_acpi.ApicCount))
                return;
            int lines = Acpi.ReportProblems(ref s_acpi);
            t.Check(lines == 3, "not one line per problem (3)", (ulong)lines);
        }
    }
}
