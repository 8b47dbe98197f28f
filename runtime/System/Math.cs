namespace System
{
    public static class Math
    {
        public static int Min(int a, int b) => a <= b ? a : b;
        public static uint Min(uint a, uint b) => a <= b ? a : b;
        public static long Min(long a, long b) => a <= b ? a : b;
        public static ulong Min(ulong a, ulong b) => a <= b ? a : b;
        public static int Max(int a, int b) => a >= b ? a : b;
        public static uint Max(uint a, uint b) => a >= b ? a : b;
        public static long Max(long a, long b) => a >= b ? a : b;
        public static ulong Max(ulong a, ulong b) => a >= b ? a : b;
        public static int Abs(int value) => value < 0 ? -value : value;
        public static long Abs(long value) => value < 0 ? -value : value;
    }
}

namespace System.Numerics
{
    /// <summary>Bit helpers with .NET's signatures, written portably (no BMI requirement).</summary>
    public static class BitOperations
    {
        public static bool IsPow2(uint value) => (value & (value - 1)) == 0 && value != 0;

        public static bool IsPow2(ulong value) => (value & (value - 1)) == 0 && value != 0;

        public static int TrailingZeroCount(uint value)
        {
            if (value == 0)
                return 32;
            int n = 0;
            while ((value & 1) == 0)
            {
                value >>= 1;
                n++;
            }
            return n;
        }

        public static int TrailingZeroCount(ulong value)
        {
            uint low = (uint)value;
            return low != 0 ? TrailingZeroCount(low) : 32 + TrailingZeroCount((uint)(value >> 32));
        }

        public static int TrailingZeroCount(int value) => TrailingZeroCount((uint)value);

        public static int TrailingZeroCount(long value) => TrailingZeroCount((ulong)value);

        public static int LeadingZeroCount(uint value) => value == 0 ? 32 : 31 - Log2(value);

        public static int LeadingZeroCount(ulong value) => value == 0 ? 64 : 63 - Log2(value);

        public static int Log2(uint value)
        {
            int n = 0;
            while ((value >>= 1) != 0)
                n++;
            return n;
        }

        public static int Log2(ulong value)
        {
            uint high = (uint)(value >> 32);
            return high != 0 ? 32 + Log2(high) : Log2((uint)value);
        }

        public static int PopCount(uint value)
        {
            value -= (value >> 1) & 0x55555555u;
            value = (value & 0x33333333u) + ((value >> 2) & 0x33333333u);
            value = (value + (value >> 4)) & 0x0F0F0F0Fu;
            return (int)((value * 0x01010101u) >> 24);
        }

        public static int PopCount(ulong value) => PopCount((uint)value) + PopCount((uint)(value >> 32));
    }
}
