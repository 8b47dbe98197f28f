namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The platform's CPU reset line, pulled by the i8042 (command 0xFE, output port bit 0) and by
    /// port 0x92 (bit 0). The VM loop checks <see cref="Requested"/> after each port exit and
    /// stops or restarts the VM as its option says, then calls <see cref="Acknowledge"/>.
    /// </summary>
    public sealed class ResetLine
    {
        private bool _requested;
        private uint _count;

        /// <summary>True from a pull until <see cref="Acknowledge"/>.</summary>
        public bool Requested => _requested;

        /// <summary>Pulls since the VM was made (never reset).</summary>
        public uint Count => _count;

        /// <summary>Pulls the line (a device asks for a reset).</summary>
        public void Pull()
        {
            _requested = true;
            _count++;
        }

        /// <summary>The VM loop has acted on the request.</summary>
        public void Acknowledge() => _requested = false;
    }
}
