using System;
using System.Runtime.CompilerServices;

namespace Tandem.Mm;

/// <summary>
/// The LZ4 block format (no frame header, no checksum), written from the format description:
/// a block is a series of sequences, each a token byte (literal count in the high nibble, match
/// length − 4 in the low one; 15 means "more length bytes follow", each adding up to 255), the
/// literals, a 2-byte little-endian match offset (1..65535) and the match length bytes. The last
/// sequence has literals only. An encoder must leave the last 5 bytes as literals and start no
/// match in the last 12 bytes, which is what lets a decoder stop on "input used up" after literals.
/// </summary>
/// <remarks>
/// The compressor is a greedy single-probe hash matcher (the same kind as LZ4's fast level) for
/// inputs up to <see cref="MaxInput"/> bytes; its hash table of <see cref="HashEntries"/> 16-bit
/// positions is the caller's (usually a stackalloc), so nothing is allocated. The decompressor
/// checks every length against both buffers before it touches them: on any input it reads only
/// <c>[src, src + srcLength)</c>, writes only <c>[dst, dst + dstCapacity)</c>, and returns
/// <see cref="Corrupt"/> for a block that is not well formed.
/// </remarks>
public static unsafe class Lz4Block
{
    /// <summary>Largest input <see cref="Compress"/> takes (positions are kept in 16 bits).</summary>
    public const int MaxInput = 65535;

    /// <summary>Entries of the compressor's hash table (16-bit positions).</summary>
    public const int HashEntries = 1 << HashLog;

    /// <summary>What <see cref="Decompress"/> returns for a block that is not well formed.</summary>
    public const int Corrupt = -1;

    private const int HashLog = 12;
    private const int MinMatch = 4;
    // The format's end rules: the last 5 bytes are literals, and no match starts in the last 12.
    private const int LastLiterals = 5;
    private const int MatchFindLimit = 12;
    private const int MaxOffset = 65535;
    // After 2^SkipShift failed probes the compressor steps 2 bytes at a time, then 3, ... (LZ4's
    // acceleration): incompressible data is crossed quickly.
    private const int SkipShift = 6;

    /// <summary>
    /// Compresses <c>[src, src + srcLength)</c> into <paramref name="dst"/>. Returns the block's
    /// length, or 0 when it would not fit in <paramref name="dstCapacity"/> bytes (the caller
    /// stores the data some other way). <paramref name="hashTable"/> holds
    /// <see cref="HashEntries"/> entries; its contents on entry do not matter.
    /// </summary>
    public static int Compress(byte* src, int srcLength, byte* dst, int dstCapacity, ushort* hashTable)
    {
        if (srcLength < 0 || srcLength > MaxInput)
            throw new ArgumentOutOfRangeException(nameof(srcLength), "Lz4Block: input longer than MaxInput");
        // Zero means "position 0": a stale entry is only a candidate that the 4-byte compare rejects.
        new Span<ushort>(hashTable, HashEntries).Clear();
        int anchor = 0;
        int op = 0;
        if (srcLength >= MatchFindLimit + 1)
        {
            int matchLimit = srcLength - LastLiterals;
            int lastMatchStart = srcLength - MatchFindLimit;
            int ip = 1;
            hashTable[Hash(Read32(src))] = 0;
            while (true)
            {
                // Find a match: probe the table at ip, stepping faster the longer nothing is found.
                int candidate;
                int probes = 1 << SkipShift;
                while (true)
                {
                    if (ip > lastMatchStart)
                        goto LastLiteralsRun;
                    uint sequence = Read32(src + ip);
                    uint h = Hash(sequence);
                    candidate = hashTable[h];
                    hashTable[h] = (ushort)ip;
                    // Every stored position is below ip and inputs are at most 64 KiB, so the
                    // offset is in range; the compare alone decides.
                    if (Read32(src + candidate) == sequence && ip - candidate <= MaxOffset)
                        break;
                    ip += probes++ >> SkipShift;
                }
                // Extend backwards over literals that also match.
                while (ip > anchor && candidate > 0 && src[ip - 1] == src[candidate - 1])
                {
                    ip--;
                    candidate--;
                }
                int matchLength = MinMatch + CommonLength(src + ip + MinMatch, src + candidate + MinMatch, src + matchLimit);
                op = WriteSequence(src + anchor, ip - anchor, ip - candidate, matchLength, dst, op, dstCapacity);
                if (op < 0)
                    return 0;
                ip += matchLength;
                anchor = ip;
                if (ip > lastMatchStart)
                    break;
                // Remember a position inside the match so that the next repeat finds it.
                hashTable[Hash(Read32(src + ip - 2))] = (ushort)(ip - 2);
            }
        }
    LastLiteralsRun:
        int literals = srcLength - anchor;
        int need = 1 + (literals >= 15 ? (literals - 15) / 255 + 1 : 0) + literals;
        if (need > dstCapacity - op)
            return 0;
        op = WriteLiteralHeader(dst, op, literals, 0);
        Copy(dst + op, src + anchor, literals);
        return op + literals;
    }

