using System;

namespace Tandem.Kvm.Acpi
{
    /// <summary>
    /// Little-endian stores into a table being built, the common 36-byte header and the checksum
    /// (ACPI 6.5, 5.2.6: all bytes of a table, checksum included, sum to 0 modulo 256).
    /// </summary>
    public static class TableBytes
    {
        /// <summary>Size of the common description header (ACPI 6.5, Table 5.4).</summary>
        public const int HeaderLength = 36;

        /// <summary>Offset of the header's Length field.</summary>
        public const int LengthOffset = 4;

        /// <summary>Offset of the header's Checksum byte.</summary>
        public const int ChecksumOffset = 9;

        /// <summary>Stores a byte.</summary>
        public static void U8(Span<byte> t, int offset, uint value) => t[offset] = (byte)value;

        /// <summary>Stores 2 bytes, little-endian.</summary>
        public static void U16(Span<byte> t, int offset, uint value)
        {
            t[offset] = (byte)value;
            t[offset + 1] = (byte)(value >> 8);
        }

        /// <summary>Stores 4 bytes, little-endian.</summary>
        public static void U32(Span<byte> t, int offset, uint value)
        {
            t[offset] = (byte)value;
            t[offset + 1] = (byte)(value >> 8);
            t[offset + 2] = (byte)(value >> 16);
            t[offset + 3] = (byte)(value >> 24);
        }

        /// <summary>Stores 8 bytes, little-endian.</summary>
        public static void U64(Span<byte> t, int offset, ulong value)
        {
            U32(t, offset, (uint)value);
            U32(t, offset + 4, (uint)(value >> 32));
        }

        /// <summary>Stores four ASCII characters (a signature or a name segment).</summary>
        public static void Chars4(Span<byte> t, int offset, char a, char b, char c, char d)
        {
            t[offset] = (byte)a;
            t[offset + 1] = (byte)b;
            t[offset + 2] = (byte)c;
            t[offset + 3] = (byte)d;
        }

        /// <summary>Stores the OEM ID "TANDEM" (6 bytes).</summary>
        public static void OemId(Span<byte> t, int offset)
        {
            t[offset] = (byte)'T';
            t[offset + 1] = (byte)'A';
            t[offset + 2] = (byte)'N';
            t[offset + 3] = (byte)'D';
            t[offset + 4] = (byte)'E';
            t[offset + 5] = (byte)'M';
        }

        /// <summary>
        /// Writes the common header at the start of <paramref name="t"/> (whose length is the
        /// table's): signature, length, revision, OEM ID "TANDEM", OEM table ID "TANDEM  ", OEM
        /// revision 1, creator "TNDM" revision 1. The checksum is left 0 for <see cref="SetChecksum"/>.
        /// </summary>
        public static void Header(Span<byte> t, char s0, char s1, char s2, char s3, byte revision)
        {
            Chars4(t, 0, s0, s1, s2, s3);
            U32(t, LengthOffset, (uint)t.Length);
            t[8] = revision;
            t[ChecksumOffset] = 0;
            OemId(t, 10);
            OemId(t, 16);
            t[22] = (byte)' ';
            t[23] = (byte)' ';
            U32(t, 24, 1);
            Chars4(t, 28, 'T', 'N', 'D', 'M');
            U32(t, 32, 1);
        }

        /// <summary>The byte sum of <paramref name="bytes"/> modulo 256 (0 for a valid table).</summary>
        public static byte Sum(ReadOnlySpan<byte> bytes)
        {
            uint sum = 0;
            for (int i = 0; i < bytes.Length; i++)
                sum += bytes[i];
            return (byte)sum;
        }

        /// <summary>Sets the byte at <paramref name="checksumOffset"/> so that the bytes of <paramref name="t"/> sum to 0.</summary>
        public static void SetChecksum(Span<byte> t, int checksumOffset)
        {
            t[checksumOffset] = 0;
            t[checksumOffset] = (byte)(0x100 - Sum(t));
        }

        /// <summary>
        /// A Generic Address Structure (ACPI 6.5, 5.2.3.2) for an I/O port register:
        /// address space 1 (System I/O), the register's width in bits, bit offset 0, the access size
        /// (0 undefined, 1 byte, 2 word, 3 dword) and the port. 12 bytes.
        /// </summary>
        public static void IoGas(Span<byte> t, int offset, int bitWidth, int accessSize, ushort port)
        {
            t[offset] = 1;
            t[offset + 1] = (byte)bitWidth;
            t[offset + 2] = 0;
            t[offset + 3] = (byte)accessSize;
            U64(t, offset + 4, port);
        }
    }
}
