namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The ACPI fixed hardware the FADT points at (ACPI 6.5, 4.8), in one block of 12 ports laid
    /// out as on QEMU's ICH9: the PM1a event block at 0x600 (PM1_STS 0x600-0x601, PM1_EN
    /// 0x602-0x603), the PM1a control block at 0x604 (PM1_CNT, 2 bytes), 0x606-0x607 unused (all
    /// ones), and the 32-bit PM timer at 0x608-0x60B. Any width at any offset works: an access is
    /// taken byte by byte.
    /// <list type="bullet">
    /// <item>PM1_CNT.SCI_EN always reads 1: the platform is always in ACPI mode (the FADT's SMI_CMD
    /// is 0). SLP_TYP is kept; SLP_EN and GBL_RLS are write-only and read 0.</item>
    /// <item>A write with SLP_EN set and SLP_TYP = <see cref="S5SleepType"/> (the DSDT's \_S5)
    /// raises <see cref="PowerOffRequested"/>; with another SLP_TYP it raises
    /// <see cref="SleepRequested"/> with <see cref="SleepType"/>. The VM loop ends the VM with status
    /// 0 on a power-off; it refuses or completes a sleep with <see cref="CompleteSleep"/>, which sets
    /// WAK_STS so that the guest's wait for the wake ends.</item>
    /// <item>PM1_STS bits are write-1-to-clear. PWRBTN_STS is set by
    /// <see cref="PressPowerButton"/>, WAK_STS by <see cref="CompleteSleep"/>. The SCI (level, active
    /// high) is raised while a status bit and its PM1_EN bit are both set (timer, global lock,
    /// power button, sleep button, RTC).</item>
    /// <item>The PM timer counts at 3.579545 MHz from the VM clock (32 bits, the FADT's
    /// TMR_VAL_EXT). Not emulated: TMR_STS (the carry of bit 31) and so the timer's SCI.</item>
    /// </list>
    /// </summary>
    public sealed class AcpiPm : IPortDevice
    {
        /// <summary>First port of the block.</summary>
        public const ushort BasePort = 0x600;

        /// <summary>Ports in the block (register once: <c>Register(BasePort, PortCount, pm)</c>).</summary>
        public const int PortCount = 12;

        /// <summary>The PM1a event block (PM1_STS, PM1_EN).</summary>
        public const ushort EventBlockPort = BasePort;

        /// <summary>PM1_EVT_LEN.</summary>
        public const byte EventBlockLength = 4;

        /// <summary>The PM1a control block (PM1_CNT).</summary>
        public const ushort ControlBlockPort = BasePort + 4;

        /// <summary>PM1_CNT_LEN.</summary>
        public const byte ControlBlockLength = 2;

        /// <summary>The PM timer (PM_TMR).</summary>
        public const ushort TimerPort = BasePort + 8;

        /// <summary>PM_TMR_LEN.</summary>
        public const byte TimerLength = 4;

        /// <summary>The SLP_TYP of S5 (soft off) in this platform's DSDT: <c>Name (_S5, Package () { 5, 5, 0, 0 })</c>.</summary>
        public const int S5SleepType = 5;

        /// <summary>The PM timer's frequency in Hz.</summary>
        public const ulong TimerHz = 3_579_545;

        /// <summary>PM1_STS/PM1_EN bit 0: timer carry.</summary>
        public const ushort Timer = 1 << 0;
        /// <summary>PM1_STS bit 4: bus master status.</summary>
        public const ushort BusMaster = 1 << 4;
        /// <summary>PM1_STS/PM1_EN bit 5: global lock release.</summary>
        public const ushort Global = 1 << 5;
        /// <summary>PM1_STS/PM1_EN bit 8: power button.</summary>
        public const ushort PowerButton = 1 << 8;
        /// <summary>PM1_STS/PM1_EN bit 9: sleep button.</summary>
        public const ushort SleepButton = 1 << 9;
        /// <summary>PM1_STS/PM1_EN bit 10: RTC alarm.</summary>
        public const ushort Rtc = 1 << 10;
        /// <summary>PM1_STS bit 14: PCIe wake; PM1_EN bit 14: PCIEXP_WAKE_DIS.</summary>
        public const ushort PciExpWake = 1 << 14;
        /// <summary>PM1_STS bit 15: the machine woke (set when a sleep is completed).</summary>
        public const ushort Wake = 1 << 15;

        /// <summary>PM1_CNT bit 0: SCI_EN (reads 1).</summary>
        public const ushort SciEnable = 1 << 0;
        /// <summary>PM1_CNT bit 1: BM_RLD (kept).</summary>
        public const ushort BusMasterReload = 1 << 1;
        /// <summary>PM1_CNT bit 2: GBL_RLS (write-only, ignored).</summary>
        public const ushort GlobalRelease = 1 << 2;
        /// <summary>PM1_CNT bits 12:10: SLP_TYP.</summary>
        public const int SleepTypeShift = 10;
        /// <summary>PM1_CNT bit 13: SLP_EN (write-only).</summary>
        public const ushort SleepEnable = 1 << 13;

        // The enables that raise the SCI, and the PM1_EN bits a guest can set.
        private const ushort SciSources = Timer | Global | PowerButton | SleepButton | Rtc;
        private const ushort EnableWritable = SciSources | PciExpWake;
        // PM1_CNT bits kept as written: BM_RLD and SLP_TYP (bit 9 is "ignore", the rest reserved).
        private const ushort ControlKept = BusMasterReload | (7 << SleepTypeShift);

        private readonly IDeviceClock _clock;
        private readonly IIrqSink? _sci;
        private readonly int _sciIrq;
        private ushort _status;
        private ushort _enable;
        private ushort _control;
        private bool _sciLevel;
        private bool _powerOff;
        private bool _sleep;
        private int _sleepType;

        /// <summary>
        /// The block in its power-on state: the timer runs on <paramref name="clock"/>, the SCI is
        /// <paramref name="sciIrq"/> on <paramref name="sci"/> (null: no SCI is ever raised).
        /// </summary>
        public AcpiPm(IDeviceClock clock, IIrqSink? sci, int sciIrq)
        {
            _clock = clock;
            _sci = sci;
            _sciIrq = sciIrq;
        }

        /// <summary>True once the guest has written SLP_EN with SLP_TYP = S5 (until <see cref="Reset"/>).</summary>
        public bool PowerOffRequested => _powerOff;

        /// <summary>True once the guest has written SLP_EN with another SLP_TYP, until <see cref="CompleteSleep"/>.</summary>
        public bool SleepRequested => _sleep;

        /// <summary>The SLP_TYP of the pending <see cref="SleepRequested"/>.</summary>
        public int SleepType => _sleepType;

        /// <summary>PM1_STS as the guest reads it.</summary>
        public ushort Status => _status;

        /// <summary>PM1_EN as the guest reads it.</summary>
        public ushort Enable => _enable;

        /// <summary>PM1_CNT as the guest reads it (SCI_EN set).</summary>
        public ushort Control => (ushort)(_control | SciEnable);

        /// <summary>The SCI's level.</summary>
        public bool SciLevel => _sciLevel;

        /// <summary>The PM timer's value now (3.579545 MHz since the VM clock's 0, 32 bits).</summary>
        public uint TimerValue
        {
            get
            {
                ulong ns = _clock.NowNs;
                ulong ticks = ns / 1_000_000_000 * TimerHz + ns % 1_000_000_000 * TimerHz / 1_000_000_000;
                return (uint)ticks;
            }
        }

        /// <summary>The host presses the power button: PWRBTN_STS is set (the guest shuts down if it enabled the event).</summary>
        public void PressPowerButton()
        {
            _status |= PowerButton;
            UpdateSci();
        }

        /// <summary>The VM loop is done with a <see cref="SleepRequested"/> (it slept and woke, or refused): WAK_STS is set, and the guest resumes.</summary>
        public void CompleteSleep()
        {
            _sleep = false;
            _sleepType = 0;
            _status |= Wake;
            UpdateSci();
        }

        /// <summary>Back to the power-on state (a VM that restarts); lowers the SCI.</summary>
        public void Reset()
        {
            _status = 0;
            _enable = 0;
            _control = 0;
            _powerOff = false;
            _sleep = false;
            _sleepType = 0;
            UpdateSci();
        }

        /// <inheritdoc/>
        public uint Read(ushort port, int size)
        {
            int offset = port - BasePort;
            uint timer = offset + size > 8 ? TimerValue : 0;
            uint value = 0;
            for (int i = 0; i < size; i++)
                value |= (uint)ReadByte(offset + i, timer) << (8 * i);
            return value;
        }

        /// <inheritdoc/>
        public void Write(ushort port, int size, uint value)
        {
            int offset = port - BasePort;
            for (int i = 0; i < size; i++)
                WriteByte(offset + i, (byte)(value >> (8 * i)));
            UpdateSci();
        }

        private byte ReadByte(int offset, uint timer)
        {
            switch (offset)
            {
                case 0:
                case 1:
                    return (byte)(_status >> (8 * offset));
                case 2:
                case 3:
                    return (byte)(_enable >> (8 * (offset - 2)));
                case 4:
                case 5:
                    return (byte)(Control >> (8 * (offset - 4)));
                case 8:
                case 9:
                case 10:
                case 11:
                    return (byte)(timer >> (8 * (offset - 8)));
                default:
                    return 0xFF;
            }
        }

        private void WriteByte(int offset, byte b)
        {
            switch (offset)
            {
                case 0:
                case 1:
                    _status &= (ushort)~(b << (8 * offset));
                    break;
                case 2:
                case 3:
                    {
                        int shift = 8 * (offset - 2);
                        ushort mask = (ushort)(0xFF << shift);
                        _enable = (ushort)((_enable & ~mask) | ((b << shift) & mask & EnableWritable));
                        break;
                    }
                case 4:
                case 5:
                    {
                        int shift = 8 * (offset - 4);
                        ushort mask = (ushort)(0xFF << shift);
                        _control = (ushort)((_control & ~mask) | ((b << shift) & mask & ControlKept));
                        if (((b << shift) & SleepEnable) != 0)
                            Sleep((_control >> SleepTypeShift) & 7);
                        break;
                    }
                default:
                    break; // the unused ports and the read-only timer
            }
        }

        private void Sleep(int type)
        {
            if (type == S5SleepType)
            {
                _powerOff = true;
                return;
            }
            _sleep = true;
            _sleepType = type;
        }

        private void UpdateSci()
        {
            bool level = (_status & _enable & SciSources) != 0;
            if (level == _sciLevel)
                return;
            _sciLevel = level;
            _sci?.SetIrq(_sciIrq, level);
        }
    }
}
