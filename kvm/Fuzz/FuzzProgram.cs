using System;

namespace Tandem.Kvm.Fuzz
{
    /// <summary>What the composer writes into a fragment's patch (tools/StubGen/Guests/FuzzKit.cs has the same numbers).</summary>
    public enum FuzzPatch : byte
    {
        /// <summary>Any 32-bit value.</summary>
        Any = 0,
        /// <summary>0, 1, the powers of two and their neighbours, or any value.</summary>
        Boundary,
        /// <summary>A port of a device a PC has, or any 16-bit port.</summary>
        Port,
        /// <summary>An architectural or interesting MSR number, a range boundary, or any.</summary>
        Msr,
        /// <summary>A CPUID leaf in one of the three ranges, or any.</summary>
        Leaf,
        /// <summary>0..15, sometimes 0..255.</summary>
        Small,
        /// <summary>Mostly RAM the program does not live in (and page ends), now and then a device page.</summary>
        Gpa,
        /// <summary>An interrupt vector (one byte).</summary>
        Vector,
        /// <summary>A repeat count, 0..32.</summary>
        Count,
        /// <summary>A CR0 value: protected mode with any mix of the other bits; rarely PG, rarely real mode.</summary>
        Cr0,
        /// <summary>A CR4 value: defined bits, or any.</summary>
        Cr4,
        /// <summary>A segment selector: the runtime's, or any.</summary>
        Selector,
        /// <summary>A local APIC register's address.</summary>
        ApicAddress,
        /// <summary>An interrupt command: any vector, delivery mode (INIT and SIPI included) and shorthand.</summary>
        Icr,
        /// <summary>An XCR0 value.</summary>
        Xcr0,
        /// <summary>Mostly a device page (local APIC, I/O APIC, the MMIO test page), rarely RAM or outside it.</summary>
        DeviceGpa,
    }

    /// <summary>The generator behind a fuzz guest: SplitMix64, so a seed gives the same guest on every machine.</summary>
    public struct FuzzRandom
    {
        private ulong _state;

        /// <summary>The generator of <paramref name="seed"/>.</summary>
        public FuzzRandom(ulong seed) { _state = seed; }

        /// <summary>The next 64 bits.</summary>
        public ulong Next()
        {
            ulong z = _state += 0x9E37_79B9_7F4A_7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D0_49BB_1331_11EBUL;
            return z ^ (z >> 31);
        }

        /// <summary>A value in [0, <paramref name="bound"/>), <paramref name="bound"/> &gt; 0.</summary>
        public uint Below(uint bound) => (uint)(Next() % bound);

        /// <summary>The next 32 bits.</summary>
        public uint Next32() => (uint)(Next() >> 32);
    }

    /// <summary>
    /// Turns a seed into a fuzz guest (issue 13 §1, docs/fuzzing.md): the kit's runtime (a flat
    /// 32-bit image), then <c>steps</c> steps, each a prologue that records the step number and
    /// where the next step begins (the runtime's exception handler resumes there) and resets the
    /// stack, followed by one fragment of the kit chosen by weight, its patches filled with values
    /// of their kind; then an exit through the exit port with status 0. Portable: the kernel runs
    /// it for <c>vm=fuzz,seed=N</c> and <c>fuzz=SEED:COUNT</c>, the host tests run it to check
    /// that every composed guest decodes and that a seed always gives the same bytes.
    /// </summary>
    public static class FuzzProgram
    {
        /// <summary>The kit's magic ("TFZK") and layout version.</summary>
        public const uint Magic = 0x4B5A_4654, Version = 1;

        /// <summary>Sizes of the kit's header, a table entry and a patch entry (tools/StubGen/Guests/FuzzKit.cs).</summary>
        public const int HeaderSize = 40, EntrySize = 16, PatchSize = 4;

        /// <summary>Where the flat loader puts the guest image.</summary>
        public const uint ImageBase = 0x10_0000;

        /// <summary>Fragment kinds (<see cref="KindName"/>).</summary>
        public const int KindCount = 12;

        /// <summary>The bytes of a step's prologue and of the program's end.</summary>
        public const int PrologueSize = 25, EpilogueSize = 20;

        /// <summary>Fragment kinds by number, for the statistics.</summary>
        public static string KindName(int kind)
        {
            switch (kind)
            {
                case 0: return "port-io";
                case 1: return "string-io";
                case 2: return "msr";
                case 3: return "cpuid";
                case 4: return "control-register";
                case 5: return "cache-and-vmx";
                case 6: return "memory";
                case 7: return "exception";
                case 8: return "descriptor";
                case 9: return "interrupt";
                case 10: return "mode-switch";
                case 11: return "alu";
                default: return "unknown";
            }
        }

