using Tandem.Kernel.Console;
using Tandem.Kvm.Monitor;
using Tandem.Mm;

namespace Tandem.Kernel.Tests
{
    /// <summary>
    /// The monitor's command parser (kvm/Monitor, fuzzed on the host by MonitorParserTests) and the
    /// swap pool's LZ4 decoder (mm/Swap/Lz4Block.cs, fuzzed by Lz4FuzzTests) as the kernel runs
    /// them: bad input, the documented refusal, a console line each. No VM, no VMX.
    /// </summary>
    internal static unsafe partial class ParserTests
    {
        /// <summary>Bad monitor lines (bytes 0-255 as chars) and the error each must give.</summary>
        private static readonly string[] s_badMonitorLines =
        {
            "frobnicate",
            "info bogus",
            "pause 0",
            "pause 1000001",
            "pause 99999999999999999999",
            "stop x",
            "dump 1 0x1000000000000 16",
            "dump 1 0xffffffffffff 2",
            "dump 1 0x1000 4097",
            "dump 1 0x1000 0",
            "stats on 3601",
            "a b c d e f g",
            "help\0",
            "pause 1\0",
            "info\u0001vms",
            "stop 1\u001b[A",
            "dump 1 0x10\u007f 16",
            "focus \u00ff",
            "\0\0\0",
        };

        private static readonly MonitorError[] s_badMonitorErrors =
        {
            MonitorError.ErrorUnknown,
            MonitorError.ErrorInfoTopic,
            MonitorError.ErrorVmId,
            MonitorError.ErrorVmId,
            MonitorError.ErrorVmId,
            MonitorError.ErrorVmId,
            MonitorError.ErrorGpa,
            MonitorError.ErrorGpa,
            MonitorError.ErrorLength,
            MonitorError.ErrorLength,
            MonitorError.ErrorInterval,
            MonitorError.ErrorUnknown,
            MonitorError.ErrorUnknown,
            MonitorError.ErrorVmId,
            MonitorError.ErrorUnknown,
            MonitorError.ErrorVmId,
            MonitorError.ErrorGpa,
            MonitorError.ErrorVmId,
            MonitorError.ErrorUnknown,
        };

        private static bool MonitorRefuses(TestContext t, byte[] line, MonitorError expected, ulong index)
        {
            MonitorCommand c = MonitorParser.Parse(new System.ReadOnlySpan<byte>(line));
            string? text = c.ErrorText;
            if (!t.Check(c.Error == expected && text != null && Is(text, MonitorParser.ErrorText(expected)!),
                "a bad monitor line did not give its documented error (the line's index)", index))
                return false;
            for (int i = 0; i < text!.Length; i++)
            {
                if (!t.Check(text[i] >= ' ' && text[i] < 127, "a monitor error is not one printable line", index))
                    return false;
            }
            Refused("monitor", text);
            return true;
        }

        public static void MonitorBadCommandsRefused(TestContext t)
        {
            MonitorCommand good = MonitorParser.Parse(new System.ReadOnlySpan<byte>(Ascii("dump 2 0x500000 16")));
            if (!t.Check(good.Ok && good.Verb == MonitorVerb.Dump && good.Vm == 2 && good.Gpa == 0x50_0000 && good.Length == 16, "a good dump line did not parse"))
                return;
            if (!t.Check(s_badMonitorLines.Length == s_badMonitorErrors.Length, "the monitor cases' tables differ in length"))
                return;
            for (int i = 0; i < s_badMonitorLines.Length; i++)
            {
                if (!MonitorRefuses(t, Ascii(s_badMonitorLines[i]), s_badMonitorErrors[i], (ulong)i))
                    return;
            }
            // One byte over the longest line: refused before it is read; at the limit it parses.
            var line = new byte[MonitorParser.MaxLine + 1];
            for (int i = 0; i < line.Length; i++)
                line[i] = (byte)' ';
            line[0] = (byte)'h'; line[1] = (byte)'e'; line[2] = (byte)'l'; line[3] = (byte)'p';
            if (!MonitorRefuses(t, line, MonitorError.ErrorTooLong, (ulong)s_badMonitorLines.Length))
                return;
            t.Check(MonitorParser.Parse(new System.ReadOnlySpan<byte>(line, 0, MonitorParser.MaxLine)).Verb == MonitorVerb.Help,
                "a line of exactly the longest length did not parse");
        }

        /// <summary>The destination page of the LZ4 cases, with guard bytes on both sides.</summary>
        private const int PageGuard = 256;
        private const int Page = 4096;

        /// <summary>
        /// Decodes the block into a page between guard bytes. Corrupt blocks must give
        /// <see cref="Lz4Block.Corrupt"/>; no block may change a guard byte. Literal bytes are 0x5A,
        /// never the guard's 0xA5, so a literal or a match copied past the page shows.
        /// </summary>
        private static bool Lz4Refuses(TestContext t, byte[] block, int length, byte[] page, string problem, string reason)
        {
            for (int i = 0; i < page.Length; i++)
                page[i] = GuardByte;
            int result;
            fixed (byte* src = block)
            fixed (byte* dst = page)
                result = Lz4Block.Decompress(src, length, dst + PageGuard, Page);
            if (!t.Check(PageGuardsIntact(page), "the LZ4 decoder wrote outside the destination page")
                || !t.Check(result == Lz4Block.Corrupt, reason, (ulong)(long)result))
                return false;
            Refused("swap lz4", problem);
            return true;
        }

        private static bool PageGuardsIntact(byte[] page)
        {
            for (int i = 0; i < PageGuard; i++)
            {
                if (page[i] != GuardByte || page[PageGuard + Page + i] != GuardByte)
                    return false;
            }
            return true;
        }

