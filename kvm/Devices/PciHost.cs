namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// PCI configuration mechanism 1 (PCI Local Bus Specification 3.0, section 3.2.2.3.2): the
    /// address register at 0xCF8 and the data window at 0xCFC-0xCFF, with one function behind it,
    /// the host bridge at 00:00.0 (Intel 440FX, 8086:1237, class 06/00/00, header type 0).
    /// <list type="bullet">
    /// <item>Only 32-bit accesses to 0xCF8 reach the address register (bit 31 enable, bits 23:16
    /// bus, 15:11 device, 10:8 function, 7:2 register; reserved bits 30:24 and 1:0 read 0). Other
    /// widths at 0xCF8-0xCFB are ordinary ports: reads all ones, writes ignored (but for 0xCF9,
    /// below).</item>
    /// <item>Data accesses of 1, 2 or 4 bytes at 0xCFC + n reach configuration offset
    /// register + n. With the enable bit clear, or for any function but 00:00.0, reads are all
    /// ones and writes are dropped.</item>
    /// <item>The bridge's space is read-only except the command register's I/O, memory and bus
    /// master bits, the latency timer and the interrupt line.</item>
    /// <item>0xCF9, the PIIX reset control register, takes byte accesses: bits 1 (system reset)
    /// and 2 (reset CPU) are kept, and bit 2 going from 0 to 1 pulls the reset line.</item>
    /// </list>
    /// Not emulated: the 440FX's own registers (PAM, SMRAM), mechanism 2, extended (PCIe)
    /// configuration space, BARs and every other device.
    /// </summary>
    public sealed class PciHost : IPortDevice
    {
        /// <summary>The address register.</summary>
        public const ushort AddressPort = 0xCF8;
        /// <summary>The first port of the data window.</summary>
        public const ushort DataPort = 0xCFC;
        /// <summary>Ports the device claims: 0xCF8-0xCFF.</summary>
        public const int PortCount = 8;
        /// <summary>The reset control register (byte accesses).</summary>
        public const ushort ResetControlPort = 0xCF9;

        /// <summary>Intel.</summary>
        public const ushort VendorId = 0x8086;
        /// <summary>82441FX PMC (the 440FX host bridge).</summary>
        public const ushort DeviceId = 0x1237;

        private const uint AddressMask = 0x80FF_FFFC;
        private const uint Enable = 0x8000_0000;

        private readonly byte[] _config = new byte[256];
        private readonly byte[] _writable = new byte[256];
        private readonly ResetLine? _reset;
        private uint _address;
        private byte _resetControl;

        /// <summary>A host bridge in its power-on state; 0xCF9 pulls <paramref name="reset"/> (null: 0xCF9 is an empty port).</summary>
        public PciHost(ResetLine? reset)
        {
            _reset = reset;
            Put16(0x00, VendorId);
            Put16(0x02, DeviceId);
            Put16(0x06, 0x0280); // status: fast back-to-back capable, medium DEVSEL timing
            _config[0x08] = 0x02; // revision
            _config[0x09] = 0x00; // programming interface
            _config[0x0A] = 0x00; // subclass: host bridge
            _config[0x0B] = 0x06; // class: bridge
            _config[0x0E] = 0x00; // header type 0, single function
            _writable[0x04] = 0x07; // command: I/O space, memory space, bus master
            _writable[0x0D] = 0xFF; // latency timer
            _writable[0x3C] = 0xFF; // interrupt line (scratch for software)
        }

        /// <summary>Back to the power-on state (the VM restarts): latch, writable bits and reset control cleared.</summary>
        public void Reset()
        {
            _address = 0;
            _resetControl = 0;
            for (int i = 0; i < _config.Length; i++)
                _config[i] &= (byte)~_writable[i];
        }

        /// <summary>The address register as last latched.</summary>
        public uint Address => _address;

        /// <inheritdoc/>
        public uint Read(ushort port, int size)
        {
            if (port == AddressPort && size == 4)
                return _address;
            if (port == ResetControlPort && size == 1 && _reset != null)
                return _resetControl;
            if (port < DataPort)
                return 0xFFFF_FFFFu;
            if (!Selected())
                return 0xFFFF_FFFFu;
            int offset = (int)(_address & 0xFC) + (port & 3);
            uint value = 0;
            for (int i = size - 1; i >= 0; i--)
                value = (value << 8) | _config[(offset + i) & 0xFF];
            return value;
        }

        /// <inheritdoc/>
        public void Write(ushort port, int size, uint value)
        {
            if (port == AddressPort && size == 4)
            {
                _address = value & AddressMask;
                return;
            }
            if (port == ResetControlPort && size == 1 && _reset != null)
            {
                bool pull = (value & 4) != 0 && (_resetControl & 4) == 0;
                _resetControl = (byte)(value & 0x06);
                if (pull)
                    _reset.Pull();
                return;
            }
            if (port < DataPort || !Selected())
                return;
            int offset = (int)(_address & 0xFC) + (port & 3);
            for (int i = 0; i < size; i++)
            {
                int o = (offset + i) & 0xFF;
                byte mask = _writable[o];
                _config[o] = (byte)((_config[o] & ~mask) | ((int)(value >> (8 * i)) & mask));
            }
        }

        // Enabled, and bus 0, device 0, function 0 (bits 23:8 all clear).
        private bool Selected() => (_address & Enable) != 0 && (_address & 0x00FF_FF00) == 0;

        private void Put16(int offset, ushort value)
        {
            _config[offset] = (byte)value;
            _config[offset + 1] = (byte)(value >> 8);
        }
    }
}