    /// <summary>
    /// Decodes the block <c>[src, src + srcLength)</c> into <c>[dst, dst + dstCapacity)</c>.
    /// Returns the decoded length, or <see cref="Corrupt"/> when the block is malformed or decodes
    /// to more than <paramref name="dstCapacity"/> bytes. Never reads or writes outside the two
    /// ranges, whatever the block holds.
    /// </summary>
    public static int Decompress(byte* src, int srcLength, byte* dst, int dstCapacity)
    {
        if (srcLength <= 0 || dstCapacity < 0)
            return Corrupt;
        int ip = 0;
        int op = 0;
        while (true)
        {
            // A sequence needs at least its token; the block cannot end after a match.
            if (ip >= srcLength)
                return Corrupt;
            int token = src[ip++];
            int literals = token >> 4;
            if (literals == 15)
            {
                int more = ReadLengthBytes(src, ref ip, srcLength, dstCapacity);
                if (more < 0)
                    return Corrupt;
                literals += more;
            }
            // Both bounds, as subtractions that cannot overflow: the literals are in the source
            // and fit in the destination.
            if (literals > srcLength - ip || literals > dstCapacity - op)
                return Corrupt;
            Copy(dst + op, src + ip, literals);
            ip += literals;
            op += literals;
            if (ip == srcLength)
                return op; // The last sequence: literals only.
            if (srcLength - ip < 2)
                return Corrupt;
            int offset = src[ip] | (src[ip + 1] << 8);
            ip += 2;
            // Offset 0 is invalid, and a match may only copy bytes already written.
            if (offset == 0 || offset > op)
                return Corrupt;
            int matchLength = token & 15;
            if (matchLength == 15)
            {
                int more = ReadLengthBytes(src, ref ip, srcLength, dstCapacity);
                if (more < 0)
                    return Corrupt;
                matchLength += more;
            }
            matchLength += MinMatch;
            if (matchLength > dstCapacity - op)
                return Corrupt;
            CopyMatch(dst + op, offset, matchLength);
            op += matchLength;
        }
    }

    /// <summary>
    /// The extra length bytes after a nibble of 15: their sum, or −1 when the source ends inside
    /// them or the sum already exceeds <paramref name="cap"/> (so the sum never overflows).
    /// </summary>
    private static int ReadLengthBytes(byte* src, ref int ip, int srcLength, int cap)
    {
        int sum = 0;
        int b;
        do
        {
            if (ip >= srcLength)
                return -1;
            b = src[ip++];
            sum += b;
            if (sum > cap)
                return -1;
        }
        while (b == 255);
        return sum;
    }

