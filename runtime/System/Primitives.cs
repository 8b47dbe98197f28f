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
        public const int MaxValue = 0x7FFFFFFF;
        public const int MinValue = unchecked((int)0x80000000);
    }

    public readonly struct UInt32
    {
        private readonly uint _value;
        public const uint MaxValue = 0xFFFFFFFF;
    }

    public readonly struct Int64
    {
        private readonly long _value;
        public const long MaxValue = 0x7FFFFFFFFFFFFFFF;
        public const long MinValue = unchecked((long)0x8000000000000000);
    }

    public readonly struct UInt64
    {
        private readonly ulong _value;
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

    public interface IDisposable
    {
        void Dispose();
    }

    public abstract class Delegate { }

    public abstract class MulticastDelegate : Delegate { }

    public readonly ref struct TypedReference { }

    public readonly ref struct ArgIterator { }
}
