using System.Runtime.InteropServices;

namespace Tandem.Arch.X86
{
    /// <summary>A 64-bit interrupt gate (Intel SDM Vol. 3A, 7.14.1, figure 7-8).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct IdtEntry
    {
        public ushort OffsetLow;
        public ushort Selector;
        public byte Ist;
        public byte TypeAttributes;   // 0x8E: present, DPL0, 64-bit interrupt gate
        public ushort OffsetMiddle;
        public uint OffsetHigh;
        public uint Reserved;
    }

    /// <summary>
    /// The IDT shared by all CPUs: 256 gates pointing at the generated entry stubs
    /// (tandem_isr_table). NMI, #DF and #MC run on their own interrupt stacks.
    /// </summary>
    public static unsafe class Idt
    {
        private static IdtEntry* s_entries;

        public static void Build(IdtEntry* storage, ulong* stubTable)
        {
            s_entries = storage;
            for (int vector = 0; vector < 256; vector++)
            {
                ulong handler = stubTable[vector];
                IdtEntry* e = storage + vector;
                e->OffsetLow = (ushort)handler;
                e->Selector = Gdt.KernelCode;
                e->Ist = vector == 2 ? (byte)1 : vector == 8 ? (byte)2 : vector == 18 ? (byte)3 : (byte)0;
                e->TypeAttributes = 0x8E;
                e->OffsetMiddle = (ushort)(handler >> 16);
                e->OffsetHigh = (uint)(handler >> 32);
                e->Reserved = 0;
            }
        }

        public static void Load()
        {
            DescriptorPointer pointer;
            pointer.Limit = 256 * 16 - 1;
            pointer.Base = (ulong)s_entries;
            Native.Lidt(&pointer);
        }
    }

    /// <summary>The frame the interrupt entry stubs build (see tools/StubGen), lowest address first.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct InterruptFrame
    {
        public ulong R15, R14, R13, R12, R11, R10, R9, R8;
        public ulong Rbp, Rdi, Rsi, Rdx, Rcx, Rbx, Rax;
        public ulong Vector, ErrorCode;
        public ulong Rip, Cs, Rflags, Rsp, Ss;
    }
}
