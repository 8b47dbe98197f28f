using System.Runtime.CompilerServices;

namespace System.Threading
{
    /// <summary>
    /// Atomic operations with .NET's signatures. The [Intrinsic] ones are expanded by the compiler into
    /// single locked instructions (lock cmpxchg, xchg, lock xadd); their bodies call themselves only
    /// as the fallback the intrinsic expansion replaces. And/Or are compare-exchange loops over them.
    /// Every one is a full barrier.
    /// </summary>
    public static class Interlocked
    {
        [Intrinsic]
        public static int CompareExchange(ref int location1, int value, int comparand) => CompareExchange(ref location1, value, comparand);

        [Intrinsic]
        public static long CompareExchange(ref long location1, long value, long comparand) => CompareExchange(ref location1, value, comparand);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static uint CompareExchange(ref uint location1, uint value, uint comparand) =>
            (uint)CompareExchange(ref Unsafe.As<uint, int>(ref location1), (int)value, (int)comparand);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static ulong CompareExchange(ref ulong location1, ulong value, ulong comparand) =>
            (ulong)CompareExchange(ref Unsafe.As<ulong, long>(ref location1), (long)value, (long)comparand);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static nint CompareExchange(ref nint location1, nint value, nint comparand) =>
            (nint)CompareExchange(ref Unsafe.As<nint, long>(ref location1), (long)value, (long)comparand);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static T CompareExchange<T>(ref T location1, T value, T comparand) where T : class?
        {
            nint result = CompareExchange(ref Unsafe.As<T, nint>(ref location1), Unsafe.As<T, nint>(ref value), Unsafe.As<T, nint>(ref comparand));
            return Unsafe.As<nint, T>(ref result);
        }

        [Intrinsic]
        public static int Exchange(ref int location1, int value) => Exchange(ref location1, value);

        [Intrinsic]
        public static long Exchange(ref long location1, long value) => Exchange(ref location1, value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static uint Exchange(ref uint location1, uint value) => (uint)Exchange(ref Unsafe.As<uint, int>(ref location1), (int)value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static ulong Exchange(ref ulong location1, ulong value) => (ulong)Exchange(ref Unsafe.As<ulong, long>(ref location1), (long)value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static T Exchange<T>(ref T location1, T value) where T : class?
        {
            long result = Exchange(ref Unsafe.As<T, long>(ref location1), Unsafe.As<T, long>(ref value));
            return Unsafe.As<long, T>(ref result);
        }

        [Intrinsic]
        private static int ExchangeAdd(ref int location1, int value) => ExchangeAdd(ref location1, value);

        [Intrinsic]
        private static long ExchangeAdd(ref long location1, long value) => ExchangeAdd(ref location1, value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static int Add(ref int location1, int value) => ExchangeAdd(ref location1, value) + value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static long Add(ref long location1, long value) => ExchangeAdd(ref location1, value) + value;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static uint Add(ref uint location1, uint value) => (uint)Add(ref Unsafe.As<uint, int>(ref location1), (int)value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static ulong Add(ref ulong location1, ulong value) => (ulong)Add(ref Unsafe.As<ulong, long>(ref location1), (long)value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static int Increment(ref int location) => Add(ref location, 1);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static long Increment(ref long location) => Add(ref location, 1);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static uint Increment(ref uint location) => Add(ref location, 1);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static ulong Increment(ref ulong location) => Add(ref location, 1);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static int Decrement(ref int location) => Add(ref location, -1);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static long Decrement(ref long location) => Add(ref location, -1);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static uint Decrement(ref uint location) => (uint)Add(ref Unsafe.As<uint, int>(ref location), -1);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static ulong Decrement(ref ulong location) => (ulong)Add(ref Unsafe.As<ulong, long>(ref location), -1);

        /// <summary>Atomically ANDs; returns the original value (as .NET does).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static int And(ref int location1, int value)
        {
            int current = location1;
            while (true)
            {
                int seen = CompareExchange(ref location1, current & value, current);
                if (seen == current)
                    return seen;
                current = seen;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static long And(ref long location1, long value)
        {
            long current = location1;
            while (true)
            {
                long seen = CompareExchange(ref location1, current & value, current);
                if (seen == current)
                    return seen;
                current = seen;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static uint And(ref uint location1, uint value) => (uint)And(ref Unsafe.As<uint, int>(ref location1), (int)value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static ulong And(ref ulong location1, ulong value) => (ulong)And(ref Unsafe.As<ulong, long>(ref location1), (long)value);

        /// <summary>Atomically ORs; returns the original value (as .NET does).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static int Or(ref int location1, int value)
        {
            int current = location1;
            while (true)
            {
                int seen = CompareExchange(ref location1, current | value, current);
                if (seen == current)
                    return seen;
                current = seen;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static long Or(ref long location1, long value)
        {
            long current = location1;
            while (true)
            {
                long seen = CompareExchange(ref location1, current | value, current);
                if (seen == current)
                    return seen;
                current = seen;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static uint Or(ref uint location1, uint value) => (uint)Or(ref Unsafe.As<uint, int>(ref location1), (int)value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static ulong Or(ref ulong location1, ulong value) => (ulong)Or(ref Unsafe.As<ulong, long>(ref location1), (long)value);

        [Intrinsic]
        public static void MemoryBarrier() => MemoryBarrier();
    }
}
