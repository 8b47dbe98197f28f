using System;

namespace Tandem.Kvm.Acpi
{
    /// <summary>
    /// The few AML encodings the DSDT needs (ACPI 6.5, 20.2): opcodes, integer constants and the
    /// PkgLength of a package or scope.
    /// </summary>
    public static class Aml
    {
        /// <summary>ZeroOp: the constant 0.</summary>
        public const byte ZeroOp = 0x00;
        /// <summary>OneOp: the constant 1.</summary>
        public const byte OneOp = 0x01;
        /// <summary>NameOp: Name(NameString, DataRefObject).</summary>
        public const byte NameOp = 0x08;
        /// <summary>BytePrefix: an 8-bit constant follows.</summary>
        public const byte BytePrefix = 0x0A;
        /// <summary>WordPrefix: a 16-bit constant follows.</summary>
        public const byte WordPrefix = 0x0B;
        /// <summary>DWordPrefix: a 32-bit constant follows.</summary>
        public const byte DWordPrefix = 0x0C;
        /// <summary>PackageOp: PkgLength, NumElements, PackageElementList.</summary>
        public const byte PackageOp = 0x12;
        /// <summary>OnesOp: all ones.</summary>
        public const byte OnesOp = 0xFF;

        /// <summary>The largest PkgLength the 4-byte form holds (28 bits).</summary>
        public const int MaxPkgLength = 0x0FFF_FFFF;

        /// <summary>
        /// Bytes the PkgLength of a package whose contents (after the PkgLength) are
        /// <paramref name="contentLength"/> bytes takes: 1 up to a total of 63, else 2, 3 or 4
        /// (the encoded length counts the PkgLength bytes themselves). 0 if it does not fit.
        /// </summary>
        public static int PkgLengthSize(int contentLength)
        {
            if (contentLength < 0)
                return 0;
            if (contentLength + 1 <= 0x3F)
                return 1;
            if (contentLength + 2 <= 0xFFF)
                return 2;
            if (contentLength + 3 <= 0xF_FFFF)
                return 3;
            if (contentLength + 4 <= MaxPkgLength)
                return 4;
            return 0;
        }

        /// <summary>
        /// Writes the PkgLength for <paramref name="contentLength"/> bytes of contents at
        /// <paramref name="offset"/> and returns its size (<see cref="PkgLengthSize"/>). The
        /// one-byte form holds the length in bits 5:0; the longer forms put the number of following
        /// bytes in bits 7:6, the low 4 bits of the length in bits 3:0, and the rest of it, 8 bits
        /// at a time, in the following bytes (ACPI 6.5, 20.2.4).
        /// </summary>
        public static int WritePkgLength(Span<byte> t, int offset, int contentLength)
        {
            int size = PkgLengthSize(contentLength);
            if (size == 0)
                throw new ArgumentOutOfRangeException(nameof(contentLength), "AML package too long for a PkgLength");
            int total = contentLength + size;
            if (size == 1)
            {
                t[offset] = (byte)total;
                return 1;
            }
            t[offset] = (byte)(((size - 1) << 6) | (total & 0x0F));
            for (int i = 1; i < size; i++)
                t[offset + i] = (byte)(total >> (4 + 8 * (i - 1)));
            return size;
        }

        /// <summary>Writes the shortest encoding of the integer <paramref name="value"/> and returns its size (1, 2, 3 or 5).</summary>
        public static int WriteInteger(Span<byte> t, int offset, uint value)
        {
            if (value == 0)
            {
                t[offset] = ZeroOp;
                return 1;
            }
            if (value == 1)
            {
                t[offset] = OneOp;
                return 1;
            }
            if (value <= 0xFF)
            {
                t[offset] = BytePrefix;
                t[offset + 1] = (byte)value;
                return 2;
            }
            if (value <= 0xFFFF)
            {
                t[offset] = WordPrefix;
                TableBytes.U16(t, offset + 1, value);
                return 3;
            }
            t[offset] = DWordPrefix;
            TableBytes.U32(t, offset + 1, value);
            return 5;
        }

        /// <summary>Bytes <see cref="WriteInteger"/> takes for <paramref name="value"/>.</summary>
        public static int IntegerSize(uint value) => value <= 1 ? 1 : value <= 0xFF ? 2 : value <= 0xFFFF ? 3 : 5;
    }
}
