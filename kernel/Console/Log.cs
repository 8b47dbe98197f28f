using Tandem.Kernel.Sync;

namespace Tandem.Kernel.Console
{
    /// <summary>
    /// The kernel log: text to the serial console, with decimal and hex formatting that never
    /// allocates. Whole lines from different CPUs do not interleave: callers take <see cref="Lock"/>
    /// through <see cref="Begin"/>/<see cref="End"/> around a line.
    /// </summary>
    public static partial class Log
    {
        private static SpinLock s_lock;

        /// <summary>While a panic prints, other CPUs are stopped and locks are ignored.</summary>
        internal static bool s_panicking;

        /// <summary>
        /// The console (a VM's id) whose unfinished line is on the screen, or 0. A guest's shell
        /// prompt and echoed keys have no newline yet; anyone else's line first ends it.
        /// </summary>
        private static int s_openLine;

        public static ulong Begin()
        {
            if (s_panicking)
                return 0;
            ulong flags = s_lock.Acquire();
            EndOpenLine();
            return flags;
        }

        /// <summary>
        /// As <see cref="Begin"/>, waiting at most <paramref name="tscCycles"/> for the lock: an NMI
        /// handler's text goes out even when the code it interrupted holds it. Call
        /// <see cref="End"/> only when <paramref name="locked"/> is true.
        /// </summary>
        public static ulong BeginWithin(ulong tscCycles, out bool locked)
        {
            locked = false;
            if (s_panicking)
                return 0;
            locked = s_lock.TryAcquireWithin(tscCycles, out ulong flags);
            EndOpenLine();
            return flags;
        }

        /// <summary>
        /// As <see cref="Begin"/>, for <paramref name="owner"/>'s text: <paramref name="continues"/> is
        /// true when the unfinished line on the screen is its own (it goes on without a prefix).
        /// </summary>
        public static unsafe ulong BeginAs(int owner, bool* continues)
        {
            ulong flags = s_panicking ? 0 : s_lock.Acquire();
            *continues = owner != 0 && s_openLine == owner;
            if (!*continues)
                EndOpenLine();
            s_openLine = 0;
            return flags;
        }

        /// <summary>Before <see cref="End"/>: the line just written stays unfinished, <paramref name="owner"/>'s.</summary>
        public static void LeaveOpen(int owner) => s_openLine = owner;

        private static void EndOpenLine()
        {
            if (s_openLine == 0)
                return;
            s_openLine = 0;
            WriteChar('\n');
        }

        public static void End(ulong flags)
        {
            if (!s_panicking)
                s_lock.Release(flags);
        }

        public static void Write(string text)
        {
            for (int i = 0; i < text.Length; i++)
                WriteChar(text[i]);
        }

        public static unsafe void WriteAscii(byte* text, int maxLength = 4096)
        {
            for (int i = 0; i < maxLength && text[i] != 0; i++)
                WriteChar((char)text[i]);
        }

        public static unsafe void WriteChar(char c)
        {
            if (c == '\n')
                Serial.Write((byte)'\r');
            byte b = c < 128 ? (byte)c : (byte)'?';
            Serial.Write(b);
            if (s_capture != null && s_captured < s_captureCapacity)
                s_capture[s_captured++] = b;
        }

        private static unsafe byte* s_capture;
        private static int s_captureCapacity, s_captured;

        /// <summary>
        /// From now on every character written (by any CPU) is also copied into
        /// <paramref name="buffer"/>, up to <paramref name="capacity"/> bytes: a test checks a dump this way.
        /// </summary>
        public static unsafe void StartCapture(byte* buffer, int capacity)
        {
            s_captured = 0;
            s_captureCapacity = capacity;
            s_capture = buffer;
        }

        /// <summary>Ends the capture; returns how many bytes it holds.</summary>
        public static unsafe int StopCapture()
        {
            s_capture = null;
            return s_captured;
        }

        /// <summary>Writes what the corelib's <c>TryFormat</c> produced, or any other chars (no allocation).</summary>
        public static void WriteChars(System.ReadOnlySpan<char> chars)
        {
            for (int i = 0; i < chars.Length; i++)
                WriteChar(chars[i]);
        }

        public static void Write(ulong value)
        {
            System.Span<char> text = stackalloc char[24];
            value.TryFormat(text, out int n);
            WriteChars(text.Slice(0, n));
        }

        public static void Write(long value)
        {
            System.Span<char> text = stackalloc char[24];
            value.TryFormat(text, out int n);
            WriteChars(text.Slice(0, n));
        }

        public static void Write(int value) => Write((long)value);

        public static void Write(uint value) => Write((ulong)value);

        /// <summary>Hex with a 0x prefix; <paramref name="digits"/> pads with zeros.</summary>
        public static void Hex(ulong value, int digits = 1)
        {
            System.Span<char> text = stackalloc char[24];
            System.Span<char> format = stackalloc char[3];
            format[0] = 'x';
            format[1] = (char)('0' + digits / 10);
            format[2] = (char)('0' + digits % 10);
            value.TryFormat(text, out int n, format);
            Write("0x");
            WriteChars(text.Slice(0, n));
        }

        /// <summary>One whole line, atomically with respect to other CPUs.</summary>
        public static void Line(string text)
        {
            ulong flags = Begin();
            Write(text);
            WriteChar('\n');
            End(flags);
        }

        public static void Line(string text, ulong value)
        {
            ulong flags = Begin();
            Write(text);
            Write(value);
            WriteChar('\n');
            End(flags);
        }
    }
}
