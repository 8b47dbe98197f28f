using System;

namespace Tandem.Kernel.Console
{
    /// <summary>A NUL-terminated ASCII string (a symbol, a thread's name) as a span, for a log line's hole.</summary>
    public static unsafe class Ascii
    {
        /// <summary>
        /// The bytes of <paramref name="text"/> up to its NUL, at most <paramref name="maxLength"/>
        /// of them (what <see cref="Log.WriteAscii"/> writes): <c>Log.Info($"running {Ascii.Span(name, 24)}")</c>.
        /// </summary>
        public static ReadOnlySpan<byte> Span(byte* text, int maxLength)
        {
            int n = 0;
            while (n < maxLength && text[n] != 0)
                n++;
            return new ReadOnlySpan<byte>(text, n);
        }
    }
}
