using System;
using System.Runtime.CompilerServices;

namespace Tandem.Kernel.Parsers
{
    /// <summary>
    /// How the ACPI parser reads physical memory: the kernel's identity map, or a test's fake
    /// memory. <see cref="Read"/> returns the bytes at [address, address + length), or an empty
    /// span when they are not all readable.
    /// </summary>
    public interface IPhysicalReader
    {
        ReadOnlySpan<byte> Read(ulong address, int length);
    }

    /// <summary>The processors the MADT lists, and what was wrong with it.</summary>
    public struct AcpiInfo
    {
        public const int MaxApics = 64;

        /// <summary>Distinct APIC ids of enabled (or online-capable) processors, in MADT order, at most <see cref="MaxApics"/>.</summary>
        public int ApicCount;
        /// <summary>Enabled processors the MADT lists, duplicates and those past <see cref="MaxApics"/> included.</summary>
        public int ListedCpus;
        /// <summary>Entries naming an APIC id listed before (ignored).</summary>
        public int DuplicateIds;
        /// <summary>Processors past <see cref="MaxApics"/> (not used).</summary>
        public int DroppedCpus;
        /// <summary>True when an entry's length was bad: the entries after it were not read.</summary>
        public bool MadtTruncated;
        /// <summary>The MADT used, by physical address (0: none).</summary>
        public ulong MadtAddress;
        private Ids _ids;

        [InlineArray(MaxApics)]
        private struct Ids { private uint _e; }

        public uint ApicId(int i) => _ids[i];

        internal void Add(uint id)
        {
            ListedCpus++;
            for (int i = 0; i < ApicCount; i++)
            {
                if (_ids[i] == id)
                {
                    DuplicateIds++;
                    return;
                }
            }
            if (ApicCount >= MaxApics)
            {
                DroppedCpus++;
                return;
            }
            _ids[ApicCount++] = id;
        }
    }

    /// <summary>
    /// Just enough ACPI to find the processors: RSDP → XSDT (else RSDT) → MADT (ACPI 6.5, 5.2.12),
    /// whose type-0 and type-9 entries list the local APICs. Every table's signature, length and
    /// checksum is verified before use, every read is bounded by what the reader gives, and the
    /// work is bounded (<see cref="MaxRootEntries"/> entries, tables below <see cref="MaxTableLength"/>).
    /// Refusals are the constant strings below. Portable: kernel and host tests.
    /// </summary>
    public static class AcpiParser
    {
        public const int RsdpV1Length = 20;
        public const int RsdpV2Length = 36;
        public const int HeaderLength = 36;
        public const int MaxTableLength = 1 << 20;
        /// <summary>Root-table entries looked at (firmware lists a few dozen tables).</summary>
        public const int MaxRootEntries = 256;
        /// <summary>Tables below this address only (the kernel's identity map).</summary>
        public const ulong AddressLimit = 4UL << 30;

        public const string NoRsdp = "no ACPI RSDP found";
        public const string BadRsdp = "the ACPI RSDP is short, or its signature or checksum is wrong";
        public const string NoMadt = "no valid MADT";

        /// <summary>The offset of the first valid RSDP (signature and checksum) on a 16-byte boundary in <paramref name="area"/>, or -1.</summary>
        public static int FindRsdp(ReadOnlySpan<byte> area)
        {
            for (int at = 0; at + RsdpV1Length <= area.Length; at += 16)
            {
                if (IsRsdp(area.Slice(at, RsdpV1Length)))
                    return at;
            }
            return -1;
        }

        private static bool IsRsdp(ReadOnlySpan<byte> rsdp) =>
            rsdp.Length >= RsdpV1Length && LittleEndian.Read64(rsdp, 0) == 0x2052545020445352UL // "RSD PTR "
            && Checksum(rsdp.Slice(0, RsdpV1Length));

