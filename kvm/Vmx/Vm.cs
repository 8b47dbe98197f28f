namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// A virtual machine: its guest memory (EPT-mapped), its vCPU, the relay of its serial port to
    /// the host console, and how it ended.
    /// </summary>
    public sealed unsafe class Vm : Devices.ISerialSink
    {
        public readonly int Id;
        public readonly IGuestMemory Memory;

        /// <summary>The VM's PC devices (port bus, PIC, PIT) and their interrupt wiring.</summary>
        public readonly Devices.PcPlatform Platform;
        public Vcpu? Vcpu;

        /// <summary>-1 while running; the status the guest wrote to the exit port, or 255 when the host stopped it.</summary>
        public int ExitStatus = -1;
        public string? StopReason;
        public bool Stopped => ExitStatus >= 0;

        /// <summary>Called when the guest writes to the phase port (tests synchronise with guests through it).</summary>
        public delegate*<Vm, ulong, void> PhaseHandler;

        /// <summary>Set by a phase handler to pause the run loop after the current exit.</summary>
        public bool PauseRequested;

        /// <summary>The guest's time budget, in preemption-timer quanta of time (running or halted), before the host stops it as runaway.</summary>
        public ulong MaxQuanta = 20_000;
        public ulong LastPhase;

        private readonly byte[] _line = new byte[160];
        private int _lineLength;

        public Vm(int id, IGuestMemory memory)
        {
            Id = id;
            Memory = memory;
            Platform = new Devices.PcPlatform(TscClock.Instance, this, memory.Size, 1, KvmHost.TscPerSecond);
        }

        public void Stop(int status, string? reason)
        {
            if (ExitStatus < 0)
            {
                ExitStatus = status;
                StopReason = reason;
            }
        }

        /// <summary>COM1's transmitter: every byte the guest sends.</summary>
        public void Put(byte value) => SerialOut(value);

        /// <summary>A byte the guest wrote to its COM1 data port: relayed by lines, prefixed with the VM id.</summary>
        public void SerialOut(byte value)
        {
            if (value == '\r')
                return;
            if (value != '\n' && _lineLength < _line.Length)
            {
                _line[_lineLength++] = value;
                return;
            }
            FlushSerial();
        }

        public void FlushSerial()
        {
            if (_lineLength == 0)
                return;
            ulong f = KvmHost.LogBegin();
            KvmHost.Write("[vm ");
            KvmHost.WriteDecimal((ulong)Id);
            KvmHost.Write("] ");
            for (int i = 0; i < _lineLength; i++)
                KvmHost.WriteChar(_line[i] >= 32 && _line[i] < 127 ? (char)_line[i] : '?');
            KvmHost.WriteChar('\n');
            KvmHost.LogEnd(f);
            _lineLength = 0;
        }
    }
}
