namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// One VM's PC devices and their wiring: the port bus, the 8259A pair (the interrupt
    /// controller every device line reaches), the 8254 PIT, COM1 (16550A, IRQ 4), the CMOS/RTC
    /// (IRQ 8), the i8042 and port 0x92 (the reset line), the PCI host bridge (and 0xCF9), fw_cfg,
    /// the debug-exit port 0xF4, the ACPI PM block, the IOAPIC and one local APIC per vCPU on an
    /// <see cref="Devices.ApicBus"/>. vCPU i's run loop calls <see cref="Poll(int)"/> before an
    /// entry, injects <see cref="AcknowledgeInterrupt(int)"/>'s vector when
    /// <see cref="HasInterruptFor"/> and the guest can take it, bounds the guest's run (or a halted
    /// vCPU's wait) by <see cref="NextEventNsFor"/>, and ends the VM when
    /// <see cref="DebugExit"/> or <see cref="Reset"/> asks. The parameterless forms are vCPU 0's.
    /// </summary>
    /// <remarks>
    /// Several vCPUs (docs/devices.md, "Several vCPUs"): the vCPU threads of one VM run on
    /// different CPUs at once, so every call into these devices is made with <see cref="Lock"/>
    /// held (see <see cref="DeviceLock"/> for the contract); what becomes pending for a vCPU
    /// because of another agent is announced through <see cref="Kicker"/>, under the lock.
    /// </remarks>
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

        /// <summary>QEMU's fw_cfg interface (signature, CPU counts, RAM size, the command line, etc/e820, etc/acpi/rsdp).</summary>
        public readonly FwCfg FwCfg;

        /// <summary>The platform's own fw_cfg files: <c>etc/e820</c> and <c>etc/acpi/rsdp</c>.</summary>
        public const int PlatformFwCfgFiles = 2;

        /// <summary>fw_cfg files a VM may get from its command line (<c>vm=...,fwcfg=NAME:MODULE</c>) beside the platform's.</summary>
        public const int MaxUserFwCfgFiles = 8;

        /// <summary>The largest fw_cfg file a VM may get from its command line (each is copied into the device).</summary>
        public const int MaxUserFwCfgBytes = 1 << 20;

        /// <summary>Port 0xF4: the guest's exit status.</summary>
        public readonly DebugExit DebugExit;

        /// <summary>ACPI's PM1 event and control blocks and PM timer (0x600-0x60B): S5 power-off.</summary>
        public readonly AcpiPm Pm;

        /// <summary>The CPU reset line the i8042, port 0x92 and 0xCF9 pull.</summary>
        public readonly ResetLine Reset;

        /// <summary>vCPU 0's (the BSP's) local APIC: <c>Lapics[0]</c>.</summary>
        public readonly LocalApic Lapic;

        /// <summary>
        /// The local APICs, vCPU i's at index i with APIC ID i (xAPIC page at 0xFEE00000 as that
        /// vCPU sees it, x2APIC MSRs, timer); vCPU 0 is the BSP.
        /// </summary>
        public readonly LocalApic[] Lapics;

        /// <summary>The number of vCPUs (and of local APICs).</summary>
        public readonly int CpuCount;

        /// <summary>The APIC bus: the IOAPIC's messages and the local APICs' IPIs to the local APICs.</summary>
        public readonly ApicBus ApicBus;

        /// <summary>The VM-wide device lock: held for every call into these devices (<see cref="DeviceLock"/>).</summary>
        public readonly DeviceLock Lock = new DeviceLock();

        /// <summary>The IOAPIC at 0xFEC00000 (ISA IRQ n on pin n, IRQ 0 on pin 2).</summary>
        public readonly IoApic IoApic;

        /// <summary>The VM's MMIO space (outside RAM) for the devices all vCPUs share; the local APICs' pages are per vCPU (<see cref="FindMmio"/>).</summary>
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
            if (cpus == 0 || cpus > Acpi.AcpiConfig.MaxCpus)
                throw new System.ArgumentException("PC platform: 1 to 255 vCPUs (8-bit xAPIC IDs, 0xFF is the broadcast ID)");
            Clock = clock;
            CpuCount = cpus;
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
            FwCfg = new FwCfg(ramBytes, cpus, cpus, PlatformFwCfgFiles + MaxUserFwCfgFiles);
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
            ApicBus = new ApicBus(cpus);
            IoApic = new IoApic(ApicBus);
            Lapics = new LocalApic[cpus];
            for (int i = 0; i < cpus; i++)
            {
                Lapics[i] = new LocalApic((uint)i, i == 0, clock, 1_000_000_000, tscHz, ApicBus);
                Lapics[i].EoiListener = IoApic;
                ApicBus.Attach(Lapics[i]);
            }
            Lapic = Lapics[0];
            Pic.IntOutput = new PicToBsp(this);
            Mmio = new MmioMap(8);
            Scratch = new ScratchMmio();
            ok &= Mmio.Register(ScratchMmio.Base, ScratchMmio.Size, Scratch)
                && Mmio.Register(IoApic.DefaultBase, IoApic.PageSize, IoApic);
            if (!ok)
                throw new System.InvalidOperationException("PC platform: overlapping device ports or MMIO ranges");
            // The e820 map: the loaders' own (GuestMemoryMap: the legacy hole reserved, RAM past
            // 3 GiB above 4 GiB), so firmware reading fw_cfg and a loaded kernel agree.
            FwCfg.AddFile(E820Name, E820Entry.BuildFile(new Boot.GuestMemoryMap(ramBytes)));
            // The RSDP of the ACPI tables the VM gets (GuestImage writes them at AcpiBase when RAM
            // covers the BIOS area), as firmware that asks fw_cfg for it finds it.
            if (ramBytes >= Acpi.AcpiTables.BiosAreaEnd)
                FwCfg.AddFile(RsdpName, BuildRsdp(AcpiConfig));
        }

        /// <summary>
        /// Another VM takes these devices over, with their state (the in-host postcopy move): COM1's
        /// output and the kicks of interrupts and IPIs go to it from now on. Called with no vCPU of
        /// the old VM running (it is paused) and before any of the new VM's runs.
        /// </summary>
        public void AdoptBy(ISerialSink serial, IVcpuKick kicker)
        {
            Lock.Enter();
            Com1.SetOutput(serial);
            Kicker = kicker;
            Lock.Exit();
        }

        /// <summary>Where the VM's ACPI tables go (the RSDP first): the start of the BIOS area, where a legacy scan finds it.</summary>
        public const ulong AcpiBase = Acpi.AcpiTables.StandardBase;

        /// <summary>The RSDP (36 bytes, revision 2) of the tables <paramref name="config"/> gives at <see cref="AcpiBase"/>.</summary>
        private static byte[] BuildRsdp(in Acpi.AcpiConfig config)
        {
            byte[] block = new byte[Acpi.AcpiTables.LengthFor(config.CpuCount)];
            byte[] rsdp = new byte[Acpi.AcpiTables.RsdpLength];
            if (!Acpi.AcpiTables.Build(config, AcpiBase, new System.Span<byte>(block), out _))
                throw new System.InvalidOperationException("PC platform: the ACPI tables cannot describe it");
            for (int i = 0; i < rsdp.Length; i++)
                rsdp[i] = block[i];
            return rsdp;
        }

        private static readonly byte[] RsdpName =
        {
            (byte)'e', (byte)'t', (byte)'c', (byte)'/', (byte)'a', (byte)'c', (byte)'p', (byte)'i', (byte)'/',
            (byte)'r', (byte)'s', (byte)'d', (byte)'p',
        };

        private static readonly byte[] E820Name = { (byte)'e', (byte)'t', (byte)'c', (byte)'/', (byte)'e', (byte)'8', (byte)'2', (byte)'0' };

        /// <summary>
        /// Who is told that something became pending for a vCPU because of another agent (an IPI,
        /// an IOAPIC message, an NMI, INIT or start-up, a PIC interrupt for vCPU 0); null: nobody.
        /// Set it before the vCPUs run. Called with <see cref="Lock"/> held (<see cref="IVcpuKick"/>).
        /// </summary>
        public IVcpuKick? Kicker
        {
            get => ApicBus.Kicker;
            set => ApicBus.Kicker = value;
        }

        /// <summary>The ACPI description of this machine (its vCPU count), for the tables the VM gets.</summary>
        public Acpi.AcpiConfig AcpiConfig => Acpi.AcpiConfig.ForCpus(CpuCount);

        /// <summary>The PIC's INT output, wired to vCPU 0: a rising output kicks vCPU 0 while its APIC passes the PIC's interrupts.</summary>
        private sealed class PicToBsp : IIrqSink
        {
            private readonly PcPlatform _platform;

            public PicToBsp(PcPlatform platform) { _platform = platform; }

            public void SetIrq(int irq, bool level)
            {
                if (level && _platform.Lapics[0].AcceptsPicInterrupts)
                    _platform.ApicBus.Kicker?.Kick(0);
            }
        }

        /// <inheritdoc/>
        public void SetIrq(int irq, bool level)
        {
            Pic.SetIrq(irq, level);
            if (irq < 16)
                IoApic.SetIrq(IoApic.PinForIsaIrq(irq), level);
        }

        /// <summary>
        /// The MMIO device vCPU <paramref name="cpu"/> reaches at [<paramref name="gpa"/>, +
        /// <paramref name="size"/>), and the offset into it; null if none. Its own local APIC for
        /// an access inside the 4 KiB page at that APIC's <see cref="LocalApic.BaseAddress"/>
        /// (every vCPU's page is at 0xFEE00000 until its guest moves it; the page reads 0 and
        /// ignores writes while <see cref="LocalApic.MmioEnabled"/> is false, and it hides a shared
        /// device the guest moved it over), otherwise the shared <see cref="Mmio"/>.
        /// </summary>
        public IMmioDevice? FindMmio(int cpu, ulong gpa, int size, out ulong offset)
        {
            LocalApic apic = Lapics[cpu];
            ulong o = gpa - apic.BaseAddress;
            if (gpa >= apic.BaseAddress && o < LocalApic.PageSize && (ulong)size <= LocalApic.PageSize - o)
            {
                offset = o;
                return apic;
            }
            return Mmio.Find(gpa, size, out offset);
        }

        // ---- vCPU 0's view, as the one-vCPU run loop uses it ----

        /// <summary>
        /// vCPU 0: nothing to do before an entry: no timer armed and no interrupt waiting (NMI, INIT
        /// and start-up are not counted: the one-vCPU loop does not act on them; <see cref="IsQuiet"/> does).
        /// </summary>
        public bool Quiet => !Pit.Armed && !HasInterrupt && Cmos.NextEventNs == ulong.MaxValue && Lapic.NextEventNs == ulong.MaxValue;

        /// <summary>vCPU 0: lets the timers raise what is due by now (<see cref="Poll(int)"/>).</summary>
        public void Poll() => Poll(0);

        /// <summary>vCPU 0: the VM clock's time of the next timer event, or <see cref="ulong.MaxValue"/> (<see cref="NextEventNsFor"/>).</summary>
        public ulong NextEventNs => NextEventNsFor(0);

        /// <summary>
        /// vCPU 0: an external interrupt waits: in its local APIC, or at the PIC while the APIC
        /// passes the PIC's INTR through (disabled, or LINT0 in ExtINT mode).
        /// </summary>
        public bool HasInterrupt => HasInterruptFor(0);

        /// <summary>vCPU 0: the interrupt acknowledge cycle: the vector to inject (the local APIC's first, else the PIC's, spurious if it has none).</summary>
        public int AcknowledgeInterrupt() => Lapic.PendingVector >= 0 ? Lapic.Acknowledge() : Pic.Acknowledge();

        // ---- per vCPU (call with Lock held) ----

        /// <summary>
        /// Lets the timers raise what is due by now, on behalf of vCPU <paramref name="cpu"/>: the
        /// PIT and the RTC (shared: whichever vCPU polls first raises them, and the vCPU the guest
        /// routed them to is kicked) and <paramref name="cpu"/>'s local APIC timer.
        /// </summary>
        public void Poll(int cpu)
        {
            Pit.Poll();
            Cmos.Poll();
            Lapics[cpu].Poll();
        }

        /// <summary>The VM clock's time of the next event vCPU <paramref name="cpu"/> must poll for (the PIT, the RTC, its local APIC timer), or <see cref="ulong.MaxValue"/>.</summary>
        public ulong NextEventNsFor(int cpu)
        {
            ulong next = Pit.NextIrqNs, rtc = Cmos.NextEventNs, apic = Lapics[cpu].NextEventNs;
            if (rtc < next)
                next = rtc;
            return apic < next ? apic : next;
        }

        /// <summary>
        /// An external interrupt waits for vCPU <paramref name="cpu"/>: a deliverable vector in its
        /// local APIC, or, for vCPU 0 only (the 8259A is wired to the BSP), one at the PIC while
        /// LAPIC 0 passes the PIC's INTR through (hardware-disabled, or LINT0 unmasked ExtINT).
        /// </summary>
        public bool HasInterruptFor(int cpu)
        {
            LocalApic apic = Lapics[cpu];
            return apic.PendingVector >= 0 || (cpu == 0 && Pic.HasInterrupt && apic.AcceptsPicInterrupts);
        }

        /// <summary>
        /// vCPU <paramref name="cpu"/>'s interrupt acknowledge: its local APIC's vector first, then
        /// (vCPU 0 only) the PIC's; -1 when <see cref="HasInterruptFor"/> is false.
        /// </summary>
        public int AcknowledgeInterrupt(int cpu)
        {
            LocalApic apic = Lapics[cpu];
            if (apic.PendingVector >= 0)
                return apic.Acknowledge();
            if (cpu == 0 && Pic.HasInterrupt && apic.AcceptsPicInterrupts)
                return Pic.Acknowledge();
            return -1;
        }

        /// <summary>
        /// Something waits for vCPU <paramref name="cpu"/> that ends a halt or a wait for SIPI: an
        /// interrupt (<see cref="HasInterruptFor"/>), or an NMI, INIT or start-up IPI in its
        /// local APIC (taken with <see cref="LocalApic.TakeNmi"/>, <see cref="LocalApic.TakeInit"/>,
        /// <see cref="LocalApic.TakeStartUp"/>).
        /// </summary>
        public bool HasEvent(int cpu) => HasInterruptFor(cpu) || Lapics[cpu].HasNmiInitOrStartUp;

        /// <summary>
        /// Nothing for vCPU <paramref name="cpu"/> to do before an entry: no PIT, RTC or local APIC
        /// timer event armed, and no interrupt, NMI, INIT or start-up waiting for it.
        /// </summary>
        public bool IsQuiet(int cpu) => !Pit.Armed && Cmos.NextEventNs == ulong.MaxValue && Lapics[cpu].NextEventNs == ulong.MaxValue && !HasEvent(cpu);
    }
}
