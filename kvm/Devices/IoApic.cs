namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The I/O APIC (Intel 82093AA datasheet; the ICH's IOAPIC, version 0x11) at guest-physical
    /// 0xFEC00000: IOREGSEL at offset 0x00 selects a register, IOWIN at 0x10 reads or writes it.
    /// Registers: 0x00 ID (bits 27:24), 0x01 version (0x00170011: version 0x11, 24 entries),
    /// 0x02 arbitration ID (reads as the ID), 0x10 + 2n / 0x11 + 2n the low / high halves of
    /// redirection entry n: bits 7:0 vector, 10:8 delivery mode (<see cref="IpiRequest"/>'s
    /// encodings), 11 destination mode (1 = logical), 12 delivery status, 13 polarity (1 = active
    /// low), 14 remote IRR, 15 trigger mode (1 = level), 16 mask, 63:56 destination.
    ///
    /// As an <see cref="IIrqSink"/>, <see cref="SetIrq"/> is the electrical level of an input
    /// pin; the entry's polarity says which level asserts it. Edge-triggered: an unmasked
    /// entry delivers on the assertion edge; an edge while masked is lost. Level-triggered: an
    /// unmasked asserted pin delivers and sets the remote IRR, which holds off more deliveries
    /// until the local APIC's EOI for that vector comes back through <see cref="Eoi"/>; a pin
    /// still asserted then delivers again. Unmasking an asserted level pin delivers too. The
    /// delivery status bit reads 0 (delivery is instant). Writing an entry never makes an edge.
    ///
    /// Pins: ISA IRQ n is pin n, except IRQ 0 (the PIT), which is pin 2 as on PCs, where the MADT
    /// declares the override (<see cref="PinForIsaIrq"/>); pins 16-23 are for PCI. All pins idle
    /// low: a device on an active-low pin raises its line once at wiring time to idle.
    /// Not emulated: the IOAPIC EOI register (version 0x20), the 82093AA's bus arbitration.
    /// </summary>
    public sealed class IoApic : IMmioDevice, IIrqSink, IEoiListener
    {
        /// <summary>The architectural base of the IOAPIC page.</summary>
        public const ulong DefaultBase = 0xFEC0_0000;

        /// <summary>Size of the MMIO page.</summary>
        public const ulong PageSize = 0x1000;

        /// <summary>Redirection entries (input pins).</summary>
        public const int Pins = 24;

        /// <summary>The version register: version 0x11, maximum redirection entry 23 in bits 23:16.</summary>
        public const uint VersionValue = 0x0017_0011;

        // Redirection entry bits (82093AA section 3.2.4).
        private const ulong DeliveryStatus = 1UL << 12;
        private const ulong ActiveLow = 1UL << 13;
        private const ulong RemoteIrr = 1UL << 14;
        private const ulong LevelTriggered = 1UL << 15;
        private const ulong Masked = 1UL << 16;

        /// <summary>The bits a guest writes: vector, delivery mode, destination mode, polarity, trigger, mask, destination.</summary>
        private const ulong Writable = 0xFF00_0000_0001_AFFFUL;

        private readonly IApicBus _bus;
        private readonly ulong[] _entry = new ulong[Pins];
        private readonly bool[] _line = new bool[Pins];     // electrical level of each pin
        private uint _select;
        private uint _id;

        /// <summary>MMIO accesses ignored for their width or offset.</summary>
        public ulong BadMmioAccesses;

        /// <summary>Interrupt messages sent to the APIC bus.</summary>
        public ulong Deliveries;

        /// <summary>An IOAPIC with every entry masked that sends its interrupts to <paramref name="bus"/>.</summary>
        public IoApic(IApicBus bus)
        {
            _bus = bus;
            Reset();
        }

        /// <summary>The pin ISA IRQ <paramref name="irq"/> drives: IRQ 0 on pin 2 (the MADT's interrupt source override), the others on their own number.</summary>
        public static int PinForIsaIrq(int irq) => irq == 0 ? 2 : irq;

        /// <summary>Back to power-on: every entry masked (0x10000), ID 0, IOREGSEL 0. Pin levels are the devices' and stay.</summary>
        public void Reset()
        {
            for (int i = 0; i < Pins; i++)
                _entry[i] = Masked;
            _select = 0;
            _id = 0;
        }

        /// <summary>Redirection entry <paramref name="pin"/>, for the monitor and tests.</summary>
        public ulong Entry(int pin) => _entry[pin];

        private bool Asserted(int pin) => _line[pin] != ((_entry[pin] & ActiveLow) != 0);

        /// <inheritdoc/>
        public void SetIrq(int irq, bool level)
        {
            if ((uint)irq >= Pins || _line[irq] == level)
                return;
            bool was = Asserted(irq);
            _line[irq] = level;
            bool now = Asserted(irq);
            if (now && !was)
                Service(irq);
        }

        /// <summary>
        /// Delivers pin <paramref name="pin"/>'s interrupt if its entry lets it: unmasked, and for
        /// a level-triggered entry asserted with the remote IRR clear (the remote IRR is set when
        /// an APIC accepts the message).
        /// </summary>
        private void Service(int pin)
        {
            ulong e = _entry[pin];
            if ((e & Masked) != 0)
                return;
            bool level = (e & LevelTriggered) != 0;
            if (level && ((e & RemoteIrr) != 0 || !Asserted(pin)))
                return;
            Deliveries++;
            bool accepted = _bus.Deliver((uint)(e >> 56), (e & (1UL << 11)) != 0, (int)(e >> 8) & 7, (int)(e & 0xFF), level);
            if (level && accepted)
                _entry[pin] |= RemoteIrr;
        }

        /// <summary>
        /// A local APIC's EOI for level-triggered <paramref name="vector"/>: clears the remote
        /// IRR of every level entry with that vector and delivers again those whose pin is still
        /// asserted.
        /// </summary>
        public void Eoi(int vector)
        {
            for (int pin = 0; pin < Pins; pin++)
            {
                ulong e = _entry[pin];
                if ((e & 0xFF) != (ulong)vector || (e & RemoteIrr) == 0)
                    continue;
                _entry[pin] = e & ~RemoteIrr;
                Service(pin);
            }
        }

        /// <inheritdoc/>
        public ulong Read(ulong offset, int size)
        {
            if (offset == 0 && size <= 4)
                return _select;
            if (offset == 0x10 && size == 4)
                return ReadRegister(_select);
            BadMmioAccesses++;
            return 0;
        }

        /// <inheritdoc/>
        public void Write(ulong offset, int size, ulong value)
        {
            if (offset == 0 && size <= 4)
            {
                _select = (uint)value & 0xFF;
                return;
            }
            if (offset == 0x10 && size == 4)
            {
                WriteRegister(_select, (uint)value);
                return;
            }
            BadMmioAccesses++;
        }

        private uint ReadRegister(uint reg)
        {
            switch (reg)
            {
                case 0x00:
                case 0x02:
                    return _id << 24;
                case 0x01:
                    return VersionValue;
            }
            int pin = (int)(reg - 0x10) >> 1;
            if (reg < 0x10 || pin >= Pins)
                return 0;
            ulong e = _entry[pin] & ~DeliveryStatus;
            return (reg & 1) == 0 ? (uint)e : (uint)(e >> 32);
        }

        private void WriteRegister(uint reg, uint value)
        {
            if (reg == 0x00)
            {
                _id = (value >> 24) & 0xF;
                return;
            }
            int pin = (int)(reg - 0x10) >> 1;
            if (reg < 0x10 || pin >= Pins)
                return;                         // version, arbitration and unused registers are read-only
            ulong old = _entry[pin];
            ulong e = (reg & 1) == 0
                ? (old & 0xFFFF_FFFF_0000_0000UL) | value
                : (old & 0xFFFF_FFFFUL) | ((ulong)value << 32);
            e = (e & Writable) | (old & RemoteIrr);
            if ((e & LevelTriggered) == 0)
                e &= ~RemoteIrr;                // an edge entry has no remote IRR
            _entry[pin] = e;
            // An asserted level pin that is (or stays) unmasked without a remote IRR delivers now.
            if ((e & LevelTriggered) != 0)
                Service(pin);
        }
    }
}
