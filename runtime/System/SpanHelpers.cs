using System.Runtime.CompilerServices;

namespace System
{
    /// <summary>Block memory helpers the compiler calls for struct copies, zeroing and initialisation.</summary>
    internal static unsafe class SpanHelpers
    {
        internal static void Memmove(ref byte destination, ref byte source, nuint length)
        {
            byte* d = (byte*)Unsafe.AsPointer(ref destination);
            byte* s = (byte*)Unsafe.AsPointer(ref source);
            if (d < s)
            {
                for (nuint i = 0; i < length; i++)
                    d[i] = s[i];
            }
            else
            {
                for (nuint i = length; i > 0; i--)
                    d[i - 1] = s[i - 1];
            }
        }

        internal static void ClearWithoutReferences(ref byte destination, nuint length)
        {
            byte* d = (byte*)Unsafe.AsPointer(ref destination);
            for (nuint i = 0; i < length; i++)
                d[i] = 0;
        }

        internal static void Fill(ref byte destination, byte value, nuint length)
        {
            byte* d = (byte*)Unsafe.AsPointer(ref destination);
            for (nuint i = 0; i < length; i++)
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
