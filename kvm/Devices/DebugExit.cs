namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The debug exit port (0xF4, QEMU's <c>isa-debug-exit</c> location): a write of any width ends
    /// the VM, and the value written is the VM's exit status as it is, unchanged. QEMU maps a write
    /// of v to the process status (v &lt;&lt; 1) | 1 so that it can never look like success; Tandem
    /// has no such constraint and keeps v, so a guest writing 0 exits with status 0. Reads return
    /// all ones. The VM loop checks <see cref="ExitRequested"/> after each port exit.
    /// </summary>
    public sealed class DebugExit : IPortDevice
    {
        /// <summary>The standard port.</summary>
        public const ushort Port = 0xF4;

        private bool _requested;
        private uint _status;

        /// <summary>True once the guest has written the port (until <see cref="Clear"/>).</summary>
        public bool ExitRequested => _requested;

        /// <summary>The value of the first write since the last <see cref="Clear"/>, masked to its width.</summary>
        public uint ExitStatus => _status;

        /// <summary>Forgets a request (for a VM that restarts).</summary>
        public void Clear()
        {
            _requested = false;
            _status = 0;
        }

        /// <inheritdoc/>
        public uint Read(ushort port, int size) => 0xFFFF_FFFFu;

        /// <inheritdoc/>
        public void Write(ushort port, int size, uint value)
        {
            // The first write wins: the VM loop stops the VM before the guest runs again, so a second
            // write can only come from a string instruction or a loop that has not looked yet.
            if (_requested)
                return;
            _status = value;
            _requested = true;
        }
    }
}
