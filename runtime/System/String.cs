using System.Runtime.CompilerServices;

namespace System
{
    /// <summary>UTF-16 string. Tandem only has literals (frozen in the image); nothing builds strings at run time.</summary>
    public sealed class String
    {
        // The layout is a contract with ILC: length, then the characters.
        private readonly int _stringLength;
        private char _firstChar;

        public int Length => _stringLength;

        [IndexerName("Chars")]
        public char this[int index]
        {
            get
            {
                if ((uint)index >= (uint)_stringLength)
                    throw new IndexOutOfRangeException();
                return Unsafe.Add(ref _firstChar, index);
            }
        }

        public ref readonly char GetPinnableReference() => ref _firstChar;

        public static implicit operator ReadOnlySpan<char>(string? value) => CharSpan(value);

        internal static ReadOnlySpan<char> CharSpan(string? value) =>
            value is null ? default : new ReadOnlySpan<char>(ref value._firstChar, value._stringLength);
    }

    /// <summary>The string-to-span conversion Roslyn calls by name.</summary>
    public static class MemoryExtensions
    {
        public static ReadOnlySpan<char> AsSpan(this string? text) => string.CharSpan(text);
    }
}
