namespace Tandem.Kvm.Boot
{
    /// <summary>Memory types of the e820 map, also used by the multiboot and PVH maps (ACPI 6.5, table 15.1).</summary>
    public enum MemoryType : uint
    {
        /// <summary>Usable RAM (e820 type 1).</summary>
        Ram = 1,
        /// <summary>Reserved (e820 type 2).</summary>
        Reserved = 2,
    }

    /// <summary>One range of the guest-physical memory map: [Start, Start + Size).</summary>
    public readonly struct MemoryRange
    {
        /// <summary>First byte.</summary>
        public readonly ulong Start;
        /// <summary>Length in bytes.</summary>
        public readonly ulong Size;
        /// <summary>RAM or reserved.</summary>
        public readonly MemoryType Type;

        /// <summary>A range of type at [start, start + size).</summary>
        public MemoryRange(ulong start, ulong size, MemoryType type)
        {
            Start = start;
            Size = size;
            Type = type;
        }

        /// <summary>One past the last byte.</summary>
        public ulong End => Start + Size;

        /// <summary>True if [gpa, gpa + length) lies inside this range (length 0 counts when gpa is inside or at the end).</summary>
        public bool Contains(ulong gpa, ulong length) => gpa >= Start && gpa - Start <= Size && length <= Size - (gpa - Start);
    }
}
