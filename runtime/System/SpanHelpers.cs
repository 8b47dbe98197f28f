using System.Runtime.CompilerServices;

namespace System
{
    /// <summary>Block memory helpers the compiler calls for struct copies, zeroing and initialisation.</summary>
    internal static unsafe class SpanHelpers
    {
        // A word (8 bytes) a step, then the bytes left: x86-64 allows unaligned words. These are
        // what stackalloc's zeroing, struct copies and Span's CopyTo/Clear/Fill compile to, so a
        // byte loop here costs every caller (with one, a swap-in's pool load took 14,900
        // instructions under Bochs, 7,900 without: its 2 KiB stackalloc was zeroed byte by byte).

        internal static void Memmove(ref byte destination, ref byte source, nuint length)
        {
            byte* d = (byte*)Unsafe.AsPointer(ref destination);
            byte* s = (byte*)Unsafe.AsPointer(ref source);
            if (d <= s || d >= s + length)
            {
                // Forward: each word is read before the write that could reach it (d <= s).
                nuint i = 0;
                for (; i + 8 <= length; i += 8)
                    *(ulong*)(d + i) = *(ulong*)(s + i);
                for (; i < length; i++)
                    d[i] = s[i];
            }
            else
            {
                // Backward (d inside the source): each word is read before the write that could reach it.
                nuint i = length;
                for (; i >= 8; i -= 8)
                    *(ulong*)(d + i - 8) = *(ulong*)(s + i - 8);
                for (; i > 0; i--)
                    d[i - 1] = s[i - 1];
            }
        }

        internal static void ClearWithoutReferences(ref byte destination, nuint length)
        {
            Fill(ref destination, 0, length);
        }

        internal static void Fill(ref byte destination, byte value, nuint length)
        {
            byte* d = (byte*)Unsafe.AsPointer(ref destination);
            ulong word = value * 0x0101_0101_0101_0101UL;
            nuint i = 0;
            for (; i + 8 <= length; i += 8)
                *(ulong*)(d + i) = word;
            for (; i < length; i++)
                d[i] = value;
        }
    }

    public static class Buffer
    {
        internal static void MemmoveInternal(ref byte destination, ref byte source, nuint length) =>
            SpanHelpers.Memmove(ref destination, ref source, length);

        internal static unsafe void Memmove(ref byte destination, ref byte source, nuint length) =>
            SpanHelpers.Memmove(ref destination, ref source, length);

        // No collector, so no write barrier: a plain move.
        internal static void BulkMoveWithWriteBarrier(ref byte destination, ref byte source, nuint byteCount) =>
            SpanHelpers.Memmove(ref destination, ref source, byteCount);
    }
}

namespace System.Runtime.InteropServices
{
    /// <summary>Present because ILC requires it; Tandem never implements it.</summary>
    public interface IDynamicInterfaceCastable
    {
        internal static nint GetDynamicInterfaceImplementation(object instance, nint interfaceType, ushort slot)
        {
            Internal.Runtime.Panic.FailFast("IDynamicInterfaceCastable is not supported");
            return 0;
        }
    }
}
