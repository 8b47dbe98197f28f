using System.Runtime.CompilerServices;

namespace Tandem.Mm;

/// <summary>
/// Contents of a 4 KiB page for the merge scanner: a fast 64-bit hash (xxHash64-like mixing of
/// one 64-bit word at a time; no allocation) and the byte-for-byte compare that decides every
/// merge (the hash only picks candidates).
/// </summary>
public static unsafe class PageHash
{
    private const ulong Prime1 = 0x9E3779B185EBCA87UL;
    private const ulong Prime2 = 0xC2B2AE3D27D4EB4FUL;
    private const ulong Prime3 = 0x165667B19E3779F9UL;
    private const int Words = 512;

    /// <summary>Hashes the page at <paramref name="page"/>; <paramref name="zero"/> tells whether
    /// every byte was 0 (as read: the page may change while it is read; the result is a hint).</summary>
    public static ulong Compute(byte* page, out bool zero)
    {
        ulong* p = (ulong*)page;
        ulong h1 = Prime3;
        ulong h2 = Prime2;
        ulong any = 0;
        for (int i = 0; i < Words; i += 2)
        {
            ulong a = p[i];
            ulong b = p[i + 1];
            any |= a | b;
            h1 = Round(h1, a);
            h2 = Round(h2, b);
        }
        ulong h = RotateLeft(h1, 1) + RotateLeft(h2, 7) + (ulong)(Words * 8);
        h ^= h >> 33;
        h *= Prime2;
        h ^= h >> 29;
        h *= Prime3;
        h ^= h >> 32;
        zero = any == 0;
        return h;
    }

    /// <summary>True when the two pages hold the same 4096 bytes (as read).</summary>
    public static bool Equal(byte* a, byte* b)
    {
        ulong* x = (ulong*)a;
        ulong* y = (ulong*)b;
        for (int i = 0; i < Words; i++)
        {
            if (x[i] != y[i])
                return false;
        }
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Round(ulong acc, ulong input)
    {
        acc += input * Prime2;
        acc = RotateLeft(acc, 31);
        return acc * Prime1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong RotateLeft(ulong value, int count)
    {
        return (value << count) | (value >> (64 - count));
    }
}
