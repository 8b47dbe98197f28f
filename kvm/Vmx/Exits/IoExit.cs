namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// Port I/O (exit reason 30; qualification per SDM Vol. 3C table 28-5): the guest's COM1
    /// (data port relayed to the host console, line status always "ready"), the exit port 0xF4
    /// (ends the VM with the byte written), the phase port 0x502 (test synchronisation); every
    /// other port goes to the VM's port bus (<see cref="Devices.PcPlatform"/>: PIC, PIT), where
    /// unclaimed ports read as all ones and ignore writes.
    /// </summary>
    internal static unsafe class IoExit
    {
        public const ushort SerialData = 0x3F8, SerialLineStatus = 0x3FD, ExitPort = 0xF4, PhasePort = 0x502;

        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            ulong qualification = e.Qualification;
            int size = (int)(qualification & 7) + 1;
            bool input = (qualification & 8) != 0;
            bool stringOp = (qualification & 16) != 0;
            ushort port = (ushort)(qualification >> 16);
            if (stringOp)
            {
                v.Vm.Stop(255, "string port I/O (INS/OUTS) is not supported");
                return ExitAction.Stop;
            }
            GuestRegisters* r = v.Registers;
            v.EntryWork = true;           // a device may have changed: the next entry looks
            ulong mask = size == 1 ? 0xFFUL : size == 2 ? 0xFFFFUL : 0xFFFF_FFFFUL;
            if (input)
            {
                ulong value = port == SerialLineStatus ? 0x60UL : port == SerialData ? 0 : v.Vm.Platform.Ports.Read(port, size);
                r->Rax = (r->Rax & ~mask) | (value & mask);
            }
            else
            {
                ulong value = r->Rax & mask;
                switch (port)
                {
                    case SerialData:
                        v.Vm.SerialOut((byte)value);
                        break;
                    case ExitPort:
                        e.Skip();
                        v.Vm.FlushSerial();
                        v.Vm.Stop((int)(value & 0xFF), null);
                        return ExitAction.Stop;
                    case PhasePort:
                        v.Vm.LastPhase = value;
                        if (v.Vm.PhaseHandler != null)
                        {
                            e.Skip();
                            v.Vm.PhaseHandler(v.Vm, value);
                            return v.Vm.Stopped ? ExitAction.Stop : ExitAction.Resume;
                        }
                        break;
                    default:
                        v.Vm.Platform.Ports.Write(port, size, (uint)value);
                        break;
                }
            }
            e.Skip();
            return ExitAction.Resume;
        }
    }
}
