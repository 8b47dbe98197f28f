using Tandem.Kernel.Boot;

namespace Tandem.Kernel
{
    /// <summary>
    /// Just enough ACPI to find the processors: RSDP (from GRUB, else the BIOS areas) → RSDT/XSDT →
    /// MADT (ACPI 6.5, 5.2.12), whose type-0 and type-9 entries list the local APICs. Every table's
    /// signature, length and checksum is verified before use.
    /// </summary>
    public static unsafe class Acpi
    {
        public const int MaxApics = Cpu.MaxCpus;
        public static int ApicCount;
        public static uint* ApicIds;
        public static string? Problem;

        public static void Initialize()
        {
            ApicIds = (uint*)Memory.KernelHeap.Alloc(sizeof(uint) * MaxApics);
            byte* rsdp = (byte*)Multiboot2.Rsdp;
            if (rsdp == null)
                rsdp = ScanForRsdp();
            if (rsdp == null)
            {
                Problem = "no ACPI RSDP found";
                return;
            }
            byte revision = rsdp[15];
            byte* madt = null;
            if (revision >= 2 && *(ulong*)(rsdp + 24) != 0)
                madt = FindTable((byte*)*(ulong*)(rsdp + 24), 8, "APIC");
            if (madt == null)
                madt = FindTable((byte*)(ulong)*(uint*)(rsdp + 16), 4, "APIC");
            if (madt == null)
            {
                Problem = "no valid MADT";
                return;
            }
            ParseMadt(madt);
        }

        private static byte* ScanForRsdp()
        {
            for (ulong p = 0xE0000; p < 0x100000; p += 16)
            {
                if (*(ulong*)p == 0x2052545020445352UL && Checksum((byte*)p, 20)) // "RSD PTR "
                    return (byte*)p;
            }
            return null;
        }

        private static bool Checksum(byte* table, uint length)
        {
            byte sum = 0;
            for (uint i = 0; i < length; i++)
                sum += table[i];
            return sum == 0;
        }

        private static bool Valid(byte* table, string signature)
        {
            if (table == null || (ulong)table >= 4UL << 30)
                return false;
            for (int i = 0; i < 4; i++)
            {
                if (table[i] != signature[i])
                    return false;
            }
            uint length = *(uint*)(table + 4);
            return length >= 36 && length < 1 << 20 && Checksum(table, length);
        }

        private static byte* FindTable(byte* root, int entrySize, string signature)
        {
            if (!Valid(root, entrySize == 8 ? "XSDT" : "RSDT"))
                return null;
            uint length = *(uint*)(root + 4);
            for (uint off = 36; off + entrySize <= length; off += (uint)entrySize)
            {
                byte* table = entrySize == 8 ? (byte*)*(ulong*)(root + off) : (byte*)(ulong)*(uint*)(root + off);
                if (Valid(table, signature))
                    return table;
            }
            return null;
        }

        private static void ParseMadt(byte* madt)
        {
            uint length = *(uint*)(madt + 4);
            uint off = 44;
            while (off + 2 <= length)
            {
                byte type = madt[off];
                byte entryLength = madt[off + 1];
                if (entryLength < 2 || off + entryLength > length)
                    break;
                if (type == 0 && entryLength >= 8)
                {
                    uint flags = *(uint*)(madt + off + 4);
                    if ((flags & 3) != 0)
                        AddApic(madt[off + 3]);
                }
                else if (type == 9 && entryLength >= 16)
                {
                    uint flags = *(uint*)(madt + off + 8);
                    if ((flags & 3) != 0)
                        AddApic(*(uint*)(madt + off + 4));
                }
                off += entryLength;
            }
        }

        private static void AddApic(uint id)
        {
            if (ApicCount < MaxApics)
                ApicIds[ApicCount++] = id;
        }
    }
}
