using System.Runtime.CompilerServices;

namespace System
{
    /// <summary>A bounds-checked view of contiguous memory, with .NET's signatures.</summary>
    public readonly ref struct Span<T>
    {
        private readonly ref T _reference;
        private readonly int _length;

        public Span(T[]? array)
        {
            if (array is null)
            {
                this = default;
                return;
            }
            _reference = ref Unsafe.As<byte, T>(ref Unsafe.As<RawArrayData>(array).Data);
            _length = array.Length;
        }

        public Span(T[]? array, int start, int length)
        {
            if (array is null)
            {
                if (start != 0 || length != 0)
                    throw new ArgumentOutOfRangeException(nameof(start), "null array with a non-empty range");
                this = default;
                return;
            }
            if ((ulong)(uint)start + (ulong)(uint)length > (ulong)(uint)array.Length)
                throw new ArgumentOutOfRangeException(nameof(start), "range outside the array");
            _reference = ref Unsafe.Add(ref Unsafe.As<byte, T>(ref Unsafe.As<RawArrayData>(array).Data), start);
            _length = length;
        }

        public unsafe Span(void* pointer, int length)
        {
            if (length < 0)
                throw new ArgumentOutOfRangeException(nameof(length), "negative length");
            _reference = ref Unsafe.AsRef<T>(pointer);
            _length = length;
        }

        public Span(ref T reference)
        {
            _reference = ref reference;
            _length = 1;
        }

        internal Span(ref T reference, int length)
        {
            _reference = ref reference;
            _length = length;
        }

        public ref T this[int index]
        {
            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            get
            {
                if ((uint)index >= (uint)_length)
                    ThrowIndexOutOfRange();
                return ref Unsafe.Add(ref _reference, (nint)(uint)index);
            }
        }

        public int Length => _length;

        public bool IsEmpty => _length == 0;

        public static Span<T> Empty => default;

        public ref T GetPinnableReference() => ref _length != 0 ? ref _reference : ref Unsafe.NullRef<T>();

        public Span<T> Slice(int start)
        {
            if ((uint)start > (uint)_length)
                throw new ArgumentOutOfRangeException(nameof(start), "slice start beyond the end");
            return new Span<T>(ref Unsafe.Add(ref _reference, (nint)(uint)start), _length - start);
        }

        public Span<T> Slice(int start, int length)
        {
            if ((ulong)(uint)start + (ulong)(uint)length > (ulong)(uint)_length)
                throw new ArgumentOutOfRangeException(nameof(start), "slice outside the span");
            return new Span<T>(ref Unsafe.Add(ref _reference, (nint)(uint)start), length);
        }

        public void Clear()
        {
            for (int i = 0; i < _length; i++)
                Unsafe.Add(ref _reference, i) = default!;
        }

        public void Fill(T value)
        {
            for (int i = 0; i < _length; i++)
                Unsafe.Add(ref _reference, i) = value;
        }

        public void CopyTo(Span<T> destination)
        {
            if ((uint)_length > (uint)destination.Length)
                throw new ArgumentException("Destination is too short.");
            if (Unsafe.IsAddressLessThan(ref destination._reference, ref _reference))
            {
                for (int i = 0; i < _length; i++)
                    Unsafe.Add(ref destination._reference, i) = Unsafe.Add(ref _reference, i);
            }
            else
            {
                for (int i = _length - 1; i >= 0; i--)
                    Unsafe.Add(ref destination._reference, i) = Unsafe.Add(ref _reference, i);
            }
        }

        public Enumerator GetEnumerator() => new Enumerator(this);

        public static implicit operator Span<T>(T[]? array) => new Span<T>(array);

        public static implicit operator ReadOnlySpan<T>(Span<T> span) => new ReadOnlySpan<T>(ref span._reference, span._length);

        private static void ThrowIndexOutOfRange() => throw new IndexOutOfRangeException();

        public ref struct Enumerator
        {
            private readonly Span<T> _span;
            private int _index;

            internal Enumerator(Span<T> span)
            {
                _span = span;
                _index = -1;
            }

            public bool MoveNext()
            {
                int index = _index + 1;
                if (index < _span.Length)
                {
                    _index = index;
                    return true;
                }
                return false;
            }

            public ref T Current => ref _span[_index];
        }
    }

