namespace System
{
    public abstract class ValueType { }

    public abstract class Enum : ValueType { }

    public struct Void { }

    public readonly struct Boolean
    {
        private readonly bool _value;
    }

    public readonly struct Char
    {
        private readonly char _value;
    }

    public readonly struct SByte
    {
        private readonly sbyte _value;
    }

    public readonly struct Byte
    {
        private readonly byte _value;
        public const byte MaxValue = 0xFF;
    }

    public readonly struct Int16
    {
        private readonly short _value;
    }

    public readonly struct UInt16
    {
        private readonly ushort _value;
        public const ushort MaxValue = 0xFFFF;
    }

    public readonly struct Int32
    {
        private readonly int _value;

        /// <summary>Formats as .NET does for "D"/"X" formats, into <paramref name="destination"/>, without allocating.</summary>
        public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format = default, IFormatProvider? provider = null) =>
            Number.TryFormat(_value < 0 && !Number.IsHex(format) ? (ulong)(-(long)_value) : (ulong)(uint)_value, _value < 0 && !Number.IsHex(format), destination, out charsWritten, format);
        public const int MaxValue = 0x7FFFFFFF;
        public const int MinValue = unchecked((int)0x80000000);
    }

    public readonly struct UInt32
    {
        private readonly uint _value;

        /// <summary>Formats as .NET does for "D"/"X" formats, into <paramref name="destination"/>, without allocating.</summary>
        public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format = default, IFormatProvider? provider = null) =>
            Number.TryFormat(_value, false, destination, out charsWritten, format);
        public const uint MaxValue = 0xFFFFFFFF;
    }

    public readonly struct Int64
    {
        private readonly long _value;

        /// <summary>Formats as .NET does for "D"/"X" formats, into <paramref name="destination"/>, without allocating.</summary>
        public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format = default, IFormatProvider? provider = null) =>
            Number.TryFormat(_value < 0 && !Number.IsHex(format) ? (ulong)(-_value) : (ulong)_value, _value < 0 && !Number.IsHex(format), destination, out charsWritten, format);
        public const long MaxValue = 0x7FFFFFFFFFFFFFFF;
        public const long MinValue = unchecked((long)0x8000000000000000);
    }

    public readonly struct UInt64
    {
        private readonly ulong _value;

        /// <summary>Formats as .NET does for "D"/"X" formats, into <paramref name="destination"/>, without allocating.</summary>
        public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format = default, IFormatProvider? provider = null) =>
            Number.TryFormat(_value, false, destination, out charsWritten, format);
        public const ulong MaxValue = 0xFFFFFFFFFFFFFFFF;
    }

    public readonly unsafe struct IntPtr
    {
        private readonly void* _value;
        public static readonly IntPtr Zero;
        public static int Size => sizeof(nint);
        public IntPtr(void* value) { _value = value; }
        public IntPtr(int value) { _value = (void*)value; }
        public IntPtr(long value) { _value = (void*)value; }
        public void* ToPointer() => _value;
        public static explicit operator IntPtr(int value) => new IntPtr(value);
        public static explicit operator IntPtr(long value) => new IntPtr(value);
        public static explicit operator IntPtr(void* value) => new IntPtr(value);
        public static explicit operator void*(IntPtr value) => value._value;
        public static explicit operator long(IntPtr value) => (long)value._value;
        public static explicit operator int(IntPtr value) => (int)value._value;
    }

    public readonly unsafe struct UIntPtr
    {
        private readonly void* _value;
        public static readonly UIntPtr Zero;
        public static int Size => sizeof(nuint);
        public UIntPtr(void* value) { _value = value; }
        public UIntPtr(uint value) { _value = (void*)value; }
        public UIntPtr(ulong value) { _value = (void*)value; }
        public void* ToPointer() => _value;
        public static explicit operator UIntPtr(uint value) => new UIntPtr(value);
        public static explicit operator UIntPtr(ulong value) => new UIntPtr(value);
        public static explicit operator UIntPtr(void* value) => new UIntPtr(value);
        public static explicit operator void*(UIntPtr value) => value._value;
        public static explicit operator ulong(UIntPtr value) => (ulong)value._value;
        public static explicit operator uint(UIntPtr value) => (uint)value._value;
    }

    public readonly struct Single
    {
        private readonly float _value;
    }

    public readonly struct Double
    {
        private readonly double _value;
    }

    public struct Nullable<T> where T : struct
    {
        private readonly bool _hasValue;
        private T _value;

        public Nullable(T value)
        {
            _hasValue = true;
            _value = value;
        }

        public readonly bool HasValue => _hasValue;

        public readonly T Value
        {
            get
            {
                if (!_hasValue)
                    throw new InvalidOperationException("Nullable object must have a value.");
                return _value;
            }
        }

        public readonly T GetValueOrDefault() => _value;

        public static implicit operator T?(T value) => new T?(value);

        public static explicit operator T(T? value) => value!.Value;
    }

    public struct RuntimeTypeHandle
    {
        private IntPtr _value;
    }

    public struct RuntimeMethodHandle
    {
        private IntPtr _value;
    }

    public struct RuntimeFieldHandle
    {
        private IntPtr _value;
    }

    /// <summary>Present because the compiler needs the type; Tandem has no reflection.</summary>
    public abstract class Type
    {
        public static Type? GetTypeFromHandle(RuntimeTypeHandle handle) => null;
    }

    internal sealed class RuntimeType : Type { }

    public interface IFormatProvider
    {
        object? GetFormat(Type? formatType);
    }

    /// <summary>
    /// Integer formatting for logs, behind .NET's <c>TryFormat</c>: "D"/"d" (decimal, optional
    /// minimum digits) and "X"/"x" (hex, optional minimum digits); an empty format is "D". Writes
    /// into the caller's span and never allocates; false when the span is too short or the format
    /// is not one of these.
    /// </summary>
    internal static class Number
    {
        internal static bool IsHex(ReadOnlySpan<char> format) => format.Length > 0 && (format[0] == 'X' || format[0] == 'x');

        internal static bool TryFormat(ulong magnitude, bool negative, Span<char> destination, out int charsWritten, ReadOnlySpan<char> format)
        {
            charsWritten = 0;
            bool hex = IsHex(format);
            if (format.Length > 0 && !hex && format[0] != 'D' && format[0] != 'd')
                return false;
            int minimum = 1;
            if (format.Length > 1)
            {
                minimum = 0;
                for (int i = 1; i < format.Length; i++)
                {
                    if (format[i] < '0' || format[i] > '9' || minimum > 99)
                        return false;
                    minimum = minimum * 10 + (format[i] - '0');
                }
            }
            uint radix = hex ? 16u : 10u;
            char letter = format.Length > 0 && format[0] == 'x' ? 'a' : 'A';
            int digits = 0;
            for (ulong v = magnitude; v != 0; v /= radix)
                digits++;
            if (digits < minimum)
                digits = minimum;
            int length = digits + (negative ? 1 : 0);
            if (length > destination.Length)
                return false;
            int at = length;
            ulong rest = magnitude;
            for (int i = 0; i < digits; i++)
            {
                int d = (int)(rest % radix);
                rest /= radix;
                destination[--at] = (char)(d < 10 ? '0' + d : letter + d - 10);
            }
            if (negative)
                destination[0] = '-';
            charsWritten = length;
            return true;
        }
    }

    public interface IDisposable
    {
        void Dispose();
    }

    public abstract class Delegate { }

    public abstract class MulticastDelegate : Delegate { }

    public readonly ref struct TypedReference { }

    public readonly ref struct ArgIterator { }
}