        /// <summary>
        /// From the RSDP (<paramref name="rsdp"/>: its bytes, as many as are known to be there) to the
        /// MADT's processors. Returns null, or <see cref="BadRsdp"/> or <see cref="NoMadt"/>.
        /// </summary>
        public static string? Parse<TReader>(ref TReader memory, ReadOnlySpan<byte> rsdp, ref AcpiInfo result) where TReader : struct, IPhysicalReader
        {
            result = default;
            if (!IsRsdp(rsdp))
                return BadRsdp;
            ulong madt = 0;
            if (rsdp[15] >= 2 && rsdp.Length >= RsdpV2Length && LittleEndian.Read64(rsdp, 24) != 0)
                madt = FindTable(ref memory, LittleEndian.Read64(rsdp, 24), 8, "APIC");
            if (madt == 0)
                madt = FindTable(ref memory, LittleEndian.Read32(rsdp, 16), 4, "APIC");
            if (madt == 0)
                return NoMadt;
            result.MadtAddress = madt;
            ParseMadt(Table(ref memory, madt, "APIC"), ref result);
            return null;
        }

        private static bool Checksum(ReadOnlySpan<byte> table)
        {
            byte sum = 0;
            for (int i = 0; i < table.Length; i++)
                sum += table[i];
            return sum == 0;
        }

        /// <summary>The whole table at <paramref name="address"/> if its signature, length and checksum are good, else empty.</summary>
        public static ReadOnlySpan<byte> Table<TReader>(ref TReader memory, ulong address, string signature) where TReader : struct, IPhysicalReader
        {
            if (address == 0 || address >= AddressLimit)
                return ReadOnlySpan<byte>.Empty;
            ReadOnlySpan<byte> header = memory.Read(address, HeaderLength);
            if (header.Length < HeaderLength)
                return ReadOnlySpan<byte>.Empty;
            for (int i = 0; i < 4; i++)
            {
                if (header[i] != signature[i])
                    return ReadOnlySpan<byte>.Empty;
            }
            uint length = LittleEndian.Read32(header, 4);
            if (length < HeaderLength || length >= MaxTableLength || address + length > AddressLimit)
                return ReadOnlySpan<byte>.Empty;
            ReadOnlySpan<byte> table = memory.Read(address, (int)length);
            if (table.Length != (int)length || !Checksum(table))
                return ReadOnlySpan<byte>.Empty;
            return table;
        }

        private static ulong FindTable<TReader>(ref TReader memory, ulong rootAddress, int entrySize, string signature) where TReader : struct, IPhysicalReader
        {
            ReadOnlySpan<byte> root = Table(ref memory, rootAddress, entrySize == 8 ? "XSDT" : "RSDT");
            if (root.IsEmpty)
                return 0;
            int entries = 0;
            for (int off = HeaderLength; off + entrySize <= root.Length && entries < MaxRootEntries; off += entrySize)
            {
                entries++;
                ulong address = entrySize == 8 ? LittleEndian.Read64(root, off) : LittleEndian.Read32(root, off);
                if (!Table(ref memory, address, signature).IsEmpty)
                    return address;
            }
            return 0;
        }

        /// <summary>Reads a MADT's processor entries (type 0: local APIC, type 9: local x2APIC).</summary>
        public static void ParseMadt(ReadOnlySpan<byte> madt, ref AcpiInfo result)
        {
            int off = 44;
            while (off + 2 <= madt.Length)
            {
                byte type = madt[off];
                byte entryLength = madt[off + 1];
                if (entryLength < 2 || entryLength > madt.Length - off)
                {
                    result.MadtTruncated = true;
                    return;
                }
                if (type == 0 && entryLength >= 8)
                {
                    if ((LittleEndian.Read32(madt, off + 4) & 3) != 0)
                        result.Add(madt[off + 3]);
                }
                else if (type == 9 && entryLength >= 16)
                {
                    if ((LittleEndian.Read32(madt, off + 8) & 3) != 0)
                        result.Add(LittleEndian.Read32(madt, off + 4));
                }
                off += entryLength;
            }
        }
    }
}