        private static uint U32(ReadOnlySpan<byte> b, int at) => (uint)(b[at] | b[at + 1] << 8 | b[at + 2] << 16 | b[at + 3] << 24);

        private static ushort U16(ReadOnlySpan<byte> b, int at) => (ushort)(b[at] | b[at + 1] << 8);

        private static void Put32(Span<byte> b, int at, uint v)
        {
            b[at] = (byte)v;
            b[at + 1] = (byte)(v >> 8);
            b[at + 2] = (byte)(v >> 16);
            b[at + 3] = (byte)(v >> 24);
        }

        /// <summary>Null if <paramref name="kit"/> is a well-formed kit, else what is wrong.</summary>
        public static string? CheckKit(ReadOnlySpan<byte> kit)
        {
            if (kit.Length < HeaderSize || U32(kit, 0) != Magic)
                return "not a fuzz kit (no TFZK header)";
            if (U32(kit, 4) != Version)
                return "fuzz kit of another version";
            uint runtimeOffset = U32(kit, 8), runtimeLength = U32(kit, 12), count = U32(kit, 16), table = U32(kit, 20);
            if (runtimeLength < 16 || runtimeOffset > (uint)kit.Length || runtimeLength > (uint)kit.Length - runtimeOffset)
                return "fuzz kit: the runtime lies outside the module";
            if (count == 0 || count > 4096 || table > (uint)kit.Length || (ulong)count * EntrySize > (ulong)((uint)kit.Length - table))
                return "fuzz kit: bad fragment table";
            uint patches = table + count * EntrySize;
            for (int i = 0; i < (int)count; i++)
            {
                int e = (int)table + i * EntrySize;
                uint codeOffset = U32(kit, e + 4), codeLength = U16(kit, e + 8), patchCount = U16(kit, e + 10), first = U32(kit, e + 12);
                if (U16(kit, e) >= KindCount || U16(kit, e + 2) == 0)
                    return "fuzz kit: a fragment of unknown kind or weight 0";
                if (codeOffset > (uint)kit.Length || codeLength > (uint)kit.Length - codeOffset || codeLength == 0)
                    return "fuzz kit: a fragment lies outside the module";
                if ((ulong)patches + ((ulong)first + patchCount) * PatchSize > (ulong)kit.Length)
                    return "fuzz kit: a fragment's patches lie outside the module";
                for (int k = 0; k < (int)patchCount; k++)
                {
                    int p = (int)(patches + (first + (uint)k) * PatchSize);
                    uint at = U16(kit, p), size = kit[p + 3];
                    if ((size != 1 && size != 4) || at + size > codeLength || kit[p + 2] > (byte)FuzzPatch.DeviceGpa)
                        return "fuzz kit: a patch outside its fragment";
                }
            }
            return null;
        }

        /// <summary>The most bytes <see cref="Compose"/> writes for <paramref name="steps"/> steps.</summary>
        public static int MaxLength(ReadOnlySpan<byte> kit, int steps)
        {
            uint count = U32(kit, 16), table = U32(kit, 20);
            int longest = 0;
            for (int i = 0; i < (int)count; i++)
            {
                int length = U16(kit, (int)table + i * EntrySize + 8);
                if (length > longest)
                    longest = length;
            }
            return (int)U32(kit, 12) + steps * (PrologueSize + longest) + EpilogueSize;
        }

