namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// Port I/O (exit reason 30; qualification per SDM Vol. 3C table 28-5). Every port goes to the
    /// VM's port bus (<see cref="Devices.PcPlatform"/>: PIC, PIT, COM1, CMOS, i8042, port 0x92,
    /// PCI, fw_cfg, the debug-exit port 0xF4), where unclaimed ports read as all ones and ignore
    /// writes, except the test phase port 0x502 (the host's tests act at each phase). After a
    /// write, a debug-exit write ends the VM with that status, and a pulled reset line ends it with
    /// status 0, or restarts it when the VM's <c>reset=restart</c> says so (the runner makes it anew). INS and OUTS are emulated (<see cref="MmioExit.PortString"/>).
    /// </summary>
    internal static unsafe class IoExit
    {
        public const ushort PhasePort = 0x502;

        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            ulong qualification = e.Qualification;
            int size = (int)(qualification & 7) + 1;
            bool input = (qualification & 8) != 0;
            bool stringOp = (qualification & 16) != 0;
            ushort port = (ushort)(qualification >> 16);
            v.Vm.CountPort(port);
            if (stringOp)
                return MmioExit.PortString(v, input, port, size, (qualification & 32) != 0);
            GuestRegisters* r = v.Registers;
            v.EntryWork = true;           // a device may have changed: the next entry looks
            Devices.PcPlatform p = v.Platform;
            ulong mask = size == 1 ? 0xFFUL : size == 2 ? 0xFFFFUL : 0xFFFF_FFFFUL;
            if (input)
            {
                p.Lock.Enter();
                ulong read = p.Ports.Read(port, size);
                p.Lock.Exit();
                r->Rax = (r->Rax & ~mask) | (read & mask);
                e.Skip();
                return ExitAction.Resume;
            }
            ulong value = r->Rax & mask;
            e.Skip();
            if (port == PhasePort)
            {
                v.Vm.LastPhase = value;
                if (v.Vm.PhaseHandler != null)
                {
                    v.Vm.PhaseHandler(v.Vm, value);
                    return v.Vm.Stopped ? ExitAction.Stop : ExitAction.Resume;
                }
                return ExitAction.Resume;
            }
            p.Lock.Enter();
            p.Ports.Write(port, size, (uint)value);
            p.Lock.Exit();
            return AfterWrite(v, p);
        }

        /// <summary>A port write asked for the VM's end: the debug-exit port, ACPI S5, or a reset line.</summary>
        public static bool EndRequested(Devices.PcPlatform p) => p.DebugExit.ExitRequested || p.Pm.PowerOffRequested || p.Reset.Requested;

        /// <summary>After a port write (OUT or OUTS): the VM ends if the write asked for it (debug exit, S5, reset); a sleep request wakes at once.</summary>
        public static ExitAction AfterWrite(Vcpu v, Devices.PcPlatform p)
        {
            if (p.DebugExit.ExitRequested)
            {
                v.Vm.FlushSerial();
                v.Vm.Stop((int)(p.DebugExit.ExitStatus & 0x7FFF_FFFF), null);
                return ExitAction.Stop;
            }
            if (p.Pm.PowerOffRequested)
            {
                v.Vm.FlushSerial();
                KvmHost.Line("vm: the guest powered its machine off (ACPI S5): the VM ends with status 0");
                v.Vm.Stop(0, null);
                return ExitAction.Stop;
            }
            if (p.Pm.SleepRequested)
                p.Pm.CompleteSleep();     // other sleep states are not supported: wake at once
            if (p.Reset.Requested)
            {
                v.Vm.FlushSerial();
                KvmHost.Line(v.Vm.RestartOnReset
                    ? "vm: the guest reset its machine (i8042, port 0x92 or 0xCF9): the VM restarts (reset=restart)"
                    : "vm: the guest reset its machine (i8042, port 0x92 or 0xCF9): the VM ends with status 0 (reset=restart restarts it)");
                v.Vm.ResetRequested = true;
                v.Vm.Stop(0, null);
                return ExitAction.Stop;
            }
            return ExitAction.Resume;
        }
    }
}
