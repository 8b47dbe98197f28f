using System;
using Tandem.Kvm.Boot;

namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// One range of an e820 memory map as the <c>etc/e820</c> fw_cfg file carries it: 20 bytes,
    /// little-endian { u64 address, u64 length, u32 type } (type 1 RAM, 2 reserved, 3 ACPI
    /// reclaimable, 4 ACPI NVS; ACPI 6.5 table 15.1).
    /// </summary>
    public readonly struct E820Entry
    {
        /// <summary>Bytes per entry in the file.</summary>
        public const int Size = 20;
        /// <summary>Usable RAM.</summary>
        public const uint Ram = 1;
        /// <summary>Reserved.</summary>
        public const uint Reserved = 2;

        /// <summary>First byte.</summary>
        public readonly ulong Address;
        /// <summary>Length in bytes.</summary>
        public readonly ulong Length;
        /// <summary>The e820 type.</summary>
        public readonly uint Type;

        /// <summary>The range [address, address + length) of <paramref name="type"/>.</summary>
        public E820Entry(ulong address, ulong length, uint type)
        {
            Address = address;
            Length = length;
            Type = type;
        }

        /// <summary>The <c>etc/e820</c> file contents for <paramref name="entries"/> (allocates once, at VM creation).</summary>
        public static byte[] BuildFile(ReadOnlySpan<E820Entry> entries)
        {
            byte[] file = new byte[entries.Length * Size];
            for (int i = 0; i < entries.Length; i++)
            {
                int o = i * Size;
                PutLe(file, o, entries[i].Address, 8);
                PutLe(file, o + 8, entries[i].Length, 8);
                PutLe(file, o + 16, entries[i].Type, 4);
            }
            return file;
        }

        /// <summary>
        /// The <c>etc/e820</c> file of a VM laid out as <paramref name="map"/>: its ranges, in its
        /// order, with its types (the same description the loaders' e820, multiboot and PVH maps
        /// come from, so firmware and the loaded kernel see one memory map).
        /// </summary>
        public static byte[] BuildFile(in GuestMemoryMap map)
        {
            int n = map.Count;
            E820Entry[] entries = new E820Entry[n];
            for (int i = 0; i < n; i++)
            {
                MemoryRange r = map.Get(i);
                entries[i] = new E820Entry(r.Start, r.Size, (uint)r.Type);
            }
            return BuildFile(new ReadOnlySpan<E820Entry>(entries));
        }

        private static void PutLe(byte[] dest, int offset, ulong value, int bytes)
        {
            for (int i = 0; i < bytes; i++)
                dest[offset + i] = (byte)(value >> (8 * i));
        }
    }
}