    /// <summary>A read-only bounds-checked view of contiguous memory, with .NET's signatures.</summary>
    public readonly ref struct ReadOnlySpan<T>
    {
        private readonly ref T _reference;
        private readonly int _length;

        public ReadOnlySpan(T[]? array)
        {
            if (array is null)
            {
                this = default;
                return;
            }
            _reference = ref Unsafe.As<byte, T>(ref Unsafe.As<RawArrayData>(array).Data);
            _length = array.Length;
        }

        public ReadOnlySpan(T[]? array, int start, int length)
        {
            if (array is null)
            {
                if (start != 0 || length != 0)
                    throw new ArgumentOutOfRangeException(nameof(start), "null array with a non-empty range");
                this = default;
                return;
            }
            if ((ulong)(uint)start + (ulong)(uint)length > (ulong)(uint)array.Length)
                throw new ArgumentOutOfRangeException(nameof(start), "range outside the array");
            _reference = ref Unsafe.Add(ref Unsafe.As<byte, T>(ref Unsafe.As<RawArrayData>(array).Data), start);
            _length = length;
        }

        public unsafe ReadOnlySpan(void* pointer, int length)
        {
            if (length < 0)
                throw new ArgumentOutOfRangeException(nameof(length), "negative length");
            _reference = ref Unsafe.AsRef<T>(pointer);
            _length = length;
        }

        internal ReadOnlySpan(ref T reference, int length)
        {
            _reference = ref reference;
            _length = length;
        }

        public ref readonly T this[int index]
        {
            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            get
            {
                if ((uint)index >= (uint)_length)
                    ThrowIndexOutOfRange();
                return ref Unsafe.Add(ref _reference, (nint)(uint)index);
            }
        }

        public int Length => _length;

        public bool IsEmpty => _length == 0;

        public static ReadOnlySpan<T> Empty => default;

        public ref readonly T GetPinnableReference() => ref _length != 0 ? ref _reference : ref Unsafe.NullRef<T>();

        public ReadOnlySpan<T> Slice(int start)
        {
            if ((uint)start > (uint)_length)
                throw new ArgumentOutOfRangeException(nameof(start), "slice start beyond the end");
            return new ReadOnlySpan<T>(ref Unsafe.Add(ref _reference, (nint)(uint)start), _length - start);
        }

        public ReadOnlySpan<T> Slice(int start, int length)
        {
            if ((ulong)(uint)start + (ulong)(uint)length > (ulong)(uint)_length)
                throw new ArgumentOutOfRangeException(nameof(start), "slice outside the span");
            return new ReadOnlySpan<T>(ref Unsafe.Add(ref _reference, (nint)(uint)start), length);
        }

        public void CopyTo(Span<T> destination)
        {
            if ((uint)_length > (uint)destination.Length)
                throw new ArgumentException("Destination is too short.");
            for (int i = 0; i < _length; i++)
                destination[i] = Unsafe.Add(ref _reference, i);
        }

        public Enumerator GetEnumerator() => new Enumerator(this);

        public static implicit operator ReadOnlySpan<T>(T[]? array) => new ReadOnlySpan<T>(array);

        private static void ThrowIndexOutOfRange() => throw new IndexOutOfRangeException();

        public ref struct Enumerator
        {
            private readonly ReadOnlySpan<T> _span;
            private int _index;

            internal Enumerator(ReadOnlySpan<T> span)
            {
                _span = span;
                _index = -1;
            }

            public bool MoveNext()
            {
                int index = _index + 1;
                if (index < _span.Length)
                {
                    _index = index;
                    return true;
                }
                return false;
            }

            public ref readonly T Current => ref _span[_index];
        }
    }

    /// <summary>The layout of an array object past its MethodTable: length, padding, then the data.</summary>
    internal sealed class RawArrayData
    {
#pragma warning disable CS0649
        public uint Length;
        public uint Padding;
        public byte Data;
#pragma warning restore CS0649
    }

    /// <summary>The first field of any object, for raw copies.</summary>
    internal sealed class RawData
    {
#pragma warning disable CS0649
        public byte Data;
#pragma warning restore CS0649
    }
}