        /// <summary>
        /// Writes the guest of <paramref name="seed"/> into <paramref name="output"/> (at least
        /// <see cref="MaxLength"/> bytes; the kit must have passed <see cref="CheckKit"/>) and
        /// returns its length. <paramref name="kindCounts"/> (<see cref="KindCount"/> entries, or
        /// empty) gets the number of fragments of each kind added. <paramref name="ramBytes"/> is the
        /// guest's RAM, for the addresses it aims at.
        /// </summary>
        public static int Compose(ReadOnlySpan<byte> kit, ulong seed, int steps, uint ramBytes, Span<byte> output, Span<int> kindCounts)
        {
            uint runtimeOffset = U32(kit, 8), runtimeLength = U32(kit, 12), count = U32(kit, 16), table = U32(kit, 20);
            uint stepAddress = U32(kit, 24), resumeAddress = U32(kit, 28), stackTop = U32(kit, 32), scratch = U32(kit, 36);
            uint patches = table + count * EntrySize;
            kit.Slice((int)runtimeOffset, (int)runtimeLength).CopyTo(output);
            int at = (int)runtimeLength;
            uint totalWeight = 0;
            for (int i = 0; i < (int)count; i++)
                totalWeight += U16(kit, (int)table + i * EntrySize + 2);
            FuzzRandom random = new FuzzRandom(seed);
            for (int step = 0; step < steps; step++)
            {
                uint pick = random.Below(totalWeight);
                int e = (int)table;
                for (int i = 0; i < (int)count; i++)
                {
                    e = (int)table + i * EntrySize;
                    uint weight = U16(kit, e + 2);
                    if (pick < weight)
                        break;
                    pick -= weight;
                }
                int kind = U16(kit, e);
                int codeOffset = (int)U32(kit, e + 4), codeLength = U16(kit, e + 8), patchCount = U16(kit, e + 10);
                uint first = U32(kit, e + 12);
                if (kind < kindCounts.Length)
                    kindCounts[kind]++;
                uint next = ImageBase + (uint)(at + PrologueSize + codeLength);
                // mov dword [step], n; mov dword [resume], next; mov esp, top
                output[at] = 0xC7;
                output[at + 1] = 0x05;
                Put32(output, at + 2, stepAddress);
                Put32(output, at + 6, (uint)step);
                output[at + 10] = 0xC7;
                output[at + 11] = 0x05;
                Put32(output, at + 12, resumeAddress);
                Put32(output, at + 16, next);
                output[at + 20] = 0xBC;
                Put32(output, at + 21, stackTop);
                at += PrologueSize;
                Span<byte> code = output.Slice(at, codeLength);
                kit.Slice(codeOffset, codeLength).CopyTo(code);
                for (int k = 0; k < patchCount; k++)
                {
                    int p = (int)(patches + (first + (uint)k) * PatchSize);
                    int offset = U16(kit, p);
                    uint value = Value((FuzzPatch)kit[p + 2], ref random, ramBytes, scratch);
                    if (kit[p + 3] == 1)
                        code[offset] = (byte)value;
                    else
                        Put32(code, offset, value);
                }
                at += codeLength;
            }
            // mov dword [step], steps; mov dx, 0xF4; mov al, 0; out dx, al; hlt; jmp hlt
            output[at] = 0xC7;
            output[at + 1] = 0x05;
            Put32(output, at + 2, stepAddress);
            Put32(output, at + 6, (uint)steps);
            output[at + 10] = 0x66;
            output[at + 11] = 0xBA;
            output[at + 12] = 0xF4;
            output[at + 13] = 0x00;
            output[at + 14] = 0xB0;
            output[at + 15] = 0x00;
            output[at + 16] = 0xEE;
            output[at + 17] = 0xF4;
            output[at + 18] = 0xEB;
            output[at + 19] = 0xFD;
            return at + EpilogueSize;
        }

        private static uint Pick(ref FuzzRandom random, uint[] values) => values[(int)random.Below((uint)values.Length)];

        private static readonly uint[] Boundaries = { 0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFE, 0xFFFF_FFFF };

        private static readonly uint[] Selectors = { 0x0, 0x3, 0x8, 0x10, 0x13, 0x18, 0x1B, 0x20, 0xFFFF };

        private static readonly uint[] Xcr0Values = { 0, 1, 2, 3, 7, 0xE7 };

        private static readonly uint[] Ports =
        {
            0x20, 0x21, 0xA0, 0xA1, 0x40, 0x41, 0x42, 0x43, 0x60, 0x61, 0x64, 0x70, 0x71, 0x80, 0x92, 0xB2, 0x4D0, 0x4D1,
            0xCF8, 0xCF9, 0xCFC, 0xCFD, 0xCFE, 0xCFF, 0x3F8, 0x3F9, 0x3FA, 0x3FB, 0x3FC, 0x3FD, 0x3FE, 0x3FF, 0x2F8, 0x3E8,
            0x510, 0x511, 0x514, 0x518, 0x600, 0x604, 0x608, 0x502, 0x3C0, 0x1F0, 0x170,
        };

