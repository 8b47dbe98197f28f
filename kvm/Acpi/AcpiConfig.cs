namespace Tandem.Kvm.Acpi
{
    /// <summary>
    /// What a VM's ACPI tables describe (docs/devices.md, "ACPI"): the vCPUs (APIC IDs 0 .. n-1),
    /// the local APIC and IOAPIC pages, the SCI line and the PM1a/PM timer ports of
    /// <see cref="Devices.AcpiPm"/>. <see cref="ForCpus"/> gives Tandem's standard machine; the
    /// fields are public so that a test (or a later platform) can move a port.
    /// </summary>
    public struct AcpiConfig
    {
        /// <summary>The most vCPUs the tables describe: xAPIC IDs are 8 bits and 0xFF is the broadcast ID.</summary>
        public const int MaxCpus = 255;

        /// <summary>The local APIC page every vCPU sees (IA32_APIC_BASE's reset value).</summary>
        public const uint StandardLocalApicAddress = 0xFEE0_0000;

        /// <summary>The IOAPIC page.</summary>
        public const uint StandardIoApicAddress = 0xFEC0_0000;

        /// <summary>The ISA IRQ (and GSI) of the SCI: 9, as on PIIX4 and ICH9.</summary>
        public const byte StandardSciIrq = 9;

        /// <summary>The number of vCPUs, 1 .. <see cref="MaxCpus"/>; vCPU i has APIC ID and ACPI processor UID i.</summary>
        public int CpuCount;

        /// <summary>Guest-physical address of the local APIC page (MADT header).</summary>
        public uint LocalApicAddress;

        /// <summary>Guest-physical address of the IOAPIC page.</summary>
        public uint IoApicAddress;

        /// <summary>The IOAPIC's ID (its ID register's reset value: 0, as QEMU's).</summary>
        public byte IoApicId;

        /// <summary>The first GSI of the IOAPIC's pins.</summary>
        public uint IoApicGsiBase;

        /// <summary>The SCI's ISA IRQ; the MADT overrides it to level, active high (GSI = IRQ).</summary>
        public byte SciIrq;

        /// <summary>PM1a event block (PM1_STS, PM1_EN: 4 ports).</summary>
        public ushort Pm1aEventPort;

        /// <summary>PM1a control block (PM1_CNT: 2 ports).</summary>
        public ushort Pm1aControlPort;

        /// <summary>PM timer (4 ports, 32 bits), or 0 for none.</summary>
        public ushort PmTimerPort;

        /// <summary>Tandem's standard machine with <paramref name="cpus"/> vCPUs: APICs at their reset addresses, IOAPIC 0 at GSI 0, SCI 9, the PM ports of <see cref="Devices.AcpiPm"/>.</summary>
        public static AcpiConfig ForCpus(int cpus)
        {
            AcpiConfig c;
            c.CpuCount = cpus;
            c.LocalApicAddress = StandardLocalApicAddress;
            c.IoApicAddress = StandardIoApicAddress;
            c.IoApicId = 0;
            c.IoApicGsiBase = 0;
            c.SciIrq = StandardSciIrq;
            c.Pm1aEventPort = Devices.AcpiPm.EventBlockPort;
            c.Pm1aControlPort = Devices.AcpiPm.ControlBlockPort;
            c.PmTimerPort = Devices.AcpiPm.TimerPort;
            return c;
        }
    }
}