    /// <summary>Writes one sequence at <paramref name="op"/>; the new position, or −1 when it does not fit.</summary>
    private static int WriteSequence(byte* literalsStart, int literals, int offset, int matchLength, byte* dst, int op, int capacity)
    {
        int m = matchLength - MinMatch;
        int need = 1 + (literals >= 15 ? (literals - 15) / 255 + 1 : 0) + literals + 2 + (m >= 15 ? (m - 15) / 255 + 1 : 0);
        if (need > capacity - op)
            return -1;
        op = WriteLiteralHeader(dst, op, literals, m >= 15 ? 15 : m);
        Copy(dst + op, literalsStart, literals);
        op += literals;
        dst[op++] = (byte)offset;
        dst[op++] = (byte)(offset >> 8);
        if (m >= 15)
            op = WriteLengthBytes(dst, op, m - 15);
        return op;
    }

    /// <summary>Token (with <paramref name="matchNibble"/>) and the literal length bytes.</summary>
    private static int WriteLiteralHeader(byte* dst, int op, int literals, int matchNibble)
    {
        if (literals >= 15)
        {
            dst[op++] = (byte)(0xF0 | matchNibble);
            return WriteLengthBytes(dst, op, literals - 15);
        }
        dst[op++] = (byte)((literals << 4) | matchNibble);
        return op;
    }

    private static int WriteLengthBytes(byte* dst, int op, int rest)
    {
        while (rest >= 255)
        {
            dst[op++] = 255;
            rest -= 255;
        }
        dst[op++] = (byte)rest;
        return op;
    }

    /// <summary>Bytes equal at <paramref name="a"/> and <paramref name="b"/>, with <paramref name="a"/> stopping at <paramref name="aLimit"/>.</summary>
    private static int CommonLength(byte* a, byte* b, byte* aLimit)
    {
        byte* start = a;
        while (a + 8 <= aLimit)
        {
            ulong diff = Unsafe.ReadUnaligned<ulong>(a) ^ Unsafe.ReadUnaligned<ulong>(b);
            if (diff != 0)
                return (int)(a - start) + (System.Numerics.BitOperations.TrailingZeroCount(diff) >> 3);
            a += 8;
            b += 8;
        }
        while (a < aLimit && *a == *b)
        {
            a++;
            b++;
        }
        return (int)(a - start);
    }

    /// <summary>Copies a match of <paramref name="length"/> bytes from <paramref name="offset"/> back; the ranges may overlap.</summary>
    private static void CopyMatch(byte* d, int offset, int length)
    {
        // An overlapping match repeats the last `offset` bytes with period `offset`, so any multiple
        // of it is as good a distance. Widen a short one to the smallest multiple that is at least
        // 8 (4 → 8, 3 → 9, 7 → 14), writing the first (stride − offset) bytes one by one: from then
        // on the byte `stride` back is already part of the pattern, and each 8-byte read lies wholly
        // before the write that follows it. A page of one repeated word (offset 4) then copies 8
        // bytes a step, not 1.
        int stride = offset;
        if (stride < 8)
            stride = offset * ((8 + offset - 1) / offset);
        byte* s = d - offset;
        int head = stride - offset;
        while (head > 0 && length > 0)
        {
            *d++ = *s++;
            head--;
            length--;
        }
        s = d - stride;
        // Nothing is written past d + length.
        while (length >= 8)
        {
            Unsafe.WriteUnaligned(d, Unsafe.ReadUnaligned<ulong>(s));
            d += 8;
            s += 8;
            length -= 8;
        }
        while (length > 0)
        {
            *d++ = *s++;
            length--;
        }
    }

    /// <summary>Copies non-overlapping bytes, 8 at a time (also the swap pool's copy).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Copy(byte* d, byte* s, int length)
    {
        while (length >= 8)
        {
            Unsafe.WriteUnaligned(d, Unsafe.ReadUnaligned<ulong>(s));
            d += 8;
            s += 8;
            length -= 8;
        }
        while (length > 0)
        {
            *d++ = *s++;
            length--;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Read32(byte* p) { return Unsafe.ReadUnaligned<uint>(p); }

    /// <summary>Fibonacci hashing of 4 bytes (Knuth's multiplicative constant).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Hash(uint sequence) { return (sequence * 2654435761u) >> (32 - HashLog); }
}
