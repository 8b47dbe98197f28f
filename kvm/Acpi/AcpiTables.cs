using System;
using Tandem.Kvm.Boot;
using Tandem.Kvm.Devices;

namespace Tandem.Kvm.Acpi
{
    /// <summary>
    /// Builds a VM's ACPI tables (ACPI 6.5, chapter 5; docs/devices.md, "ACPI") in one block of guest
    /// physical memory below 4 GiB, in this order, each 16-byte aligned:
    /// <list type="bullet">
    /// <item>RSDP (revision 2, 36 bytes) at the base: in the BIOS area (0xE0000-0xFFFFF) a legacy
    /// scan on 16-byte boundaries finds it;</item>
    /// <item>FACS (version 2, 64 bytes, 64-byte aligned; the OS keeps its global lock and waking
    /// vector there);</item>
    /// <item>DSDT (revision 2): <c>Name (_S5, Package () { 5, 5, 0, 0 })</c>, SLP_TYP =
    /// <see cref="AcpiPm.S5SleepType"/>;</item>
    /// <item>FADT (revision 6, minor 0: the ACPI 6.0 layout, 276 bytes);</item>
    /// <item>MADT (revision 3): the local APICs, the IOAPIC, the ISA overrides, LINT1 as NMI;</item>
    /// <item>XSDT and RSDT, each listing the FADT and the MADT.</item>
    /// </list>
    /// </summary>
    /// <remarks>
    /// Rules for using this: build once at VM creation with <see cref="Write{TRam}"/> at
    /// <see cref="StandardBase"/> (or <see cref="Build"/> into a buffer), then hand
    /// <see cref="AcpiLayout.Rsdp"/> to the loader as <c>BootInput.RsdpAddress</c>. The tables say
    /// what <see cref="AcpiPm"/> and the APIC models implement; a change to one changes the other.
    /// </remarks>
    public static class AcpiTables
    {
        /// <summary>Start of the BIOS area a legacy RSDP scan covers.</summary>
        public const ulong BiosAreaStart = 0xE_0000;

        /// <summary>End (exclusive) of the BIOS area: 1 MiB.</summary>
        public const ulong BiosAreaEnd = 0x10_0000;

        /// <summary>Where Tandem puts the tables: the start of the BIOS area.</summary>
        public const ulong StandardBase = BiosAreaStart;

        /// <summary>RSDP length (revision 2).</summary>
        public const int RsdpLength = 36;

        /// <summary>FACS length.</summary>
        public const int FacsLength = 64;

        /// <summary>FADT length (revision 6: ACPI 6.0 through 6.5).</summary>
        public const int FadtLength = 276;

        /// <summary>The DSDT's AML: NameOp, "_S5_", PackageOp, PkgLength, NumElements, then the four integers.</summary>
        public const int DsdtLength = TableBytes.HeaderLength + 1 + 4 + 1 + 1 + 1 + 2 + 2 + 1 + 1;

        /// <summary>MADT bytes before its entries (header, local APIC address, flags).</summary>
        public const int MadtFixedLength = 44;

        /// <summary>Processor Local APIC entry (type 0).</summary>
        public const int MadtLocalApicLength = 8;

        /// <summary>I/O APIC entry (type 1).</summary>
        public const int MadtIoApicLength = 12;

        /// <summary>Interrupt Source Override entry (type 2).</summary>
        public const int MadtOverrideLength = 10;

        /// <summary>Local APIC NMI entry (type 4).</summary>
        public const int MadtLocalNmiLength = 6;

        /// <summary>Interrupt source overrides: IRQ 0 → GSI 2, and the SCI (level, active high).</summary>
        public const int MadtOverrides = 2;

        /// <summary>Tables the XSDT and RSDT list (FADT, MADT).</summary>
        public const int RootEntries = 2;

        /// <summary>The block's length for the most vCPUs (<see cref="AcpiConfig.MaxCpus"/>): what a buffer for any VM needs.</summary>
        public static int MaxLength => LengthFor(AcpiConfig.MaxCpus);

        /// <summary>MADT length for <paramref name="cpus"/> vCPUs.</summary>
        public static int MadtLength(int cpus) =>
            MadtFixedLength + cpus * MadtLocalApicLength + MadtIoApicLength + MadtOverrides * MadtOverrideLength + MadtLocalNmiLength;

        /// <summary>The block's length for <paramref name="cpus"/> vCPUs.</summary>
        public static int LengthFor(int cpus)
        {
            Offsets(cpus, out _, out _, out _, out _, out _, out int end);
            return end;
        }

