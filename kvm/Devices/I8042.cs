namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The 8042 keyboard controller at 0x60 (data) and 0x64 (status and command), enough for the
    /// reset line and for the probes guests make of the controller itself: no keyboard or mouse
    /// is attached, so bytes written to the keyboard (0x60 without a pending controller command)
    /// are dropped and nothing answers them.
    /// <list type="bullet">
    /// <item>Status (read 0x64): bit 0 output buffer full, bit 1 input buffer full (always 0: the
    /// controller takes each byte at once), bit 2 system flag (command byte bit 2), bit 3 last
    /// write was a command, bit 4 keyboard not inhibited, bit 5 output buffer holds mouse data.</item>
    /// <item>Commands (write 0x64): 0x20-0x3F read controller RAM byte n (0x20: the command byte),
    /// 0x60-0x7F write it (the next byte on 0x60), 0xA7/0xA8 disable/enable the mouse port
    /// (command byte bit 5), 0xAA self-test (answers 0x55), 0xAB keyboard interface test (answers
    /// 0), 0xAD/0xAE disable/enable the keyboard (bit 4), 0xD0 read the output port, 0xD1 write it
    /// (the next byte; bit 0 clear pulls the reset line, bit 1 is A20), 0xD2 put the next byte in
    /// the output buffer as keyboard data, 0xF0-0xFF pulse the output port bits whose command bit
    /// is clear (0xFE: bit 0, the reset line). Other commands are ignored.</item>
    /// <item>IRQ 1 is held raised while the output buffer holds keyboard-side data and command
    /// byte bit 0 is set; IRQ 12 likewise for mouse data and bit 1 (nothing produces mouse data
    /// today).</item>
    /// </list>
    /// A20 is tracked (<see cref="A20"/>) but guest memory never wraps at 1 MiB.
    /// </summary>
    public sealed class I8042 : IPortDevice
    {
        /// <summary>The data port.</summary>
        public const ushort DataPort = 0x60;
        /// <summary>The status (read) and command (write) port.</summary>
        public const ushort CommandPort = 0x64;
        /// <summary>The keyboard's interrupt line.</summary>
        public const int KeyboardIrq = 1;
        /// <summary>The mouse's interrupt line.</summary>
        public const int MouseIrq = 12;

        /// <summary>Status: the output buffer holds a byte for the guest.</summary>
        public const byte StatusOutputFull = 0x01;
        /// <summary>Status: the system flag (POST passed), a copy of command byte bit 2.</summary>
        public const byte StatusSystemFlag = 0x04;
        /// <summary>Status: the last byte written went to the command port.</summary>
        public const byte StatusCommand = 0x08;
        /// <summary>Status: the keyboard is not inhibited by the key lock.</summary>
        public const byte StatusNotInhibited = 0x10;
        /// <summary>Status: the output buffer holds mouse data.</summary>
        public const byte StatusMouseData = 0x20;

        /// <summary>The command byte after reset: keyboard interrupt on, system flag, scan-code translation.</summary>
        public const byte DefaultCommandByte = 0x45;
        /// <summary>The output port after reset: reset line released (bit 0), A20 on (bit 1).</summary>
        public const byte DefaultOutputPort = 0x03;

        private readonly ResetLine _reset;
        private readonly IIrqSink? _irq;
        private readonly byte[] _ram = new byte[32];
        private byte _outputPort;
        private byte _output;
        private bool _outputFull;
        private bool _outputMouse;
        private bool _lastWasCommand;
        private byte _pending;
        private bool _irq1;
        private bool _irq12;

        /// <summary>A controller that pulls <paramref name="reset"/> and raises lines through <paramref name="irq"/> (null: no interrupts).</summary>
        public I8042(ResetLine reset, IIrqSink? irq)
        {
            _reset = reset;
            _irq = irq;
            Reset();
        }

        /// <summary>The command byte (controller RAM byte 0).</summary>
        public byte CommandByte => _ram[0];

        /// <summary>The output port (bit 0: reset line released, bit 1: A20).</summary>
        public byte OutputPort => _outputPort;

        /// <summary>Output port bit 1.</summary>
        public bool A20 => (_outputPort & 2) != 0;

        /// <summary>Back to the power-on state (the VM restarts).</summary>
        public void Reset()
        {
            for (int i = 0; i < _ram.Length; i++)
                _ram[i] = 0;
            _ram[0] = DefaultCommandByte;
            _outputPort = DefaultOutputPort;
            _output = 0;
            _outputFull = false;
            _outputMouse = false;
            _lastWasCommand = false;
            _pending = 0;
            UpdateIrq();
        }

        /// <inheritdoc/>
        public uint Read(ushort port, int size)
        {
            if (port == CommandPort)
                return Status();
            if (port == DataPort)
            {
                // An empty buffer reads as the last byte again, as the chip does.
                byte b = _output;
                _outputFull = false;
                _outputMouse = false;
                UpdateIrq();
                return b;
            }
            return 0xFFFF_FFFFu;
        }

        /// <inheritdoc/>
        public void Write(ushort port, int size, uint value)
        {
            byte b = (byte)value;
            if (port == CommandPort)
            {
                _lastWasCommand = true;
                Command(b);
            }
            else if (port == DataPort)
            {
                _lastWasCommand = false;
                Data(b);
            }
        }

        private byte Status()
        {
            int s = StatusNotInhibited;
            if (_outputFull)
                s |= StatusOutputFull;
            if (_outputFull && _outputMouse)
                s |= StatusMouseData;
            if ((_ram[0] & 0x04) != 0)
                s |= StatusSystemFlag;
            if (_lastWasCommand)
                s |= StatusCommand;
            return (byte)s;
        }

        private void Command(byte c)
        {
            _pending = 0;
            if (c >= 0x20 && c <= 0x3F)
            {
                Answer(_ram[c - 0x20]);
                return;
            }
            if ((c >= 0x60 && c <= 0x7F) || c == 0xD1 || c == 0xD2)
            {
                _pending = c;
                return;
            }
            if (c >= 0xF0)
            {
                // Pulse the output port bits whose command bit is clear; bit 0 is the reset line.
                if ((c & 1) == 0)
                    _reset.Pull();
                return;
            }
            switch (c)
            {
                case 0xA7:
                    _ram[0] |= 0x20;
                    break;
                case 0xA8:
                    _ram[0] &= 0xDF;
                    break;
                case 0xAA:
                    Answer(0x55);
                    break;
                case 0xAB:
                    Answer(0x00);
                    break;
                case 0xAD:
                    _ram[0] |= 0x10;
                    break;
                case 0xAE:
                    _ram[0] &= 0xEF;
                    break;
                case 0xD0:
                    Answer(_outputPort);
                    break;
            }
        }

        private void Data(byte b)
        {
            byte pending = _pending;
            _pending = 0;
            if (pending >= 0x60 && pending <= 0x7F)
            {
                _ram[pending - 0x60] = b;
                UpdateIrq();
            }
            else if (pending == 0xD1)
            {
                _outputPort = b;
                if ((b & 1) == 0)
                    _reset.Pull();
            }
            else if (pending == 0xD2)
            {
                Answer(b);
            }
            // Otherwise the byte is for the keyboard, and there is none.
        }

        private void Answer(byte b)
        {
            _output = b;
            _outputFull = true;
            _outputMouse = false;
            UpdateIrq();
        }

        private void UpdateIrq()
        {
            bool kbd = _outputFull && !_outputMouse && (_ram[0] & 0x01) != 0;
            bool mouse = _outputFull && _outputMouse && (_ram[0] & 0x02) != 0;
            if (_irq == null)
                return;
            if (kbd != _irq1)
            {
                _irq1 = kbd;
                _irq.SetIrq(KeyboardIrq, kbd);
            }
            if (mouse != _irq12)
            {
                _irq12 = mouse;
                _irq.SetIrq(MouseIrq, mouse);
            }
        }
    }
}