        private static byte[] Bytes(params int[] values)
        {
            var b = new byte[values.Length];
            for (int i = 0; i < values.Length; i++)
                b[i] = (byte)values[i];
            return b;
        }

        /// <summary>A token and the 255-run length bytes for a nibble of 15 that adds <paramref name="more"/>, at <paramref name="at"/>; the next offset.</summary>
        private static int LengthBytes(byte[] b, int at, int more)
        {
            while (more >= 255)
            {
                b[at++] = 255;
                more -= 255;
            }
            b[at++] = (byte)more;
            return at;
        }

        public static void SwapCorruptBlockRefused(TestContext t)
        {
            var page = new byte[PageGuard + Page + PageGuard];

            // A sound block first: a page of repeating records compresses, and decodes back whole.
            var source = new byte[Page];
            for (int i = 0; i < Page; i++)
                source[i] = (byte)(i % 64 < 8 ? i / 64 : 0x5A);
            var compressed = new byte[Page + 64];
            var table = new ushort[Lz4Block.HashEntries];
            int length;
            fixed (byte* s = source)
            fixed (byte* c = compressed)
            fixed (ushort* h = table)
                length = Lz4Block.Compress(s, Page, c, compressed.Length, h);
            if (!t.Check(length > 0 && length < Page, "a compressible page did not compress", (ulong)length))
                return;
            for (int i = 0; i < page.Length; i++)
                page[i] = GuardByte;
            int decoded;
            fixed (byte* c = compressed)
            fixed (byte* d = page)
                decoded = Lz4Block.Decompress(c, length, d + PageGuard, Page);
            bool same = decoded == Page;
            for (int i = 0; same && i < Page; i++)
                same = page[PageGuard + i] == source[i];
            if (!t.Check(same && PageGuardsIntact(page), "a sound block did not decode to its page", (ulong)(long)decoded))
                return;

            // Truncated: the compressed page without its last byte (its last sequence is literals,
            // at least 5, so one is missing); literals, an offset, length bytes cut short.
            if (!Lz4Refuses(t, compressed, length - 1, page, "a compressed page without its last byte", "a truncated compressed page was not refused")
                || !Lz4Refuses(t, Bytes(0x50, 1, 2), 3, page, "5 literals, 2 present", "a block cut inside its literals was not refused")
                || !Lz4Refuses(t, Bytes(0x14, 0x5A, 0x01), 3, page, "a match offset cut after its first byte", "a block cut inside a match offset was not refused")
                || !Lz4Refuses(t, Bytes(0xF0), 1, page, "a literal length without its length bytes", "a block cut before its length bytes was not refused")
                || !Lz4Refuses(t, Bytes(0x1F, 0x5A, 0x01, 0x00), 4, page, "a match length without its length bytes", "a block cut inside a match length was not refused")
                || !Lz4Refuses(t, Bytes(0x10, 0x5A, 0x01, 0x00), 4, page, "the block ends after a match, not after literals", "a block ending after a match was not refused")
                || !Lz4Refuses(t, Bytes(0x00), 0, page, "an empty block", "an empty block was not refused"))
                return;

            // Match offsets before the start of the output: 2 back after 1 byte, 0, 65535 back after 4000.
            if (!Lz4Refuses(t, Bytes(0x14, 0x5A, 0x02, 0x00, 0x00), 5, page, "match offset 2 with 1 byte written", "a match before the output start was not refused")
                || !Lz4Refuses(t, Bytes(0x14, 0x5A, 0x00, 0x00, 0x00), 5, page, "match offset 0", "a match offset of 0 was not refused"))
                return;
            var far = new byte[1 + 16 + 4000 + 2 + 1];
            far[0] = 0xF0;
            int at = LengthBytes(far, 1, 4000 - 15);
            for (int i = 0; i < 4000; i++)
                far[at + i] = 0x5A;
            at += 4000;
            far[at] = 0xFF;
            far[at + 1] = 0xFF;
            if (!Lz4Refuses(t, far, at + 2 + 1, page, "match offset 65535 with 4000 bytes written", "a match 65535 back after 4000 bytes was not refused"))
                return;

            // Literals running past the page: 4097 of them, all present in the block.
            var literals = new byte[1 + 17 + Page + 1];
            literals[0] = 0xF0;
            at = LengthBytes(literals, 1, Page + 1 - 15);
            for (int i = 0; i < Page + 1; i++)
                literals[at + i] = 0x5A;
            if (!Lz4Refuses(t, literals, at + Page + 1, page, "4097 literals for a 4096-byte page", "literals past the page were not refused"))
                return;
            // A literal length whose length bytes alone exceed the page.
            var lengths = new byte[1 + 20];
            lengths[0] = 0xF0;
            for (int i = 1; i < lengths.Length; i++)
                lengths[i] = 255;
            if (!Lz4Refuses(t, lengths, lengths.Length, page, "a literal length over 4096 in its length bytes", "a literal length past the page was not refused"))
                return;

            // A match running past the page: 16 literals, then a match (offset 16) of 4081 bytes
            // ending one byte past it; and a short-offset (byte by byte) match of the same kind.
            for (int offset = 16; offset >= 1; offset -= 15)
            {
                var match = new byte[2 + 16 + 2 + 16];
                match[0] = 0xFF;
                match[1] = 1;                       // 15 + 1 literals
                for (int i = 0; i < 16; i++)
                    match[2 + i] = 0x5A;
                match[18] = (byte)offset;
                match[19] = 0;
                at = LengthBytes(match, 20, Page - 16 + 1 - 4 - 15);
                if (!Lz4Refuses(t, match, at, page, offset == 16 ? "a match of 4081 bytes after 16 (offset 16) runs past the page" : "a match of 4081 bytes after 16 (offset 1) runs past the page",
                        "a match past the page was not refused"))
                    return;
            }
        }
    }
}