        /// <summary>
        /// Where each table goes for <paramref name="config"/> with the block at
        /// <paramref name="baseGpa"/>. False if the configuration is not one the tables can
        /// describe (vCPU count outside 1 .. <see cref="AcpiConfig.MaxCpus"/>, no PM1a ports), the
        /// base is not 64-byte aligned (the FACS needs it), or the block would reach 4 GiB.
        /// </summary>
        public static bool TryLayout(in AcpiConfig config, ulong baseGpa, out AcpiLayout layout)
        {
            layout = default;
            if (config.CpuCount < 1 || config.CpuCount > AcpiConfig.MaxCpus)
                return false;
            if (config.Pm1aEventPort == 0 || config.Pm1aControlPort == 0)
                return false;
            if ((baseGpa & 63) != 0)
                return false;
            Offsets(config.CpuCount, out int dsdt, out int fadt, out int madt, out int xsdt, out int rsdt, out int end);
            if (baseGpa >= GuestMemoryMap.FourGiB || (ulong)end > GuestMemoryMap.FourGiB - baseGpa)
                return false;
            layout.Rsdp = baseGpa;
            layout.Facs = baseGpa + FacsOffset;
            layout.Dsdt = baseGpa + (ulong)dsdt;
            layout.Fadt = baseGpa + (ulong)fadt;
            layout.Madt = baseGpa + (ulong)madt;
            layout.Xsdt = baseGpa + (ulong)xsdt;
            layout.Rsdt = baseGpa + (ulong)rsdt;
            layout.Length = end;
            return true;
        }

        /// <summary>
        /// Builds the tables for a block at guest-physical <paramref name="baseGpa"/> into
        /// <paramref name="block"/> (its first <see cref="AcpiLayout.Length"/> bytes; the gaps
        /// between tables are zeroed). False, with nothing written, if <see cref="TryLayout"/>
        /// refuses or the buffer is too short.
        /// </summary>
        public static bool Build(in AcpiConfig config, ulong baseGpa, Span<byte> block, out AcpiLayout layout)
        {
            if (!TryLayout(config, baseGpa, out layout) || block.Length < layout.Length)
                return false;
            Span<byte> b = block.Slice(0, layout.Length);
            b.Clear();
            WriteDsdt(Table(b, layout, layout.Dsdt, DsdtLength));
            WriteFadt(Table(b, layout, layout.Fadt, FadtLength), config, layout);
            WriteMadt(Table(b, layout, layout.Madt, MadtLength(config.CpuCount)), config);
            WriteRoot(Table(b, layout, layout.Xsdt, XsdtLength), layout, 8);
            WriteRoot(Table(b, layout, layout.Rsdt, RsdtLength), layout, 4);
            WriteFacs(Table(b, layout, layout.Facs, FacsLength));
            WriteRsdp(Table(b, layout, layout.Rsdp, RsdpLength), layout);
            return true;
        }

        /// <summary>
        /// Builds the tables and writes them to guest RAM at <paramref name="baseGpa"/>; the block
        /// must end at or below <paramref name="regionEnd"/> (e.g. <see cref="BiosAreaEnd"/>).
        /// Allocates nothing (the block is built on the stack, at most <see cref="MaxLength"/>
        /// bytes). False if <see cref="TryLayout"/> refuses, the block does not fit, or the write
        /// fails.
        /// </summary>
        public static unsafe bool Write<TRam>(ref TRam ram, in AcpiConfig config, ulong baseGpa, ulong regionEnd, out AcpiLayout layout)
            where TRam : struct, IGuestRam
        {
            if (!TryLayout(config, baseGpa, out layout) || baseGpa + (ulong)layout.Length > regionEnd)
                return false;
            byte* buffer = stackalloc byte[layout.Length];
            Span<byte> block = new Span<byte>(buffer, layout.Length);
            if (!Build(config, baseGpa, block, out layout))
                return false;
            return ram.Write(baseGpa, buffer, (ulong)layout.Length);
        }

        private const int FacsOffset = 64;
        private const int XsdtLength = TableBytes.HeaderLength + RootEntries * 8;
        private const int RsdtLength = TableBytes.HeaderLength + RootEntries * 4;

        private static int Align16(int x) => (x + 15) & ~15;

        private static void Offsets(int cpus, out int dsdt, out int fadt, out int madt, out int xsdt, out int rsdt, out int end)
        {
            dsdt = FacsOffset + FacsLength;
            fadt = Align16(dsdt + DsdtLength);
            madt = Align16(fadt + FadtLength);
            xsdt = Align16(madt + MadtLength(cpus));
            rsdt = Align16(xsdt + XsdtLength);
            end = rsdt + RsdtLength;
        }

        private static Span<byte> Table(Span<byte> block, in AcpiLayout layout, ulong gpa, int length) =>
            block.Slice((int)(gpa - layout.Rsdp), length);

