namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// One VM's PC devices and their wiring: the port bus, the 8259A pair (the interrupt
    /// controller every device line reaches), the 8254 PIT, COM1 (16550A, IRQ 4), the CMOS/RTC
    /// (IRQ 8), the i8042 and port 0x92 (the reset line), the PCI host bridge (and 0xCF9), fw_cfg
    /// and the debug-exit port 0xF4. The VM loop calls <see cref="Poll"/> before an entry, injects
    /// <see cref="AcknowledgeInterrupt"/>'s vector when <see cref="HasInterrupt"/> and the guest
    /// can take it, bounds the guest's run (or a halted vCPU's wait) by <see cref="NextEventNs"/>,
    /// and ends the VM when <see cref="DebugExit"/> or <see cref="Reset"/> asks.
    /// </summary>
    public sealed class PcPlatform : IIrqSink
    {
        /// <summary>The VM's port I/O space.</summary>
        public readonly PortBus Ports;

        /// <summary>The interrupt controllers.</summary>
        public readonly Pic8259 Pic;

        /// <summary>The interval timer (IRQ 0).</summary>
        public readonly Pit8254 Pit;

        /// <summary>COM1 at 0x3F8, IRQ 4.</summary>
        public readonly Uart16550 Com1;

        /// <summary>CMOS RAM and the RTC (IRQ 8).</summary>
        public readonly Cmos Cmos;

        /// <summary>The keyboard controller (its reset line).</summary>
        public readonly I8042 Kbc;

        /// <summary>System control port A (0x92).</summary>
        public readonly SystemControlA Port92;

        /// <summary>PCI configuration mechanism 1 with the host bridge, and the reset control register 0xCF9.</summary>
        public readonly PciHost Pci;

        /// <summary>QEMU's fw_cfg interface (signature, CPU count, RAM size, etc/e820).</summary>
        public readonly FwCfg FwCfg;

        /// <summary>Port 0xF4: the guest's exit status.</summary>
        public readonly DebugExit DebugExit;

        /// <summary>ACPI's PM1 event and control blocks and PM timer (0x600-0x60B): S5 power-off.</summary>
        public readonly AcpiPm Pm;

        /// <summary>The CPU reset line the i8042, port 0x92 and 0xCF9 pull.</summary>
        public readonly ResetLine Reset;

        /// <summary>The vCPU's local APIC (xAPIC page at 0xFEE00000, x2APIC MSRs, timer).</summary>
        public readonly LocalApic Lapic;

        /// <summary>The IOAPIC at 0xFEC00000 (ISA IRQ n on pin n, IRQ 0 on pin 2).</summary>
        public readonly IoApic IoApic;

        /// <summary>The VM's MMIO space (outside RAM).</summary>
        public readonly MmioMap Mmio;

        /// <summary>Tandem's MMIO test page.</summary>
        public readonly ScratchMmio Scratch;

        /// <summary>The VM's clock.</summary>
        public readonly IDeviceClock Clock;

        /// <summary>
        /// Devices on a fresh bus, timed by <paramref name="clock"/>, for a VM with
        /// <paramref name="ramBytes"/> of RAM from guest-physical 0 and <paramref name="cpus"/>
        /// vCPUs; COM1's output goes to <paramref name="serial"/>; <paramref name="tscHz"/> is the
        /// TSC frequency (the local APIC's TSC-deadline timer counts in it; its own timer runs at 1 GHz).
        /// </summary>
        public PcPlatform(IDeviceClock clock, ISerialSink serial, ulong ramBytes, ushort cpus, ulong tscHz)
        {
            Clock = clock;
            Ports = new PortBus(32);
            Reset = new ResetLine();
            Pic = new Pic8259();
            Pit = new Pit8254(this, clock);
            Com1 = new Uart16550(0x3F8, 4, this, serial);
            ulong below4G = ramBytes < 0xC000_0000UL ? ramBytes : 0xC000_0000UL;
            Cmos = new Cmos(clock, this, below4G, ramBytes - below4G);
            Kbc = new I8042(Reset, this);
            Port92 = new SystemControlA(Reset);
            Pci = new PciHost(Reset);
            FwCfg = new FwCfg(ramBytes, cpus, cpus, 4);
            DebugExit = new DebugExit();
            Pm = new AcpiPm(clock, this, Acpi.AcpiConfig.StandardSciIrq);
            bool ok = Pic.Attach(Ports) && Pit.Attach(Ports)
                && Ports.Register(0x3F8, 8, Com1)
                && Ports.Register(0x70, 2, Cmos)
                && Ports.Register(0x60, 1, Kbc) && Ports.Register(0x64, 1, Kbc)
                && Ports.Register(0x92, 1, Port92)
                && Ports.Register(0xCF8, 8, Pci)
                && Ports.Register(FwCfg.SelectorPort, FwCfg.PortCount, FwCfg)
                && Ports.Register(DebugExit.Port, 1, DebugExit)
                && Ports.Register(AcpiPm.BasePort, AcpiPm.PortCount, Pm);
            Lapic = new LocalApic(0, true, clock, 1_000_000_000, tscHz, null);
            IoApic = new IoApic(Lapic);
            Lapic.EoiListener = IoApic;
            Mmio = new MmioMap(8);
            Scratch = new ScratchMmio();
            ok &= Mmio.Register(ScratchMmio.Base, ScratchMmio.Size, Scratch)
                && Mmio.Register(IoApic.DefaultBase, IoApic.PageSize, IoApic)
                && Mmio.Register(LocalApic.DefaultBase, LocalApic.PageSize, Lapic);
            if (!ok)
                throw new System.InvalidOperationException("PC platform: overlapping device ports or MMIO ranges");
            // The e820 map the memory is really backed by: RAM from 0, the legacy hole reserved.
            E820Entry[] map = new E820Entry[3];
            ulong low = ramBytes < 0xA_0000UL ? ramBytes : 0xA_0000UL;
            int n = 0;
            map[n++] = new E820Entry(0, low, E820Entry.Ram);
            map[n++] = new E820Entry(0xA_0000, 0x6_0000, E820Entry.Reserved);
            if (ramBytes > 0x10_0000)
                map[n++] = new E820Entry(0x10_0000, ramBytes - 0x10_0000, E820Entry.Ram);
            FwCfg.AddFile(E820Name, E820Entry.BuildFile(new System.ReadOnlySpan<E820Entry>(map, 0, n)));
        }

        private static readonly byte[] E820Name = { (byte)'e', (byte)'t', (byte)'c', (byte)'/', (byte)'e', (byte)'8', (byte)'2', (byte)'0' };

        /// <inheritdoc/>
        public void SetIrq(int irq, bool level)
        {
            Pic.SetIrq(irq, level);
            if (irq < 16)
                IoApic.SetIrq(IoApic.PinForIsaIrq(irq), level);
        }

        /// <summary>Nothing to do before an entry: no timer armed and no interrupt waiting.</summary>
        public bool Quiet => !Pit.Armed && !HasInterrupt && Cmos.NextEventNs == ulong.MaxValue && Lapic.NextEventNs == ulong.MaxValue;

        /// <summary>Lets the timers raise what is due by now.</summary>
        public void Poll()
        {
            Pit.Poll();
            Cmos.Poll();
            Lapic.Poll();
        }

        /// <summary>The VM clock's time of the next timer event, or <see cref="ulong.MaxValue"/>.</summary>
        public ulong NextEventNs
        {
            get
            {
                ulong next = Pit.NextIrqNs, rtc = Cmos.NextEventNs, apic = Lapic.NextEventNs;
                if (rtc < next)
                    next = rtc;
                return apic < next ? apic : next;
            }
        }

        /// <summary>
        /// An external interrupt waits for the vCPU: in its local APIC, or at the PIC while the APIC
        /// passes the PIC's INTR through (disabled, or LINT0 in ExtINT mode).
        /// </summary>
        public bool HasInterrupt => Lapic.PendingVector >= 0 || (Pic.HasInterrupt && Lapic.AcceptsPicInterrupts);

        /// <summary>The interrupt acknowledge cycle: the vector to inject (the local APIC's first).</summary>
        public int AcknowledgeInterrupt() => Lapic.PendingVector >= 0 ? Lapic.Acknowledge() : Pic.Acknowledge();
    }
}
