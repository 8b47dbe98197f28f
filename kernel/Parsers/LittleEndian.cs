using System;

namespace Tandem.Kernel.Parsers
{
    /// <summary>Little-endian reads from a bounds-checked span (portable: kernel and host tests).</summary>
    public static class LittleEndian
    {
        public static ushort Read16(ReadOnlySpan<byte> b, int at) => (ushort)(b[at] | b[at + 1] << 8);

        public static uint Read32(ReadOnlySpan<byte> b, int at) =>
            (uint)b[at] | (uint)b[at + 1] << 8 | (uint)b[at + 2] << 16 | (uint)b[at + 3] << 24;

        public static ulong Read64(ReadOnlySpan<byte> b, int at) => Read32(b, at) | (ulong)Read32(b, at + 4) << 32;
    }
}