        // RSDP (ACPI 6.5, 5.2.5.3): the checksum covers the first 20 bytes (the ACPI 1.0 structure),
        // the extended checksum all 36.
        private static void WriteRsdp(Span<byte> t, in AcpiLayout layout)
        {
            TableBytes.Chars4(t, 0, 'R', 'S', 'D', ' ');
            TableBytes.Chars4(t, 4, 'P', 'T', 'R', ' ');
            TableBytes.OemId(t, 9);
            t[15] = 2;
            TableBytes.U32(t, 16, (uint)layout.Rsdt);
            TableBytes.U32(t, 20, RsdpLength);
            TableBytes.U64(t, 24, layout.Xsdt);
            TableBytes.SetChecksum(t.Slice(0, 20), 8);
            TableBytes.SetChecksum(t, 32);
        }

        // FACS (ACPI 6.5, 5.2.10): no checksum; everything the OS owns starts at 0.
        private static void WriteFacs(Span<byte> t)
        {
            TableBytes.Chars4(t, 0, 'F', 'A', 'C', 'S');
            TableBytes.U32(t, 4, FacsLength);
            t[32] = 2;
        }

        // XSDT (8-byte entries) and RSDT (4-byte entries), ACPI 6.5, 5.2.7 and 5.2.8.
        private static void WriteRoot(Span<byte> t, in AcpiLayout layout, int entrySize)
        {
            if (entrySize == 8)
            {
                TableBytes.Header(t, 'X', 'S', 'D', 'T', 1);
                TableBytes.U64(t, 36, layout.Fadt);
                TableBytes.U64(t, 44, layout.Madt);
            }
            else
            {
                TableBytes.Header(t, 'R', 'S', 'D', 'T', 1);
                TableBytes.U32(t, 36, (uint)layout.Fadt);
                TableBytes.U32(t, 40, (uint)layout.Madt);
            }
            TableBytes.SetChecksum(t, TableBytes.ChecksumOffset);
        }

        // DSDT: Name (_S5, Package () { S5, S5, 0, 0 }): SLP_TYPa, SLP_TYPb and two reserved
        // elements, which is what ACPICA's acpi_get_sleep_type_data reads.
        private static void WriteDsdt(Span<byte> t)
        {
            TableBytes.Header(t, 'D', 'S', 'D', 'T', 2);
            int p = TableBytes.HeaderLength;
            t[p++] = Aml.NameOp;
            TableBytes.Chars4(t, p, '_', 'S', '5', '_');
            p += 4;
            t[p++] = Aml.PackageOp;
            int contents = 1 + 2 * Aml.IntegerSize(AcpiPm.S5SleepType) + 2 * Aml.IntegerSize(0);
            p += Aml.WritePkgLength(t, p, contents);
            t[p++] = 4;
            p += Aml.WriteInteger(t, p, AcpiPm.S5SleepType);
            p += Aml.WriteInteger(t, p, AcpiPm.S5SleepType);
            p += Aml.WriteInteger(t, p, 0);
            p += Aml.WriteInteger(t, p, 0);
            if (p != DsdtLength)
                throw new InvalidOperationException("DSDT length does not match its AML");
            TableBytes.SetChecksum(t, TableBytes.ChecksumOffset);
        }

        /// <summary>FADT Flags (ACPI 6.5, Table 5.10): WBINVD works, C1 on all processors, no sleep button, RTC wake not in the fixed registers, the reset register.</summary>
        public const uint FadtFlags = (1u << 0) | (1u << 2) | (1u << 5) | (1u << 6) | (1u << 10);

        /// <summary>FADT flag TMR_VAL_EXT: the PM timer is 32 bits (set when there is a timer).</summary>
        public const uint FadtTimerValExt = 1u << 8;

        /// <summary>
        /// IA-PC boot architecture flags (ACPI 6.5, Table 5.11): legacy devices and no VGA. The 8042
        /// flag (bit 1) is clear: the i8042 model has only the reset line and port 0x92, no keyboard
        /// or mouse, so Linux skips its probe (with the flag set it polled the status port about
        /// 20,000 times and waited some 1.5 s for a loopback that never answers).
        /// </summary>
        public const ushort IapcBootArch = (1 << 0) | (1 << 2);

        /// <summary>The reset register: PciHost's 0xCF9 (byte), written with <see cref="ResetValue"/>.</summary>
        public const ushort ResetPort = PciHost.ResetControlPort;

        /// <summary>Value written to the reset register: bits 1 and 2 (a hard reset on PIIX; bit 2 rising pulls the reset line).</summary>
        public const byte ResetValue = 0x06;

