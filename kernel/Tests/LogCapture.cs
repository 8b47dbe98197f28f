using Tandem.Kernel.Console;

namespace Tandem.Kernel.Tests
{
    /// <summary>
    /// What the kernel prints while a test looks (<see cref="Log.StartCapture"/>), for tests that
    /// check the exact text a person and the build driver's decoder read (crash reports, VM stop
    /// dumps). One capture at a time; tests run one after another.
    /// </summary>
    internal static unsafe class LogCapture
    {
        private const int Size = 16384;
        private static byte[]? s_buffer;
        private static int s_length;

        /// <summary>Starts capturing (the buffer is reused: the previous capture is gone).</summary>
        public static void Begin()
        {
            s_buffer ??= new byte[Size];
            fixed (byte* p = s_buffer)
                Log.StartCapture(p, Size);   // the array never moves: the kernel heap does not compact
        }

        /// <summary>Stops capturing; what was captured stays readable until the next <see cref="Begin"/>.</summary>
        public static void End() => s_length = Log.StopCapture();

        /// <summary>Where <paramref name="needle"/> first starts in the captured text, or -1.</summary>
        public static int Find(string needle)
        {
            byte[] text = s_buffer!;
            for (int at = 0; at + needle.Length <= s_length; at++)
            {
                int i = 0;
                while (i < needle.Length && text[at + i] == (byte)needle[i])
                    i++;
                if (i == needle.Length)
                    return at;
            }
            return -1;
        }

        /// <summary>True if the captured text contains <paramref name="needle"/>.</summary>
        public static bool Saw(string needle) => Find(needle) >= 0;

        /// <summary>True if the captured text contains the <paramref name="length"/> bytes at <paramref name="needle"/> (text built at run time).</summary>
        public static bool Saw(byte* needle, int length)
        {
            byte[] text = s_buffer!;
            for (int at = 0; at + length <= s_length; at++)
            {
                int i = 0;
                while (i < length && text[at + i] == needle[i])
                    i++;
                if (i == length)
                    return true;
            }
            return false;
        }

        /// <summary>The lower-case hex number at <paramref name="at"/> (after its "0x"); false if there is none.</summary>
        public static bool HexAt(int at, out ulong value)
        {
            value = 0;
            byte[] text = s_buffer!;
            int digits = 0;
            while (at < s_length && digits < 16)
            {
                int c = text[at];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
                if (d < 0)
                    break;
                value = (value << 4) | (uint)d;
                at++;
                digits++;
            }
            return digits > 0;
        }
    }
}