        private static readonly uint[] Msrs =
        {
            0x0, 0x10, 0x1B, 0x3A, 0x48, 0x49, 0x8B, 0xE7, 0xE8, 0xFE, 0x174, 0x175, 0x176, 0x179, 0x17A, 0x1A0, 0x1D9,
            0x277, 0x2FF, 0x400, 0x480, 0x481, 0x48D, 0x491, 0x6E0, 0x802, 0x808, 0x80B, 0x830, 0x838, 0x83F, 0x1FFF, 0x2000,
            0xC000_0080, 0xC000_0081, 0xC000_0082, 0xC000_0084, 0xC000_0100, 0xC000_0101, 0xC000_0102, 0xC000_0103,
            0xC000_1FFF, 0xC000_2000, 0x4000_0000, 0x4000_0001, 0xC001_0000, 0xBFFF_FFFF, 0xFFFF_FFFF,
        };

        private static uint Value(FuzzPatch kind, ref FuzzRandom random, uint ramBytes, uint scratch)
        {
            uint r = random.Next32();
            switch (kind)
            {
                case FuzzPatch.Boundary:
                    return random.Below(4) == 0 ? r : Pick(ref random, Boundaries);
                case FuzzPatch.Port:
                    return random.Below(4) == 0 ? r & 0xFFFF : Pick(ref random, Ports);
                case FuzzPatch.Msr:
                    return random.Below(4) == 0 ? r : Pick(ref random, Msrs);
                case FuzzPatch.Leaf:
                    switch (random.Below(4))
                    {
                        case 0: return random.Below(0x21);
                        case 1: return 0x4000_0000 + random.Below(0x11);
                        case 2: return 0x8000_0000 + random.Below(0x21);
                        default: return r;
                    }
                case FuzzPatch.Small:
                    return random.Below(4) == 0 ? r & 0xFF : r & 0xF;
                case FuzzPatch.Gpa:
                    return random.Below(50) == 0 ? DeviceGpa(ref random, r, ramBytes) : RamGpa(ref random, r, ramBytes, scratch);
                case FuzzPatch.DeviceGpa:
                    return random.Below(10) == 0 ? RamGpa(ref random, r, ramBytes, scratch) : DeviceGpa(ref random, r, ramBytes);
                case FuzzPatch.Vector:
                    return r & 0xFF;
                case FuzzPatch.Count:
                    return random.Below(33);
                case FuzzPatch.Cr0:
                    {
                        uint cr0 = 0x31 | (r & 0x6005_000E);         // PE ET NE, and any of MP EM TS WP AM NW CD
                        if (random.Below(64) == 0)
                            cr0 |= 0x8000_0000;                      // PG (rare: there are no page tables)
                        if (random.Below(64) == 0)
                            cr0 &= ~1u;                              // real mode (rare)
                        return cr0;
                    }
                case FuzzPatch.Cr4:
                    return random.Below(4) == 0 ? r : r & 0x0001_0E7F;
                case FuzzPatch.Selector:
                    return random.Below(4) == 0 ? Pick(ref random, Selectors) : r & 0xFFFF;
                case FuzzPatch.ApicAddress:
                    return 0xFEE0_0000 + (random.Below(64) << 4) + (random.Below(8) == 0 ? random.Below(4) : 0);
                case FuzzPatch.Icr:
                    return (r & 0xFF) | (random.Below(8) << 8) | (r & 0xC000) | (random.Below(4) << 18);
                case FuzzPatch.Xcr0:
                    return random.Below(2) == 0 ? Pick(ref random, Xcr0Values) : r;
                default:
                    return r;
            }
        }

        /// <summary>An address in the RAM the program does not live in, or across one of its page ends.</summary>
        private static uint RamGpa(ref FuzzRandom random, uint r, uint ramBytes, uint scratch)
        {
            if (ramBytes < scratch + 0x2000)
                return scratch;
            // Room for the longest string operation (32 dwords) before the end of RAM.
            if (random.Below(8) != 0)
                return scratch + r % (ramBytes - scratch - 256);
            return scratch + ((r % (((ramBytes - scratch) >> 12) - 1)) << 12) + 0xFFD + random.Below(3);
        }

        /// <summary>A device page (local APIC, I/O APIC, Tandem's MMIO test page), or now and then outside RAM (which ends the VM).</summary>
        private static uint DeviceGpa(ref FuzzRandom random, uint r, uint ramBytes)
        {
            uint pick = random.Below(1000);
            if (pick < 450)
                return 0xFEE0_0000 + (r & 0xFFF);
            if (pick < 550)
                return 0xFEC0_0000 + (r & 0x3F);
            if (pick < 995)
                return 0xFEB0_0000 + (r & 0xFFF);
            return ramBytes + r % (0xC000_0000u - ramBytes);
        }
    }
}
