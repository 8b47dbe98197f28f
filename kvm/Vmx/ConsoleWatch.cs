namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// Looks for a marker in what a guest writes to its console (COM1), and keeps the rest of the
    /// line that follows it: how the kernel's Linux tests learn that a shell is up or read the
    /// guest's self-test verdict. Fed byte by byte under the VM's device lock; <see cref="Seen"/>
    /// is published with a volatile write for the test thread that polls it.
    /// </summary>
    public sealed class ConsoleWatch
    {
        private readonly string _marker;
        private readonly int[] _border;
        private int _matched;
        private bool _capturing;

        /// <summary>The bytes after the marker, up to the end of its line.</summary>
        public readonly byte[] Line = new byte[256];
        public int LineLength;

        /// <summary>0 until the marker's line has ended.</summary>
        public int Seen;

        /// <summary>The TSC when the marker was seen.</summary>
        public ulong SeenTsc;

        public ConsoleWatch(string marker)
        {
            _marker = marker;
            // Knuth-Morris-Pratt: _border[i] is the longest proper border of marker[0..i], so a
            // mismatch never skips an overlapping start ("TANDEM-SELFTANDEM-SELFTEST" matches).
            _border = new int[marker.Length];
            for (int i = 1, k = 0; i < marker.Length; i++)
            {
                while (k > 0 && marker[k] != marker[i])
                    k = _border[k - 1];
                if (marker[k] == marker[i])
                    k++;
                _border[i] = k;
            }
        }

        public void See(byte b)
        {
            if (System.Threading.Volatile.Read(ref Seen) != 0)
                return;
            if (_capturing)
            {
                if (b == '\n')
                    Done();
                else if (LineLength < Line.Length)
                    Line[LineLength++] = b;
                return;
            }
            int k = _matched;
            while (k > 0 && _marker[k] != b)
                k = _border[k - 1];
            if (_marker[k] == b)
                k++;
            _matched = k;
            if (k == _marker.Length)
            {
                SeenTsc = Arch.X86.Native.Rdtsc();
                _capturing = true;
            }
        }

        private void Done() => System.Threading.Volatile.Write(ref Seen, 1);

        /// <summary>Where the value of <c>key=</c> starts in the captured line, and its length; -1 if absent.</summary>
        public int FindField(string key, out int length)
        {
            length = 0;
            for (int i = 0; i + key.Length < LineLength; i++)
            {
                if (i > 0 && Line[i - 1] != ' ')
                    continue;
                bool match = Line[i + key.Length] == '=';
                for (int k = 0; match && k < key.Length; k++)
                    match = Line[i + k] == key[k];
                if (!match)
                    continue;
                int start = i + key.Length + 1, end = start;
                while (end < LineLength && Line[end] != ' ')
                    end++;
                length = end - start;
                return start;
            }
            return -1;
        }

        /// <summary>Whether <c>key=</c> has the value <paramref name="expected"/>.</summary>
        public bool FieldIs(string key, string expected)
        {
            int at = FindField(key, out int length);
            if (at < 0 || length != expected.Length)
                return false;
            for (int k = 0; k < length; k++)
            {
                if (Line[at + k] != expected[k])
                    return false;
            }
            return true;
        }

        /// <summary>The decimal value of <c>key=</c>, or -1 when it is absent or not a number.</summary>
        public long FieldNumber(string key)
        {
            int at = FindField(key, out int length);
            if (at < 0 || length == 0 || length > 18)
                return -1;
            long value = 0;
            for (int k = 0; k < length; k++)
            {
                byte c = Line[at + k];
                if (c < '0' || c > '9')
                    return -1;
                value = value * 10 + (c - '0');
            }
            return value;
        }
    }
}
