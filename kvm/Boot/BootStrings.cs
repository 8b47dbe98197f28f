namespace Tandem.Kvm.Boot
{
    /// <summary>Command lines and names as the loaders write them: the bytes up to the first NUL, then a NUL.</summary>
    public static unsafe class BootStrings
    {
        /// <summary>The length of a command line: up to its first NUL or <paramref name="length"/> bytes.</summary>
        public static ulong Length(byte* text, ulong length)
        {
            if (text == null)
                return 0;
            for (ulong i = 0; i < length; i++)
            {
                if (text[i] == 0)
                    return i;
            }
            return length;
        }

        /// <summary>Writes the <paramref name="length"/> bytes at <paramref name="text"/> and a NUL at <paramref name="gpa"/>.</summary>
        public static bool Write<TRam>(ref TRam ram, ulong gpa, byte* text, ulong length) where TRam : struct, IGuestRam
        {
            if (length != 0 && !ram.Write(gpa, text, length))
                return false;
            return ram.Zero(gpa + length, 1);
        }

        /// <summary>The boot loader name the loaders report, "Tandem", without its NUL.</summary>
        public const int LoaderNameLength = 6;

        /// <summary>Writes "Tandem" and a NUL at <paramref name="gpa"/>.</summary>
        public static bool WriteLoaderName<TRam>(ref TRam ram, ulong gpa) where TRam : struct, IGuestRam
        {
            byte* name = stackalloc byte[LoaderNameLength + 1];
            name[0] = (byte)'T';
            name[1] = (byte)'a';
            name[2] = (byte)'n';
            name[3] = (byte)'d';
            name[4] = (byte)'e';
            name[5] = (byte)'m';
            name[6] = 0;
            return ram.Write(gpa, name, LoaderNameLength + 1);
        }
    }
}
