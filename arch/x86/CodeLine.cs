namespace Tandem.Arch.X86
{
    /// <summary>
    /// The "code:" line of a crash report (the idea of Linux's "Code:" line): the instruction bytes
    /// around RIP in hex, the byte at RIP in angle brackets, e.g. <c>code: 55 48 89 e5 &lt;0f&gt; 0b c3</c>.
    /// Used by the host's panic dump (kernel/Panic.cs) and a VM's stop dump (kvm/Vmx/StopDump.cs);
    /// the build driver reads the line back and disassembles it (tools/Build/CrashReport.cs).
    /// </summary>
    public static class CodeLine
    {
        /// <summary>Bytes shown before RIP, when they can be read.</summary>
        public const int Before = 24;

        /// <summary>Bytes shown from RIP on (the longest x86 instruction is 15 bytes).</summary>
        public const int After = 16;

        /// <summary>Characters <see cref="Format"/> may write: "code:", 3 per byte, 2 for the brackets.</summary>
        public const int MaxChars = 5 + 3 * (Before + After) + 2;

        /// <summary>
        /// Writes "code:" and <paramref name="bytes"/> into <paramref name="text"/>, the byte at
        /// <paramref name="ripIndex"/> marked; returns the number of characters written.
        /// </summary>
        public static int Format(System.ReadOnlySpan<byte> bytes, int ripIndex, System.Span<char> text)
        {
            int n = 0;
            n = Put(text, n, "code:");
            for (int i = 0; i < bytes.Length; i++)
            {
                text[n++] = ' ';
                if (i == ripIndex)
                    text[n++] = '<';
                text[n++] = Digit(bytes[i] >> 4);
                text[n++] = Digit(bytes[i] & 15);
                if (i == ripIndex)
                    text[n++] = '>';
            }
            return n;
        }

        private static int Put(System.Span<char> text, int n, string s)
        {
            for (int i = 0; i < s.Length; i++)
                text[n++] = s[i];
            return n;
        }

        private static char Digit(int d) => (char)(d < 10 ? '0' + d : 'a' + d - 10);
    }
}
