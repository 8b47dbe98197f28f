using System.Runtime.InteropServices;

namespace Tandem.Arch.X86
{
    /// <summary>
    /// The 64-bit Task-State Segment (Intel SDM Vol. 3A, 8.7, figure 8-11): stack pointers for
    /// privilege changes and the interrupt stack table.
    /// </summary>
    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    public struct Tss
    {
        public uint Reserved0;
        public ulong Rsp0, Rsp1, Rsp2;
        public ulong Reserved1;
        public ulong Ist1, Ist2, Ist3, Ist4, Ist5, Ist6, Ist7;
        public ulong Reserved2;
        public ushort Reserved3;
        public ushort IoMapBase;
    }

    /// <summary>
    /// A per-CPU GDT (Intel SDM Vol. 3A, 3.4.5 segment descriptors; 8.2.3 the 16-byte TSS
    /// descriptor in long mode): null, kernel code, kernel data, TSS.
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct Gdt
    {
        public const ushort KernelCode = 0x08;
        public const ushort KernelData = 0x10;
        public const ushort TssSelector = 0x18;

        public ulong Null;
        public ulong Code;
        public ulong Data;
        public ulong TssLow;
        public ulong TssHigh;

        /// <summary>Fills the descriptors and loads GDTR, the segments and TR.</summary>
        public void Load(Tss* tss)
        {
            Null = 0;
            Code = 0x00AF9A000000FFFF;   // present, DPL0, code, readable, L=1 (64-bit), G=1
            Data = 0x00CF92000000FFFF;   // present, DPL0, data, writable, G=1
            ulong baseAddress = (ulong)tss;
            ulong limit = (ulong)sizeof(Tss) - 1;
            TssLow = (limit & 0xFFFF)
                | ((baseAddress & 0xFFFFFF) << 16)
                | (0x89UL << 40)                       // present, type 9 = available 64-bit TSS
                | (((limit >> 16) & 0xF) << 48)
                | (((baseAddress >> 24) & 0xFF) << 56);
            TssHigh = baseAddress >> 32;
            tss->IoMapBase = (ushort)sizeof(Tss);      // no I/O permission bitmap

            DescriptorPointer pointer;
            pointer.Limit = (ushort)(sizeof(Gdt) - 1);
            fixed (Gdt* self = &this)
                pointer.Base = (ulong)self;
            Native.Lgdt(&pointer);
            Native.ReloadSegments(KernelCode, KernelData);
            Native.Ltr(TssSelector);
        }
    }

    /// <summary>The operand of LGDT/LIDT: a 16-bit limit and a 64-bit base.</summary>
    [StructLayout(LayoutKind.Sequential, Pack = 2)]
    public struct DescriptorPointer
    {
        public ushort Limit;
        public ulong Base;
    }
}
