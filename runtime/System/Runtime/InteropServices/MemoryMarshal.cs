using System.Runtime.CompilerServices;

namespace System.Runtime.InteropServices
{
    public static class MemoryMarshal
    {
        public static Span<T> CreateSpan<T>(scoped ref T reference, int length) => new Span<T>(ref Unsafe.AsRef(in reference), length);

        public static ReadOnlySpan<T> CreateReadOnlySpan<T>(scoped ref readonly T reference, int length) =>
            new ReadOnlySpan<T>(ref Unsafe.AsRef(in reference), length);

        public static ref T GetReference<T>(Span<T> span) => ref span.GetPinnableReference();
    }
}
