namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The CMOS RAM and real-time clock (Motorola MC146818A) at 0x70 (index) and 0x71 (data),
    /// IRQ 8.
    /// <list type="bullet">
    /// <item>0x70: bits 6:0 select one of 128 bytes; bit 7 is the NMI mask, kept apart
    /// (<see cref="NmiMasked"/>) and never part of the index. Reading 0x70 returns the last byte
    /// written.</item>
    /// <item>Time (0 seconds, 2 minutes, 4 hours, 6 weekday 1-7 from Sunday, 7 day, 8 month,
    /// 9 year, 0x32 century) comes from the clock: <see cref="IDeviceClock.WallSecondsAtZero"/>
    /// plus elapsed whole seconds plus the guest's offset. It is BCD unless status B bit 2
    /// (binary), 24-hour if status B bit 1, else 12-hour with bit 7 of the hour meaning PM.</item>
    /// <item>Status A: bit 7 UIP is set during the last 244 µs of each second (not while SET);
    /// bits 6:0 (divider and periodic rate) are stored, the rate drives the periodic flag, the
    /// divider is not emulated. Status B: stored; SET (bit 7) freezes the time registers so the
    /// guest can write them, and clearing SET turns what was written into an offset from the
    /// host clock (a time register written without SET takes effect as an offset at once).
    /// Setting SET clears UIE. The weekday the guest writes is kept only while frozen; otherwise
    /// it follows the date. Status C: PF (bit 6), AF (bit 5) and UF (bit 4) set by the clock, IRQF
    /// (bit 7) while any of them is enabled in status B; reading C clears it. Status D: 0x80
    /// (RAM valid).</item>
    /// <item>IRQ 8 is held raised while IRQF is set, so the guest must read status C to get the
    /// next one (as on the chip). Flags are brought up to date on every port access and by
    /// <see cref="Poll"/>, which the VM loop calls when <see cref="NextEventNs"/> has passed.</item>
    /// <item>Memory size bytes from the RAM description: 0x15/0x16 base memory (640 KiB),
    /// 0x17/0x18 and 0x30/0x31 KiB above 1 MiB (at most 0xFFFF), 0x34/0x35 64 KiB units above
    /// 16 MiB below 4 GiB (at most 0xFFFF), 0x5B-0x5D 64 KiB units above 4 GiB, and the standard
    /// checksum of 0x10-0x2D at 0x2E/0x2F. The rest of RAM is plain storage, initially zero.</item>
    /// </list>
    /// Not emulated: daylight saving (status B bit 0), the square-wave output, the divider's
    /// reset and stop settings, time running while SET is held (it restarts from what was written).
    /// </summary>
    public sealed class Cmos : IPortDevice
    {
        /// <summary>The index port.</summary>
        public const ushort IndexPort = 0x70;
        /// <summary>The data port.</summary>
        public const ushort DataPort = 0x71;
        /// <summary>The RTC's interrupt line.</summary>
        public const int Irq = 8;

        /// <summary>Register: seconds.</summary>
        public const int RegSeconds = 0x00;
        /// <summary>Register: seconds alarm.</summary>
        public const int RegSecondsAlarm = 0x01;
        /// <summary>Register: minutes.</summary>
        public const int RegMinutes = 0x02;
        /// <summary>Register: minutes alarm.</summary>
        public const int RegMinutesAlarm = 0x03;
        /// <summary>Register: hours.</summary>
        public const int RegHours = 0x04;
        /// <summary>Register: hours alarm.</summary>
        public const int RegHoursAlarm = 0x05;
        /// <summary>Register: day of the week (1 = Sunday).</summary>
        public const int RegWeekday = 0x06;
        /// <summary>Register: day of the month.</summary>
        public const int RegDay = 0x07;
        /// <summary>Register: month.</summary>
        public const int RegMonth = 0x08;
        /// <summary>Register: year within the century.</summary>
        public const int RegYear = 0x09;
        /// <summary>Status register A.</summary>
        public const int RegA = 0x0A;
        /// <summary>Status register B.</summary>
        public const int RegB = 0x0B;
        /// <summary>Status register C.</summary>
        public const int RegC = 0x0C;
        /// <summary>Status register D.</summary>
        public const int RegD = 0x0D;
        /// <summary>Register: century (the IBM PC convention).</summary>
        public const int RegCentury = 0x32;

        /// <summary>Status A: update in progress.</summary>
        public const byte AUip = 0x80;
        /// <summary>Status A after reset: 32.768 kHz time base, 1024 Hz periodic rate.</summary>
        public const byte ADefault = 0x26;
        /// <summary>Status B: SET (updates frozen).</summary>
        public const byte BSet = 0x80;
        /// <summary>Status B: periodic interrupt enable.</summary>
        public const byte BPie = 0x40;
        /// <summary>Status B: alarm interrupt enable.</summary>
        public const byte BAie = 0x20;
        /// <summary>Status B: update-ended interrupt enable.</summary>
        public const byte BUie = 0x10;
        /// <summary>Status B: binary (not BCD) time.</summary>
        public const byte BBinary = 0x04;
        /// <summary>Status B: 24-hour time.</summary>
        public const byte B24Hour = 0x02;
        /// <summary>Status B after reset: BCD, 24-hour, no interrupts.</summary>
        public const byte BDefault = B24Hour;
        /// <summary>Status C: some enabled flag is set.</summary>
        public const byte CIrqf = 0x80;
        /// <summary>Status C: periodic flag.</summary>
        public const byte CPf = 0x40;
        /// <summary>Status C: alarm flag.</summary>
        public const byte CAf = 0x20;
        /// <summary>Status C: update-ended flag.</summary>
        public const byte CUf = 0x10;
        /// <summary>Status D: the RAM and time are valid.</summary>
        public const byte DValid = 0x80;

        /// <summary>UIP is set this long before each second ends.</summary>
        public const ulong UipWindowNs = 244_000;

        private const ulong NsPerSecond = 1_000_000_000;
        private const ulong RtcHz = 32_768;

        private readonly IDeviceClock _clock;
        private readonly IIrqSink _irq;
        private readonly byte[] _ram = new byte[128];
        private byte _indexLatch;
        private long _offset;
        private ulong _lastPollNs;
        private bool _line;

        /// <summary>
        /// A CMOS for a VM whose RAM is <paramref name="ramBelow4G"/> bytes below 4 GiB (from
        /// address 0, holes included) and <paramref name="ramAbove4G"/> bytes from 4 GiB on.
        /// </summary>
        public Cmos(IDeviceClock clock, IIrqSink irq, ulong ramBelow4G, ulong ramAbove4G)
        {
            _clock = clock;
            _irq = irq;
            _ram[RegA] = ADefault;
            _ram[RegB] = BDefault;
            _ram[RegD] = DValid;
            Put16(0x15, 640);
            ulong extendedKiB = ramBelow4G > 0x10_0000 ? (ramBelow4G - 0x10_0000) / 1024 : 0;
            ushort ext = (ushort)(extendedKiB > 0xFFFF ? 0xFFFF : extendedKiB);
            Put16(0x17, ext);
            Put16(0x30, ext);
            ulong above16M = ramBelow4G > 0x100_0000 ? (ramBelow4G - 0x100_0000) / 0x1_0000 : 0;
            Put16(0x34, (ushort)(above16M > 0xFFFF ? 0xFFFF : above16M));
            ulong above4G = ramAbove4G / 0x1_0000;
            if (above4G > 0xFF_FFFF)
                above4G = 0xFF_FFFF;
            _ram[0x5B] = (byte)above4G;
            _ram[0x5C] = (byte)(above4G >> 8);
            _ram[0x5D] = (byte)(above4G >> 16);
            int sum = 0;
            for (int i = 0x10; i <= 0x2D; i++)
                sum += _ram[i];
            _ram[0x2E] = (byte)(sum >> 8);
            _ram[0x2F] = (byte)sum;
            _lastPollNs = clock.NowNs;
        }

        /// <summary>Bit 7 of the last index written: NMIs masked.</summary>
        public bool NmiMasked => (_indexLatch & 0x80) != 0;

        /// <summary>The selected register (bits 6:0 of the last index written).</summary>
        public int Index => _indexLatch & 0x7F;

        /// <summary>Seconds the guest has moved its clock from the host's.</summary>
        public long OffsetSeconds => _offset;

        /// <summary>The guest's time now, in seconds since 1970 (the frozen registers are not consulted).</summary>
        public long GuestSeconds => (long)_clock.WallSecondsAtZero + (long)(_clock.NowNs / NsPerSecond) + _offset;

        /// <summary>The IRQ line's level as last set.</summary>
        public bool IrqLevel => _line;

        /// <summary>Brings status C and the IRQ line up to the clock's present.</summary>
        public void Poll()
        {
            ulong now = _clock.NowNs;
            ulong last = _lastPollNs;
            if (now <= last)
                return;
            _lastPollNs = now;
            byte flags = 0;
            int rate = _ram[RegA] & 0x0F;
            if (rate != 0 && Ticks(now) / PeriodTicks(rate) != Ticks(last) / PeriodTicks(rate))
                flags |= CPf;
            if ((_ram[RegB] & BSet) == 0)
            {
                ulong s0 = last / NsPerSecond, s1 = now / NsPerSecond;
                if (s1 > s0)
                {
                    flags |= CUf;
                    if (AlarmMatchedBetween(s0, s1))
                        flags |= CAf;
                }
            }
            _ram[RegC] |= flags;
            UpdateIrq();
        }

        /// <summary>
        /// The clock time (<see cref="IDeviceClock.NowNs"/>) by which <see cref="Poll"/> must run
        /// for IRQ 8 to be on time with the present enables: the next periodic tick if PIE, the
        /// next second if UIE or AIE (the alarm may not match then; polling early is harmless), or
        /// <see cref="ulong.MaxValue"/> if nothing is enabled. The VM loop arms its timer for it.
        /// </summary>
        public ulong NextEventNs
        {
            get
            {
                ulong now = _clock.NowNs;
                ulong next = ulong.MaxValue;
                byte b = _ram[RegB];
                int rate = _ram[RegA] & 0x0F;
                if ((b & BPie) != 0 && rate != 0)
                {
                    ulong period = PeriodTicks(rate);
                    ulong tick = (Ticks(now) / period + 1) * period;
                    // The first nanosecond at or after which Ticks() reaches tick.
                    ulong ns = tick / RtcHz * NsPerSecond + ((tick % RtcHz) * NsPerSecond + RtcHz - 1) / RtcHz;
                    next = ns;
                }
                if ((b & (BUie | BAie)) != 0 && (b & BSet) == 0)
                {
                    ulong boundary = (now / NsPerSecond + 1) * NsPerSecond;
                    if (boundary < next)
                        next = boundary;
                }
                return next;
            }
        }

        /// <inheritdoc/>
        public uint Read(ushort port, int size)
        {
            if (port == IndexPort)
                return _indexLatch;
            if (port != DataPort)
                return 0xFFFF_FFFFu;
            Poll();
            int index = Index;
            if (IsTimeRegister(index) && (_ram[RegB] & BSet) == 0)
                return TimeRegister(index, GuestSeconds);
            switch (index)
            {
                case RegA:
                    return (uint)((_ram[RegA] & 0x7F) | (InUipWindow() ? AUip : 0));
                case RegC:
                    {
                        byte c = (byte)(_ram[RegC] | (Irqf() ? CIrqf : 0));
                        _ram[RegC] = 0;
                        UpdateIrq();
                        return c;
                    }
                case RegD:
                    return DValid;
                default:
                    return _ram[index];
            }
        }

        /// <inheritdoc/>
        public void Write(ushort port, int size, uint value)
        {
            byte v = (byte)value;
            if (port == IndexPort)
            {
                _indexLatch = v;
                return;
            }
            if (port != DataPort)
                return;
            Poll();
            int index = Index;
            if (IsTimeRegister(index))
            {
                if ((_ram[RegB] & BSet) != 0)
                {
                    _ram[index] = v;
                }
                else
                {
                    Freeze();
                    _ram[index] = v;
                    Thaw();
                }
                return;
            }
            switch (index)
            {
                case RegA:
                    _ram[RegA] = (byte)(v & 0x7F);
                    break;
                case RegB:
                    {
                        byte old = _ram[RegB];
                        if ((v & BSet) != 0)
                            v &= unchecked((byte)~BUie);
                        _ram[RegB] = v;
                        if ((old & BSet) == 0 && (v & BSet) != 0)
                            Freeze();
                        else if ((old & BSet) != 0 && (v & BSet) == 0)
                            Thaw();
                        UpdateIrq();
                        break;
                    }
                case RegC:
                case RegD:
                    break;
                default:
                    _ram[index] = v;
                    break;
            }
        }

        private static bool IsTimeRegister(int index) =>
            index == RegSeconds || index == RegMinutes || index == RegHours || index == RegWeekday
            || index == RegDay || index == RegMonth || index == RegYear || index == RegCentury;

        // The time registers, as the clock shows them now, copied into RAM (SET rising).
        private void Freeze()
        {
            long t = GuestSeconds;
            _ram[RegSeconds] = TimeRegister(RegSeconds, t);
            _ram[RegMinutes] = TimeRegister(RegMinutes, t);
            _ram[RegHours] = TimeRegister(RegHours, t);
            _ram[RegWeekday] = TimeRegister(RegWeekday, t);
            _ram[RegDay] = TimeRegister(RegDay, t);
            _ram[RegMonth] = TimeRegister(RegMonth, t);
            _ram[RegYear] = TimeRegister(RegYear, t);
            _ram[RegCentury] = TimeRegister(RegCentury, t);
        }

        // The time registers in RAM become the clock's time (SET falling): out-of-range fields are
        // clamped, the weekday is ignored, and the second starts over at the present second's phase.
        private void Thaw()
        {
            int second = Clamp(Decode(_ram[RegSeconds]), 0, 59);
            int minute = Clamp(Decode(_ram[RegMinutes]), 0, 59);
            int hour = Clamp(DecodeHour(_ram[RegHours]), 0, 23);
            int day = Clamp(Decode(_ram[RegDay]), 1, 31);
            int month = Clamp(Decode(_ram[RegMonth]), 1, 12);
            long year = Decode(_ram[RegCentury]) * 100L + Decode(_ram[RegYear]);
            long t = CivilTime.ToDays(year, month, day) * CivilTime.SecondsPerDay + hour * 3600L + minute * 60L + second;
            _offset = t - ((long)_clock.WallSecondsAtZero + (long)(_clock.NowNs / NsPerSecond));
        }

        /// <summary>Register <paramref name="index"/> for time <paramref name="t"/> (seconds since 1970) in the guest's format.</summary>
        private byte TimeRegister(int index, long t)
        {
            long days = CivilTime.FloorDiv(t, CivilTime.SecondsPerDay);
            int secondOfDay = (int)(t - days * CivilTime.SecondsPerDay);
            switch (index)
            {
                case RegSeconds:
                    return Encode(secondOfDay % 60);
                case RegMinutes:
                    return Encode(secondOfDay / 60 % 60);
                case RegHours:
                    return EncodeHour(secondOfDay / 3600);
                case RegWeekday:
                    return Encode(CivilTime.Weekday(days) + 1);
            }
            CivilTime.FromDays(days, out long year, out int month, out int day);
            switch (index)
            {
                case RegDay:
                    return Encode(day);
                case RegMonth:
                    return Encode(month);
                case RegYear:
                    return Encode((int)(year % 100));
                default:
                    return Encode((int)(year / 100 % 100));
            }
        }

        private bool Binary => (_ram[RegB] & BBinary) != 0;

        private byte Encode(int value) => Binary ? (byte)value : (byte)(((value / 10) << 4) | (value % 10));

        private int Decode(byte value) => Binary ? value : (value >> 4) * 10 + (value & 0x0F);

        private byte EncodeHour(int hour)
        {
            if ((_ram[RegB] & B24Hour) != 0)
                return Encode(hour);
            int h12 = hour % 12 == 0 ? 12 : hour % 12;
            return (byte)(Encode(h12) | (hour >= 12 ? 0x80 : 0));
        }

        private int DecodeHour(byte value)
        {
            if ((_ram[RegB] & B24Hour) != 0)
                return Decode(value);
            int h = Decode((byte)(value & 0x7F)) % 12;
            return (value & 0x80) != 0 ? h + 12 : h;
        }

        private static int Clamp(int v, int min, int max) => v < min ? min : v > max ? max : v;

        private bool InUipWindow() =>
            (_ram[RegB] & BSet) == 0 && _clock.NowNs % NsPerSecond >= NsPerSecond - UipWindowNs;

        // True if the alarm matched at any second boundary in (s0, s1] (clock seconds). The
        // alarm only looks at the time of day, so a day's worth of boundaries covers every case.
        private bool AlarmMatchedBetween(ulong s0, ulong s1)
        {
            ulong first = s1 - s0 > (ulong)CivilTime.SecondsPerDay ? s1 - (ulong)CivilTime.SecondsPerDay + 1 : s0 + 1;
            long baseSeconds = (long)_clock.WallSecondsAtZero + _offset;
            for (ulong s = first; s <= s1; s++)
            {
                long t = baseSeconds + (long)s;
                if (AlarmField(_ram[RegSecondsAlarm], TimeRegister(RegSeconds, t))
                    && AlarmField(_ram[RegMinutesAlarm], TimeRegister(RegMinutes, t))
                    && AlarmField(_ram[RegHoursAlarm], TimeRegister(RegHours, t)))
                    return true;
            }
            return false;
        }

        // An alarm byte of 0xC0-0xFF is "don't care".
        private static bool AlarmField(byte alarm, byte now) => alarm >= 0xC0 || alarm == now;

        // 32.768 kHz ticks since the clock's origin, without overflowing for centuries.
        private static ulong Ticks(ulong ns) => ns / NsPerSecond * RtcHz + ns % NsPerSecond * RtcHz / NsPerSecond;

        // The periodic rate's period in 32.768 kHz ticks (rates 1 and 2 repeat rates 8 and 9).
        private static ulong PeriodTicks(int rate) => rate <= 2 ? 1UL << (rate + 6) : 1UL << (rate - 1);

        private bool Irqf() => (_ram[RegC] & _ram[RegB] & (CPf | CAf | CUf)) != 0;

        private void UpdateIrq()
        {
            bool level = Irqf();
            if (level == _line)
                return;
            _line = level;
            _irq.SetIrq(Irq, level);
        }

        private void Put16(int index, ushort value)
        {
            _ram[index] = (byte)value;
            _ram[index + 1] = (byte)(value >> 8);
        }
    }
}
