namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// System control port A at 0x92 ("fast A20 and reset"): bit 0 going from 0 to 1 pulls the
    /// reset line, bit 1 is A20 (tracked, but guest memory never wraps at 1 MiB). The other bits
    /// are kept and read back as written.
    /// </summary>
    public sealed class SystemControlA : IPortDevice
    {
        /// <summary>The standard port.</summary>
        public const ushort Port = 0x92;
        /// <summary>The value after reset: A20 on.</summary>
        public const byte DefaultValue = 0x02;

        private readonly ResetLine _reset;
        private byte _value;

        /// <summary>A port that pulls <paramref name="reset"/>.</summary>
        public SystemControlA(ResetLine reset)
        {
            _reset = reset;
            _value = DefaultValue;
        }

        /// <summary>Bit 1.</summary>
        public bool A20 => (_value & 2) != 0;

        /// <summary>Back to the power-on state (the VM restarts).</summary>
        public void Reset() => _value = DefaultValue;

        /// <inheritdoc/>
        public uint Read(ushort port, int size) => _value;

        /// <inheritdoc/>
        public void Write(ushort port, int size, uint value)
        {
            byte b = (byte)value;
            bool pull = (b & 1) != 0 && (_value & 1) == 0;
            _value = b;
            if (pull)
                _reset.Pull();
        }
    }
}
