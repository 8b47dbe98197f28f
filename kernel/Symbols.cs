using Tandem.Kernel.Boot;

namespace Tandem.Kernel
{
    /// <summary>
    /// Turns code addresses into function names. The build writes the image's function symbols,
    /// sorted by address, to a GRUB module named "symbols": a "TSYM" header, a count, then
    /// (address u64, name offset u32, pad u32) rows and a table of NUL-terminated names.
    /// </summary>
    public static unsafe class Symbols
    {
        private static byte* s_table;
        private static ulong s_count;

        public static bool Loaded => s_table != null;

        public static void Initialize()
        {
            for (int i = 0; i < Multiboot2.ModuleCount; i++)
            {
                ref BootModule m = ref Multiboot2.Module(i);
                if (!CommandLine.Equals(m.CommandLine, "symbols"))
                    continue;
                byte* data = (byte*)m.Start;
                if (m.End - m.Start < 16 || *(uint*)data != 0x4D595354) // "TSYM"
                    return;
                ulong count = *(ulong*)(data + 8);
                if (16 + count * 16 > m.End - m.Start)
                    return;
                s_table = data;
                s_count = count;
            }
        }

        /// <summary>ILC names a type's MethodTable "_ZTV" + length + mangled name; returns the mangled name.</summary>
        public static byte* TypeName(byte* symbol)
        {
            if (symbol[0] != '_' || symbol[1] != 'Z' || symbol[2] != 'T' || symbol[3] != 'V')
                return symbol;
            byte* p = symbol + 4;
            while (*p >= '0' && *p <= '9')
                p++;
            return p;
        }

        /// <summary>Finds the function containing <paramref name="address"/>; returns its name and the offset into it.</summary>
        public static byte* Lookup(ulong address, out ulong offset)
        {
            offset = 0;
            if (s_table == null || s_count == 0)
                return null;
            ulong* rows = (ulong*)(s_table + 16);
            if (address < rows[0])
                return null;
            ulong lo = 0, hi = s_count - 1;
            while (lo < hi)
            {
                ulong mid = (lo + hi + 1) / 2;
                if (rows[mid * 2] <= address)
                    lo = mid;
                else
                    hi = mid - 1;
            }
            offset = address - rows[lo * 2];
            if (offset > 1 << 20)
                return null;
            uint nameOffset = (uint)rows[lo * 2 + 1];
            return s_table + 16 + s_count * 16 + nameOffset;
        }
    }
}
