namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The 8254 programmable interval timer at 0x40-0x43 (1.193182 MHz), with system control port
    /// B at 0x61 (channel 2's gate in bit 0, the speaker enable in bit 1, channel 2's output in
    /// bit 5, the refresh toggle in bit 4). Channel 0's output drives IRQ 0.
    ///
    /// Counters are not ticked: each one remembers when it was loaded and computes its value and
    /// output from the VM clock when read, so a guest that polls (Linux's TSC calibration against
    /// channel 2) sees real time pass. Channel 0's interrupts are produced by <see cref="Poll"/>,
    /// which the VM loop calls before each entry, and <see cref="NextIrqNs"/> tells it when the
    /// next one is due (it bounds the guest's run or a halted vCPU's sleep by it). Missed periods
    /// coalesce into one edge, as the PIC's single request bit would anyway.
    ///
    /// Modes 0 to 5, latch and read-back commands, and the lo/hi/lo-then-hi access modes are
    /// emulated. Not emulated: BCD counting (the flag is kept and reported, the count is binary).
    /// </summary>
    public sealed class Pit8254 : IPortDevice
    {
        /// <summary>Input clock of the counters, Hz.</summary>
        public const ulong Frequency = 1_193_182;

        private const ulong NsPerSecond = 1_000_000_000;

        private struct Channel
        {
            public byte Mode, Access, Bcd;
            public uint Count;            // reload value, 1..65536 (0 written = 65536)
            public bool Loaded;           // a count was written since the control word
            public ulong LoadNs;          // when counting (re)started
            public ulong FrozenTicks;     // mode 0/4 with the gate low: ticks counted so far
            public bool Gate;
            public bool WriteHigh;        // lo-then-hi: the next data write is the high byte
            public bool ReadHigh;         // lo-then-hi: the next data read is the high byte
            public bool CountLatched;
            public ushort Latch;
            public bool StatusLatched;
            public byte Status;
            public byte LowWritten;
        }

        private readonly Channel[] _ch = new Channel[3];
        private readonly IIrqSink _irq;
        private readonly IDeviceClock _clock;
        private byte _portB;
        private ulong _irqTicks;          // channel 0: ticks since load at which the next IRQ is due

        /// <summary>IRQ 0 edges raised so far.</summary>
        public ulong Irqs;

        /// <summary>A PIT wired to <paramref name="irq"/> (IRQ 0) and timed by <paramref name="clock"/>.</summary>
        public Pit8254(IIrqSink irq, IDeviceClock clock)
        {
            _irq = irq;
            _clock = clock;
            _irqTicks = ulong.MaxValue;
            for (int i = 0; i < 3; i++)
            {
                _ch[i].Gate = i != 2;
                _ch[i].Access = 3;
            }
        }

        /// <summary>Registers the device's ports (0x40-0x43, 0x61) on <paramref name="bus"/>.</summary>
        public bool Attach(PortBus bus) => bus.Register(0x40, 4, this) && bus.Register(0x61, 1, this);

        /// <summary>Whole counter ticks in <paramref name="ns"/> nanoseconds (no overflow for any 64-bit span).</summary>
        public static ulong TicksIn(ulong ns) => ns / NsPerSecond * Frequency + ns % NsPerSecond * Frequency / NsPerSecond;

        /// <summary>Nanoseconds until tick <paramref name="ticks"/> (rounded up).</summary>
        public static ulong NsFor(ulong ticks) => ticks / Frequency * NsPerSecond + (ticks % Frequency * NsPerSecond + Frequency - 1) / Frequency;

        private ulong Ticks(int c, ulong now)
        {
            ref Channel ch = ref _ch[c];
            if (!ch.Loaded)
                return 0;
            if (!ch.Gate && (ch.Mode == 0 || ch.Mode == 4))
                return ch.FrozenTicks;
            ulong run = now > ch.LoadNs ? TicksIn(now - ch.LoadNs) : 0;
            return (ch.Mode == 0 || ch.Mode == 4) ? ch.FrozenTicks + run : run;
        }

        /// <summary>The counter's current value (what a latch would capture).</summary>
        private ushort Value(int c, ulong now)
        {
            ref Channel ch = ref _ch[c];
            if (!ch.Loaded)
                return (ushort)ch.Count;
            ulong t = Ticks(c, now);
            uint n = ch.Count;
            switch (ch.Mode)
            {
                case 2:
                    return (ushort)(n - t % n);
                case 3:
                    {
                        // Counts down by two, twice per period.
                        ulong half = (n + 1) / 2;
                        ulong inHalf = t % n < half ? t % n : t % n - half;
                        return (ushort)((n - 2 * inHalf) & 0xFFFE);
                    }
                default:
                    // Modes 0, 1, 4, 5: one count down, then wrapping through 0xFFFF.
                    return (ushort)((n - t) & 0xFFFF);
            }
        }

        /// <summary>The channel's OUT pin.</summary>
        private bool Out(int c, ulong now)
        {
            ref Channel ch = ref _ch[c];
            if (!ch.Loaded)
                return ch.Mode != 0;
            ulong t = Ticks(c, now);
            uint n = ch.Count;
            switch (ch.Mode)
            {
                case 0:
                case 1:
                    return t >= n;
                case 2:
                    return t % n != n - 1;
                case 3:
                    return t % n < (n + 1) / 2;
                default:
                    return t != n;       // modes 4, 5: one low tick at terminal count
            }
        }

        /// <summary>Channel 0 has an interrupt point ahead (<see cref="Poll"/> and <see cref="NextIrqNs"/> have work).</summary>
        public bool Armed
        {
            [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
            get => _irqTicks != ulong.MaxValue;
        }

        /// <summary>Raises IRQ 0 if channel 0 reached its next interrupt point by now.</summary>
        public void Poll()
        {
            ref Channel ch = ref _ch[0];
            if (!ch.Loaded || _irqTicks == ulong.MaxValue)
                return;
            ulong t = Ticks(0, _clock.NowNs);
            if (t < _irqTicks)
                return;
            Irqs++;
            IrqLines.Pulse(_irq, 0);
            if (ch.Mode == 2 || ch.Mode == 3)
                _irqTicks = (t / ch.Count + 1) * ch.Count;       // the next period boundary after now
            else
                _irqTicks = ulong.MaxValue;                      // one-shot modes: once per load
        }

        /// <summary>The VM clock's time of channel 0's next interrupt, or <see cref="ulong.MaxValue"/> for none.</summary>
        public ulong NextIrqNs
        {
            get
            {
                ref Channel ch = ref _ch[0];
                if (!ch.Loaded || _irqTicks == ulong.MaxValue || (!ch.Gate && (ch.Mode == 0 || ch.Mode == 4)))
                    return ulong.MaxValue;
                ulong start = ch.LoadNs;
                ulong fromStart = _irqTicks - ((ch.Mode == 0 || ch.Mode == 4) ? ch.FrozenTicks : 0);
                return start + NsFor(fromStart);
            }
        }

        /// <inheritdoc/>
        public uint Read(ushort port, int size)
        {
            ulong now = _clock.NowNs;
            if (port == 0x61)
            {
                uint refresh = (uint)(now / 15_085 & 1) << 4;
                return (uint)(_portB & 3) | refresh | (Out(2, now) ? 0x20u : 0u);
            }
            int c = port - 0x40;
            if (c == 3)
                return 0xFF;        // the control register is write-only
            ref Channel ch = ref _ch[c];
            if (ch.StatusLatched)
            {
                ch.StatusLatched = false;
                return ch.Status;
            }
            ushort v;
            if (ch.CountLatched)
            {
                v = ch.Latch;
            }
            else
            {
                v = Value(c, now);
            }
            switch (ch.Access)
            {
                case 1:
                    ch.CountLatched = false;
                    return (uint)(v & 0xFF);
                case 2:
                    ch.CountLatched = false;
                    return (uint)(v >> 8);
                default:
                    if (!ch.ReadHigh)
                    {
                        ch.ReadHigh = true;
                        return (uint)(v & 0xFF);
                    }
                    ch.ReadHigh = false;
                    ch.CountLatched = false;
                    return (uint)(v >> 8);
            }
        }

        /// <inheritdoc/>
        public void Write(ushort port, int size, uint value)
        {
            ulong now = _clock.NowNs;
            byte v = (byte)value;
            if (port == 0x61)
            {
                SetGate2((v & 1) != 0, now);
                _portB = (byte)(v & 3);
                return;
            }
            int c = port - 0x40;
            if (c == 3)
            {
                Control(v, now);
                return;
            }
            ref Channel ch = ref _ch[c];
            switch (ch.Access)
            {
                case 1:
                    Load(c, v, now);
                    break;
                case 2:
                    Load(c, (uint)v << 8, now);
                    break;
                default:
                    if (!ch.WriteHigh)
                    {
                        ch.LowWritten = v;
                        ch.WriteHigh = true;
                    }
                    else
                    {
                        ch.WriteHigh = false;
                        Load(c, ch.LowWritten | ((uint)v << 8), now);
                    }
                    break;
            }
        }

        private void Control(byte v, ulong now)
        {
            int c = v >> 6;
            if (c == 3)
            {
                // Read-back: bit 5 clear latches counts, bit 4 clear latches status, bits 3-1 select.
                for (int i = 0; i < 3; i++)
                {
                    if ((v & (2 << i)) == 0)
                        continue;
                    ref Channel r = ref _ch[i];
                    if ((v & 0x20) == 0 && !r.CountLatched)
                    {
                        r.Latch = Value(i, now);
                        r.CountLatched = true;
                    }
                    if ((v & 0x10) == 0 && !r.StatusLatched)
                    {
                        r.Status = (byte)((Out(i, now) ? 0x80 : 0) | (r.Loaded ? 0 : 0x40) | (r.Access << 4) | (r.Mode << 1) | r.Bcd);
                        r.StatusLatched = true;
                    }
                }
                return;
            }
            ref Channel ch = ref _ch[c];
            int access = (v >> 4) & 3;
            if (access == 0)
            {
                // Counter latch command (a second one before the read is ignored).
                if (!ch.CountLatched)
                {
                    ch.Latch = Value(c, now);
                    ch.CountLatched = true;
                }
                return;
            }
            int mode = (v >> 1) & 7;
            ch.Mode = (byte)(mode > 5 ? mode - 4 : mode);
            ch.Access = (byte)access;
            ch.Bcd = (byte)(v & 1);
            ch.Loaded = false;        // counting stops until a count is written
            ch.WriteHigh = false;
            ch.ReadHigh = false;
            ch.CountLatched = false;
            ch.StatusLatched = false;
            ch.FrozenTicks = 0;
            if (c == 0)
                _irqTicks = ulong.MaxValue;
        }

        private void Load(int c, uint count, ulong now)
        {
            ref Channel ch = ref _ch[c];
            ch.Count = count == 0 ? 65536u : count;
            ch.Loaded = true;
            ch.LoadNs = now;
            ch.FrozenTicks = 0;
            if (c == 0)
                _irqTicks = ch.Count;    // every mode's first interrupt point is one full count away
        }

        private void SetGate2(bool gate, ulong now)
        {
            ref Channel ch = ref _ch[2];
            if (gate == ch.Gate)
                return;
            if (ch.Mode == 0 || ch.Mode == 4)
            {
                // These modes pause while the gate is low.
                if (!gate)
                    ch.FrozenTicks = Ticks(2, now);
                ch.LoadNs = now;
            }
            else if (gate && ch.Loaded)
            {
                // A rising gate (re)starts modes 1, 2, 3 and 5 from the full count.
                ch.LoadNs = now;
            }
            ch.Gate = gate;
        }
    }
}
