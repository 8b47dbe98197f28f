using System;
using System.Buffers.Binary;
using CsCheck;

namespace Tandem.Kernel.Tests;

/// <summary>
/// Mutations of valid inputs as CsCheck generators, so a failing case shrinks to few, small
/// operations: bit flips, byte replacements, interesting 16/32/64-bit values written over fields,
/// truncation, extension with random bytes, and a chunk copied elsewhere.
/// </summary>
public static class Mutations
{
    public static readonly ulong[] Interesting =
    {
        0, 1, 2, 7, 8, 15, 16, 20, 23, 24, 36, 44, 0x7F, 0x80, 0xFF, 0x100, 0xFFF, 0x1000, 0x7FFF, 0xFFFF,
        0x10_0000, 0xFFFF_FFFF, 0xFFFF_FFF8, 0x7FFF_FFFF, 0x8000_0000, 0x1_0000_0000, 0xFFFF_F000,
        0x8000_0000_0000_0000, ulong.MaxValue, ulong.MaxValue - 0xFFF,
    };

    /// <summary>One operation: what (0..99), where (any int, taken modulo the length), and a value.</summary>
    public static readonly Gen<(int Kind, int At, ulong Value)> Operation =
        Gen.Select(Gen.Int[0, 99], Gen.Int[0, int.MaxValue], Gen.Frequency((3, Gen.Int[0, Interesting.Length - 1].Select(i => Interesting[i])), (1, Gen.ULong)));

    /// <summary>1 to 6 operations applied to a copy of <paramref name="seed"/>.</summary>
    public static byte[] Apply(byte[] seed, (int Kind, int At, ulong Value)[] ops, int alignFields = 4)
    {
        byte[] b = (byte[])seed.Clone();
        foreach (var (kind, at, value) in ops)
        {
            if (b.Length == 0)
            {
                b = new byte[] { (byte)value };
                continue;
            }
            int p = at % b.Length;
            if (kind < 20)
                b[p] ^= (byte)(1 << (int)(value & 7));
            else if (kind < 30)
                b[p] = (byte)value;
            else if (kind < 75)
            {
                int field = p & ~(alignFields - 1);
                if (kind < 50 && field + 4 <= b.Length)
                    BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(field), (uint)value);
                else if (kind < 62 && field + 8 <= b.Length)
                    BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(field), value);
                else if (field + 2 <= b.Length)
                    BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(field), (ushort)value);
            }
            else if (kind < 85)
                Array.Resize(ref b, p);
            else if (kind < 93)
            {
                int old = b.Length;
                Array.Resize(ref b, old + 1 + (int)(value % 64));
                var r = new Random((int)value);
                r.NextBytes(b.AsSpan(old));
            }
            else
            {
                int length = 1 + (int)(value % 32);
                int from = (int)((value >> 8) % (ulong)b.Length);
                length = Math.Min(length, Math.Min(b.Length - from, b.Length - p));
                Array.Copy(b, from, b, p, length);
            }
        }
        return b;
    }
}
