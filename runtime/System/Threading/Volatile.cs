using System.Runtime.CompilerServices;

namespace System.Threading
{
    /// <summary>
    /// Volatile reads and writes with .NET's signatures. A read has acquire and a write release
    /// semantics; on x86-64 both are plain moves that the compiler may not reorder or elide.
    /// </summary>
    public static unsafe class Volatile
    {
        private struct VolatileBoolean { public volatile bool Value; }
        private struct VolatileByte { public volatile byte Value; }
        private struct VolatileInt32 { public volatile int Value; }
        private struct VolatileUInt32 { public volatile uint Value; }
        private struct VolatileIntPtr { public volatile nint Value; }
        private struct VolatileUIntPtr { public volatile nuint Value; }
        private struct VolatileObject { public volatile object? Value; }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static bool Read(ref readonly bool location) => Unsafe.As<bool, VolatileBoolean>(ref Unsafe.AsRef(in location)).Value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Write(ref bool location, bool value) => Unsafe.As<bool, VolatileBoolean>(ref location).Value = value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static byte Read(ref readonly byte location) => Unsafe.As<byte, VolatileByte>(ref Unsafe.AsRef(in location)).Value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Write(ref byte location, byte value) => Unsafe.As<byte, VolatileByte>(ref location).Value = value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static int Read(ref readonly int location) => Unsafe.As<int, VolatileInt32>(ref Unsafe.AsRef(in location)).Value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Write(ref int location, int value) => Unsafe.As<int, VolatileInt32>(ref location).Value = value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static uint Read(ref readonly uint location) => Unsafe.As<uint, VolatileUInt32>(ref Unsafe.AsRef(in location)).Value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Write(ref uint location, uint value) => Unsafe.As<uint, VolatileUInt32>(ref location).Value = value;

        // 64-bit values are single aligned moves on x86-64: read them through a volatile nint.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static long Read(ref readonly long location) => (long)Unsafe.As<long, VolatileIntPtr>(ref Unsafe.AsRef(in location)).Value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Write(ref long location, long value) => Unsafe.As<long, VolatileIntPtr>(ref location).Value = (nint)value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static ulong Read(ref readonly ulong location) => (ulong)Unsafe.As<ulong, VolatileUIntPtr>(ref Unsafe.AsRef(in location)).Value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Write(ref ulong location, ulong value) => Unsafe.As<ulong, VolatileUIntPtr>(ref location).Value = (nuint)value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static nint Read(ref readonly nint location) => Unsafe.As<nint, VolatileIntPtr>(ref Unsafe.AsRef(in location)).Value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Write(ref nint location, nint value) => Unsafe.As<nint, VolatileIntPtr>(ref location).Value = value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static nuint Read(ref readonly nuint location) => Unsafe.As<nuint, VolatileUIntPtr>(ref Unsafe.AsRef(in location)).Value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Write(ref nuint location, nuint value) => Unsafe.As<nuint, VolatileUIntPtr>(ref location).Value = value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static T Read<T>(ref readonly T location) where T : class? =>
            Unsafe.As<T>(Unsafe.As<T, VolatileObject>(ref Unsafe.AsRef(in location)).Value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Write<T>(ref T location, T value) where T : class? =>
            Unsafe.As<T, VolatileObject>(ref location).Value = value;
    }
}