        // FADT (ACPI 6.5, 5.2.9, Table 5.9), the ACPI 6.0 layout. SMI_CMD is 0: the platform is
        // always in ACPI mode (PM1_CNT.SCI_EN reads 1), so no transition is ever requested.
        private static void WriteFadt(Span<byte> t, in AcpiConfig c, in AcpiLayout layout)
        {
            TableBytes.Header(t, 'F', 'A', 'C', 'P', 6);
            TableBytes.U32(t, 36, (uint)layout.Facs);
            TableBytes.U32(t, 40, (uint)layout.Dsdt);
            TableBytes.U16(t, 46, c.SciIrq);
            TableBytes.U32(t, 56, c.Pm1aEventPort);
            TableBytes.U32(t, 64, c.Pm1aControlPort);
            TableBytes.U32(t, 76, c.PmTimerPort);
            t[88] = AcpiPm.EventBlockLength;
            t[89] = AcpiPm.ControlBlockLength;
            t[91] = c.PmTimerPort != 0 ? AcpiPm.TimerLength : (byte)0;
            // No C2/C3: latencies above 100 and 1000 microseconds say "not supported".
            TableBytes.U16(t, 96, 101);
            TableBytes.U16(t, 98, 1001);
            t[108] = 0x32; // CENTURY: the CMOS byte Cmos keeps the century in.
            TableBytes.U16(t, 109, IapcBootArch);
            TableBytes.U32(t, 112, FadtFlags | (c.PmTimerPort != 0 ? FadtTimerValExt : 0));
            TableBytes.IoGas(t, 116, 8, 1, ResetPort);
            t[128] = ResetValue;
            t[131] = 0; // FADT minor version
            TableBytes.U64(t, 140, layout.Dsdt);
            TableBytes.IoGas(t, 148, 8 * AcpiPm.EventBlockLength, 2, c.Pm1aEventPort);
            TableBytes.IoGas(t, 172, 8 * AcpiPm.ControlBlockLength, 2, c.Pm1aControlPort);
            if (c.PmTimerPort != 0)
                TableBytes.IoGas(t, 208, 8 * AcpiPm.TimerLength, 3, c.PmTimerPort);
            TableBytes.OemId(t, 268); // hypervisor vendor identity
            TableBytes.SetChecksum(t, TableBytes.ChecksumOffset);
        }

        /// <summary>MADT flag PCAT_COMPAT: the guest also has a dual 8259 (masked by the OS when it uses the IOAPIC).</summary>
        public const uint MadtPcatCompat = 1;

        /// <summary>MPS INTI flags of the SCI override: active high (bits 1:0 = 01), level (bits 3:2 = 11).</summary>
        public const ushort SciOverrideFlags = 0x000D;

        // MADT (ACPI 6.5, 5.2.12): per vCPU i a Processor Local APIC (UID i, APIC ID i, enabled),
        // the IOAPIC, IRQ 0 → GSI 2 (the 8254 is on pin 2, as on every PC), the SCI as level active
        // high on its own pin, and LINT1 of every processor (UID 0xFF) as NMI.
        private static void WriteMadt(Span<byte> t, in AcpiConfig c)
        {
            TableBytes.Header(t, 'A', 'P', 'I', 'C', 3);
            TableBytes.U32(t, 36, c.LocalApicAddress);
            TableBytes.U32(t, 40, MadtPcatCompat);
            int p = MadtFixedLength;
            for (int i = 0; i < c.CpuCount; i++)
            {
                t[p] = 0;
                t[p + 1] = MadtLocalApicLength;
                t[p + 2] = (byte)i;
                t[p + 3] = (byte)i;
                TableBytes.U32(t, p + 4, 1);
                p += MadtLocalApicLength;
            }
            t[p] = 1;
            t[p + 1] = MadtIoApicLength;
            t[p + 2] = c.IoApicId;
            TableBytes.U32(t, p + 4, c.IoApicAddress);
            TableBytes.U32(t, p + 8, c.IoApicGsiBase);
            p += MadtIoApicLength;
            p = WriteOverride(t, p, 0, c.IoApicGsiBase + 2, 0);
            p = WriteOverride(t, p, c.SciIrq, c.IoApicGsiBase + c.SciIrq, SciOverrideFlags);
            t[p] = 4;
            t[p + 1] = MadtLocalNmiLength;
            t[p + 2] = 0xFF;
            TableBytes.U16(t, p + 3, 0);
            t[p + 5] = 1;
            p += MadtLocalNmiLength;
            if (p != t.Length)
                throw new InvalidOperationException("MADT length does not match its entries");
            TableBytes.SetChecksum(t, TableBytes.ChecksumOffset);
        }

        private static int WriteOverride(Span<byte> t, int p, byte irq, uint gsi, ushort flags)
        {
            t[p] = 2;
            t[p + 1] = MadtOverrideLength;
            t[p + 2] = 0; // bus: ISA
            t[p + 3] = irq;
            TableBytes.U32(t, p + 4, gsi);
            TableBytes.U16(t, p + 8, flags);
            return p + MadtOverrideLength;
        }
    }
}
