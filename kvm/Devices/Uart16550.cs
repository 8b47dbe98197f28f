namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// A 16550A UART (National Semiconductor PC16550D datasheet) at eight ports from a base
    /// (COM1: 0x3F8, IRQ 4).
    /// <list type="bullet">
    /// <item>Transmit is instant: each byte written to THR goes straight to the
    /// <see cref="ISerialSink"/>, so THR and the transmitter always read empty (LSR THRE and TEMT
    /// set). Nothing is buffered on the way out, so a guest flooding output costs time, never memory.</item>
    /// <item>Receive: <see cref="Receive"/> (the host console) feeds a 256-byte host buffer, which
    /// drains into the 16-byte receive FIFO (1 byte, the RBR, while FIFOs are off) as the guest
    /// reads. A byte that finds both full is dropped, counted in <see cref="Dropped"/>, and sets
    /// LSR OE (overrun) so the guest sees the loss. FCR enables and clears the FIFO and sets the
    /// trigger level (1, 4, 8, 14); clearing empties the FIFO only, and the host buffer (the
    /// "wire") refills it at once.</item>
    /// <item>Interrupts, by priority as IIR reports them: line status (OE; IER bit 2), received
    /// data at or above the trigger level (IER bit 0), character timeout, THR empty (IER bit 1),
    /// modem status (IER bit 3). There is no timer, so data below the trigger level reports the
    /// character timeout at once instead of after four character times. The THR-empty
    /// interrupt is raised when IER bit 1 goes from 0 to 1 and after every transmitted byte, and
    /// cleared by reading IIR while it is the source or by writing THR (so each byte written
    /// gives the line a falling and a rising edge). Line status clears on reading LSR, modem
    /// status on reading MSR, received data as the FIFO empties below the trigger level.</item>
    /// <item>The IRQ line is held raised while any enabled condition is pending and MCR OUT2 is set
    /// (OUT2 gates the interrupt on PC serial ports, and is forced off in loopback).</item>
    /// <item>MCR loopback (bit 4): transmitted bytes go to the receive FIFO (OE if it is full),
    /// MSR reflects RTS/DTR/OUT1/OUT2 as CTS/DSR/RI/DCD, and host input waits in the host buffer.
    /// Outside loopback the modem lines read CTS, DSR and DCD asserted, RI not.</item>
    /// <item>LCR, DLL/DLM (when LCR DLAB is set), and SCR are stored and read back; baud rate,
    /// word length, parity, stop bits and break have no effect. Parity, framing and break errors
    /// never happen.</item>
    /// </list>
    /// Accesses wider than a byte act on successive registers, as the ISA bus splits them.
    /// </summary>
    public sealed class Uart16550 : IPortDevice
    {
        /// <summary>COM1's base port.</summary>
        public const ushort Com1Port = 0x3F8;
        /// <summary>COM1's interrupt line.</summary>
        public const int Com1Irq = 4;
        /// <summary>Ports the device claims from its base.</summary>
        public const int PortCount = 8;
        /// <summary>Bytes the receive FIFO holds.</summary>
        public const int FifoSize = 16;
        /// <summary>Bytes the host-side receive buffer holds.</summary>
        public const int HostBufferSize = 256;

        /// <summary>IER: received data available.</summary>
        public const byte IerRxData = 0x01;
        /// <summary>IER: THR empty.</summary>
        public const byte IerThrEmpty = 0x02;
        /// <summary>IER: receiver line status.</summary>
        public const byte IerLineStatus = 0x04;
        /// <summary>IER: modem status.</summary>
        public const byte IerModemStatus = 0x08;

        /// <summary>IIR: no interrupt pending (bit 0).</summary>
        public const byte IirNone = 0x01;
        /// <summary>IIR identification: receiver line status (highest priority).</summary>
        public const byte IirLineStatus = 0x06;
        /// <summary>IIR identification: received data at the trigger level.</summary>
        public const byte IirRxData = 0x04;
        /// <summary>IIR identification: character timeout (data below the trigger level).</summary>
        public const byte IirTimeout = 0x0C;
        /// <summary>IIR identification: THR empty.</summary>
        public const byte IirThrEmpty = 0x02;
        /// <summary>IIR identification: modem status (lowest priority).</summary>
        public const byte IirModemStatus = 0x00;
        /// <summary>IIR bits 7:6, set while the FIFOs are enabled.</summary>
        public const byte IirFifoEnabled = 0xC0;

        /// <summary>LSR: data ready.</summary>
        public const byte LsrDataReady = 0x01;
        /// <summary>LSR: overrun error.</summary>
        public const byte LsrOverrun = 0x02;
        /// <summary>LSR: THR empty.</summary>
        public const byte LsrThrEmpty = 0x20;
        /// <summary>LSR: transmitter empty.</summary>
        public const byte LsrTransmitterEmpty = 0x40;

        /// <summary>LCR: divisor latch access.</summary>
        public const byte LcrDlab = 0x80;

        /// <summary>MCR: DTR.</summary>
        public const byte McrDtr = 0x01;
        /// <summary>MCR: RTS.</summary>
        public const byte McrRts = 0x02;
        /// <summary>MCR: OUT1.</summary>
        public const byte McrOut1 = 0x04;
        /// <summary>MCR: OUT2 (gates the IRQ on a PC).</summary>
        public const byte McrOut2 = 0x08;
        /// <summary>MCR: loopback.</summary>
        public const byte McrLoopback = 0x10;

        /// <summary>MSR: the deltas (DCTS, DDSR, TERI, DDCD), cleared by reading MSR.</summary>
        public const byte MsrDeltas = 0x0F;
        /// <summary>MSR: CTS, DSR and DCD asserted (outside loopback).</summary>
        public const byte MsrIdle = 0xB0;

        private readonly ushort _base;
        private readonly int _irqLine;
        private readonly IIrqSink _irq;
        private ISerialSink _out;
        private readonly byte[] _rx = new byte[FifoSize];
        private readonly byte[] _host = new byte[HostBufferSize];
        private int _rxHead, _rxCount;
        private int _hostHead, _hostCount;
        private ulong _dropped;
        private byte _lastRx;
        private byte _ier, _fcr, _lcr, _mcr, _msr, _scr, _dll, _dlm;
        private bool _overrun;
        private bool _thrEmptyPending;
        private bool _line;

        /// <summary>A UART at <paramref name="basePort"/> raising <paramref name="irqLine"/> through <paramref name="irq"/> and sending to <paramref name="output"/>.</summary>
        public Uart16550(ushort basePort, int irqLine, IIrqSink irq, ISerialSink output)
        {
            _base = basePort;
            _irqLine = irqLine;
            _irq = irq;
            _out = output;
            Reset();
        }

        /// <summary>Sends the transmitter's bytes to <paramref name="output"/> from now on (another VM took the device over). Under the device lock.</summary>
        public void SetOutput(ISerialSink output) => _out = output;

        /// <summary>Bytes lost because the FIFO and the host buffer were both full.</summary>
        public ulong Dropped => _dropped;

        /// <summary>The IRQ line's level as last set.</summary>
        public bool IrqLevel => _line;

        /// <summary>The guest asked for received-data interrupts (IER bit 0 with MCR OUT2): typed input can wake it.</summary>
        public bool ReceiveInterruptEnabled => (_ier & IerRxData) != 0 && (_mcr & McrOut2) != 0;

        /// <summary>Bytes in the receive FIFO.</summary>
        public int RxFifoCount => _rxCount;

        /// <summary>Bytes waiting in the host buffer.</summary>
        public int HostBuffered => _hostCount;

        /// <summary>
        /// Bytes <see cref="Receive"/> can take now without dropping one: the room in the host
        /// buffer. The host's console input waits upstream until there is room (Events.PollConsole),
        /// so a paste longer than the buffer is not lost.
        /// </summary>
        public int ReceiveRoom => HostBufferSize - _hostCount;

        /// <summary>Back to the power-on state (the VM restarts); buffered input is discarded.</summary>
        public void Reset()
        {
            _rxHead = _rxCount = _hostHead = _hostCount = 0;
            _lastRx = 0;
            _ier = _fcr = _lcr = _mcr = _scr = 0;
            _dll = 12; // 9600 baud
            _dlm = 0;
            _msr = MsrIdle;
            _overrun = false;
            _thrEmptyPending = false;
            UpdateIrq();
        }

        /// <summary>
        /// A byte from the host console for the guest. False (and counted in <see cref="Dropped"/>,
        /// with LSR OE set) when the FIFO and the host buffer are full.
        /// </summary>
        public bool Receive(byte b)
        {
            if (_hostCount == HostBufferSize)
            {
                _dropped++;
                _overrun = true;
                UpdateIrq();
                return false;
            }
            _host[(_hostHead + _hostCount) % HostBufferSize] = b;
            _hostCount++;
            Refill();
            UpdateIrq();
            return true;
        }

        /// <inheritdoc/>
        public uint Read(ushort port, int size)
        {
            uint value = 0;
            for (int i = 0; i < size; i++)
            {
                int reg = port - _base + i;
                uint b = (uint)reg < PortCount ? ReadRegister(reg) : 0xFFu;
                value |= b << (8 * i);
            }
            return value;
        }

        /// <inheritdoc/>
        public void Write(ushort port, int size, uint value)
        {
            for (int i = 0; i < size; i++)
            {
                int reg = port - _base + i;
                if ((uint)reg < PortCount)
                    WriteRegister(reg, (byte)(value >> (8 * i)));
            }
        }

        private bool Dlab => (_lcr & LcrDlab) != 0;
        private bool Loopback => (_mcr & McrLoopback) != 0;
        private bool FifoEnabled => (_fcr & 1) != 0;
        private int RxDepth => FifoEnabled ? FifoSize : 1;

        private int TriggerLevel
        {
            get
            {
                switch (_fcr >> 6)
                {
                    case 0: return 1;
                    case 1: return 4;
                    case 2: return 8;
                    default: return 14;
                }
            }
        }

        private byte ReadRegister(int reg)
        {
            switch (reg)
            {
                case 0:
                    return Dlab ? _dll : PopRx();
                case 1:
                    return Dlab ? _dlm : _ier;
                case 2:
                    {
                        byte id = Identify();
                        if (id == IirThrEmpty)
                        {
                            _thrEmptyPending = false;
                            UpdateIrq();
                        }
                        return (byte)(id | (FifoEnabled ? IirFifoEnabled : 0));
                    }
                case 3:
                    return _lcr;
                case 4:
                    return _mcr;
                case 5:
                    {
                        byte lsr = (byte)(LsrThrEmpty | LsrTransmitterEmpty);
                        if (_rxCount > 0)
                            lsr |= LsrDataReady;
                        if (_overrun)
                            lsr |= LsrOverrun;
                        _overrun = false;
                        UpdateIrq();
                        return lsr;
                    }
                case 6:
                    {
                        byte msr = _msr;
                        _msr &= unchecked((byte)~MsrDeltas);
                        UpdateIrq();
                        return msr;
                    }
                default:
                    return _scr;
            }
        }

        private void WriteRegister(int reg, byte v)
        {
            switch (reg)
            {
                case 0:
                    if (Dlab)
                        _dll = v;
                    else
                        Transmit(v);
                    break;
                case 1:
                    if (Dlab)
                        _dlm = v;
                    else
                        SetIer((byte)(v & 0x0F));
                    break;
                case 2:
                    SetFcr(v);
                    break;
                case 3:
                    _lcr = v;
                    break;
                case 4:
                    SetMcr((byte)(v & 0x1F));
                    break;
                case 7:
                    _scr = v;
                    break;
                    // 5 (LSR) and 6 (MSR): writes are factory test features; ignored.
            }
        }

        private byte PopRx()
        {
            if (_rxCount == 0)
                return _lastRx;
            byte b = _rx[_rxHead];
            _rxHead = (_rxHead + 1) % FifoSize;
            _rxCount--;
            _lastRx = b;
            Refill();
            UpdateIrq();
            return b;
        }

        private void PushRx(byte b)
        {
            _rx[(_rxHead + _rxCount) % FifoSize] = b;
            _rxCount++;
        }

        // Host input moves into the FIFO as room appears; in loopback the serial input is cut off.
        private void Refill()
        {
            while (!Loopback && _hostCount > 0 && _rxCount < RxDepth)
            {
                PushRx(_host[_hostHead]);
                _hostHead = (_hostHead + 1) % HostBufferSize;
                _hostCount--;
            }
        }

        private void ClearRx()
        {
            _rxHead = 0;
            _rxCount = 0;
        }

        private void Transmit(byte v)
        {
            // Writing THR clears the THR-empty interrupt; the byte leaves at once and THR is empty
            // again, which raises it anew: the line falls and rises for each byte.
            _thrEmptyPending = false;
            UpdateIrq();
            if (Loopback)
            {
                if (_rxCount < RxDepth)
                    PushRx(v);
                else
                    _overrun = true;
            }
            else
            {
                _out.Put(v);
            }
            _thrEmptyPending = true;
            UpdateIrq();
        }

        private void SetIer(byte v)
        {
            bool wasEnabled = (_ier & IerThrEmpty) != 0;
            _ier = v;
            // Enabling the THR-empty interrupt while THR is empty (always, here) raises it.
            if (!wasEnabled && (v & IerThrEmpty) != 0)
                _thrEmptyPending = true;
            UpdateIrq();
        }

        private void SetFcr(byte v)
        {
            bool enable = (v & 1) != 0;
            // Turning the FIFOs on or off clears them; so does bit 1 (receive FIFO reset).
            if (enable != FifoEnabled || (enable && (v & 2) != 0))
                ClearRx();
            // Bits 7:6 (trigger), 3 (DMA mode) and 0 stick; bits 1 and 2 clear themselves.
            _fcr = enable ? (byte)(v & 0xC9) : (byte)0;
            Refill();
            UpdateIrq();
        }

        private void SetMcr(byte v)
        {
            _mcr = v;
            byte status = MsrIdle;
            if (Loopback)
                status = (byte)(((v & McrRts) << 3) | ((v & McrDtr) << 5) | ((v & McrOut1) << 4) | ((v & McrOut2) << 4));
            byte old = (byte)(_msr & 0xF0);
            byte changed = (byte)(old ^ status);
            byte deltas = (byte)(_msr & MsrDeltas);
            if ((changed & 0x10) != 0)
                deltas |= 0x01; // DCTS
            if ((changed & 0x20) != 0)
                deltas |= 0x02; // DDSR
            if ((old & 0x40) != 0 && (status & 0x40) == 0)
                deltas |= 0x04; // TERI: RI's trailing edge
            if ((changed & 0x80) != 0)
                deltas |= 0x08; // DDCD
            _msr = (byte)(status | deltas);
            Refill();
            UpdateIrq();
        }

        // The pending source of highest priority (PC16550D table IV), or IirNone.
        private byte Identify()
        {
            if ((_ier & IerLineStatus) != 0 && _overrun)
                return IirLineStatus;
            if ((_ier & IerRxData) != 0 && _rxCount > 0)
                return FifoEnabled && _rxCount < TriggerLevel ? IirTimeout : IirRxData;
            if ((_ier & IerThrEmpty) != 0 && _thrEmptyPending)
                return IirThrEmpty;
            if ((_ier & IerModemStatus) != 0 && (_msr & MsrDeltas) != 0)
                return IirModemStatus;
            return IirNone;
        }

        private void UpdateIrq()
        {
            bool level = Identify() != IirNone && (_mcr & McrOut2) != 0 && !Loopback;
            if (level == _line)
                return;
            _line = level;
            _irq.SetIrq(_irqLine, level);
        }
    }
}
