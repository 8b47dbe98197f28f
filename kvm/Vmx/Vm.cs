namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// A virtual machine: its guest memory (EPT-mapped), its vCPU, the relay of its serial port to
    /// the host console, and how it ended.
    /// </summary>
    public sealed unsafe class Vm : Devices.ISerialSink, Devices.IVcpuKick
    {
        public readonly int Id;
        public readonly IGuestMemory Memory;

        /// <summary>The VM's PC devices (port bus, PIC, PIT) and their interrupt wiring.</summary>
        public readonly Devices.PcPlatform Platform;

        /// <summary>The bootstrap processor (vCPU 0).</summary>
        public Vcpu? Vcpu;

        /// <summary>Every vCPU, by index (APIC ID).</summary>
        public Vcpu[] Vcpus = new Vcpu[0];

        /// <summary>-1 while running; the status the guest wrote to the exit port, or 255 when the host stopped it.</summary>
        public int ExitStatus = -1;
        public string? StopReason;
        public bool Stopped => System.Threading.Volatile.Read(ref ExitStatus) >= 0;

        /// <summary>vCPUs parked in a HLT with interrupts disabled, waiting in Exits.HltExit.Park for an NMI or INIT (one that a pause for a move took out of its wait is not counted until it parks again).</summary>
        public int ParkedVcpus;

        /// <summary><c>vm=...,reset=restart</c>: a reset of the guest's machine restarts it (the runner makes the VM anew) instead of ending it.</summary>
        public bool RestartOnReset;

        /// <summary>The guest reset its machine (i8042, port 0x92, 0xCF9): it stopped with status 0 for that reason.</summary>
        public bool ResetRequested;

        /// <summary>The VM that took over when this one was moved (the postcopy move); null otherwise. Set before this VM stops.</summary>
        public Vm? MovedTo;

        /// <summary>vCPU threads still running (the kernel's runner counts them down), and the thread to wake when none is left.</summary>
        public int RunningVcpus;
        public ulong Waiter;

        /// <summary>TSC at the start of the run and when the last vCPU returned.</summary>
        public ulong StartTsc, EndTsc;

        /// <summary>Called when the guest writes to the phase port (tests synchronise with guests through it).</summary>
        public delegate*<Vm, ulong, void> PhaseHandler;

        /// <summary>Set by a phase handler to pause the run loop after the current exit.</summary>
        public bool PauseRequested;

        /// <summary>
        /// The monitor paused the VM (<see cref="Pause"/>): its vCPUs leave guest mode at their next
        /// exit (a kick forces one) and wait in the host until <see cref="Resume"/> or the VM's end.
        /// </summary>
        public bool Paused;

        /// <summary>
        /// A pause takes each vCPU's state (<see cref="Vcpu.SavedState"/>) on the vCPU's own thread
        /// before it waits: the postcopy move gives it to the VM that takes over.
        /// </summary>
        public bool SaveStateOnPause;

        /// <summary>Pauses every vCPU (the monitor's <c>pause</c>); a vCPU halted or parked in the guest stays halted and waits there (a pause for a move takes it out, marked so), or in the host once it wakes.</summary>
        public void Pause()
        {
            System.Threading.Volatile.Write(ref Paused, true);
            for (int i = 0; i < Vcpus.Length; i++)
                Kick(i);
        }

        /// <summary>Lets the vCPUs of a paused VM run again.</summary>
        public void Resume()
        {
            System.Threading.Volatile.Write(ref Paused, false);
            for (int i = 0; i < Vcpus.Length; i++)
                Kick(i);
        }

        /// <summary>
        /// On the vCPU's own thread, between two runs of the run loop: waits while the VM is paused
        /// and not stopped, blocked (woken by the kick of <see cref="Resume"/> or <see cref="Stop"/>,
        /// or every 10 ms to look again).
        /// </summary>
        public void WaitWhilePaused(Vcpu v)
        {
            if (!System.Threading.Volatile.Read(ref Paused))
                return;
            System.Threading.Volatile.Write(ref v.HeldByPause, true);
            while (System.Threading.Volatile.Read(ref Paused) && !Stopped)
            {
                // A move may be asked for while the VM is already paused (the monitor's pause, then
                // move): the state is taken here, in the loop, whenever that happens.
                if (System.Threading.Volatile.Read(ref SaveStateOnPause) && v.SavedState == null)
                {
                    ulong flags = Vcpu.DisableInterrupts();
                    VcpuState state = VcpuState.Capture(v);
                    Vcpu.RestoreInterrupts(flags);
                    // Release: the state is whole before a reader that sees it looks at it.
                    System.Threading.Volatile.Write(ref v.SavedState, state);
                }
                KvmHost.BlockThread(Tandem.Arch.X86.Native.Rdtsc() + KvmHost.TscPerSecond / 100);
            }
            System.Threading.Volatile.Write(ref v.HeldByPause, false);
        }

        /// <summary>The guest's time budget (running or halted, per vCPU) in units of <see cref="VmcsSetup.BudgetQuantum"/> preemption-timer ticks, before the host stops it as runaway; 0: no budget.</summary>
        public ulong MaxQuanta = 20_000;
        public ulong LastPhase;

        private readonly byte[] _line = new byte[160];
        private int _lineLength;

        public Vm(int id, IGuestMemory memory, int cpus = 1)
        {
            Id = id;
            Memory = memory;
            Platform = new Devices.PcPlatform(TscClock.Instance, this, memory.Size, (ushort)cpus, KvmHost.TscPerSecond);
            Platform.Kicker = this;
        }

        /// <summary>
        /// A VM that takes over <paramref name="devices"/>, the device models of a paused VM, with
        /// their state (the in-host postcopy move): their serial output and kicks come here.
        /// </summary>
        public Vm(int id, IGuestMemory memory, Devices.PcPlatform devices)
        {
            Id = id;
            Memory = memory;
            Platform = devices;
            Platform.AdoptBy(this, this);
        }

        private int _stopping;

        /// <summary>
        /// Ends the VM with <paramref name="status"/> (the first caller wins: a vCPU, a device, the
        /// host) and kicks every vCPU so that each leaves guest mode or its halt and sees it.
        /// </summary>
        public void Stop(int status, string? reason)
        {
            if (System.Threading.Interlocked.CompareExchange(ref _stopping, 1, 0) != 0)
                return;
            StopReason = reason;
            // Publishes StopReason with the status; pairs with the Volatile.Read in Stopped.
            System.Threading.Volatile.Write(ref ExitStatus, status);
            for (int i = 0; i < Vcpus.Length; i++)
                Kick(i);
        }

        /// <summary>
        /// Something is pending for vCPU <paramref name="index"/> (an interrupt, INIT, SIPI, the VM's
        /// end): its next entry must look (EntryWork), a halted vCPU wakes, and one in guest mode on
        /// another CPU gets an IPI that makes it exit. Called by the devices with the VM's device lock
        /// held; takes no device lock itself.
        /// </summary>
        public void Kick(int index)
        {
            if ((uint)index >= (uint)Vcpus.Length)
                return;
            Vcpu v = Vcpus[index];
            if (v.Bench != null)
                v.Bench.OnKick();
            System.Threading.Volatile.Write(ref v.EntryWork, true);
            // EntryWork before InGuest; pairs with the vCPU's Interlocked.Exchange of InGuest before
            // it reads EntryWork (docs/scheduler.md, "Kicks").
            System.Threading.Interlocked.MemoryBarrier();
            ulong thread = System.Threading.Volatile.Read(ref v.Thread);
            if (thread == 0)
                return;
            if (System.Threading.Volatile.Read(ref v.InGuest) != 0)
                KvmHost.KickThread(thread);
            KvmHost.WakeThread(thread);
        }

        /// <summary>Unassigned accesses by all the VM's vCPUs (<see cref="Vcpu.UnassignedAccesses"/>); the first <see cref="UnassignedLogged"/> get a console line.</summary>
        public ulong UnassignedAccesses;

        /// <summary>1 once the console was told that the guest armed a hardware breakpoint that will not fire (<see cref="Exits.DrAccessExit"/>).</summary>
        public int BreakpointsReported;

        /// <summary>How many unassigned accesses per VM are shown on the console; the rest are counted.</summary>
        public const ulong UnassignedLogged = 4;

        /// <summary>COM1 output is counted, not shown (a fuzz guest writes random bytes to the port).</summary>
        public bool MuteSerial;

        /// <summary>Bytes <see cref="MuteSerial"/> kept off the console.</summary>
        public ulong MutedSerialBytes;

        private int _released;

        /// <summary>
        /// After the VM stopped and every vCPU thread ended: VMCLEAR each VMCS on the CPU it was
        /// last active on, free the VMCS and register pages, and give the guest memory back through
        /// the mm core (<see cref="IGuestMemory.Release"/>). Calling it twice is harmless.
        /// </summary>
        public void Release()
        {
            if (System.Threading.Interlocked.Exchange(ref _released, 1) != 0)
                return;
            VmRegistry.Remove(this);
            for (int i = 0; i < Vcpus.Length; i++)
                Vcpus[i].Release();
            Memory.Release();
        }

        /// <summary>COM1's transmitter: every byte the guest sends.</summary>
        public void Put(byte value) => SerialOut(value);

        /// <summary>
        /// A byte the guest wrote to its COM1 data port: relayed by lines, prefixed with the VM id. A
        /// line without its newline yet (a shell prompt, echoed keys) is shown by <see cref="FlushPartialSerial"/>.
        /// </summary>
        public void SerialOut(byte value)
        {
            if (MuteSerial)
            {
                MutedSerialBytes++;
                return;
            }
            // CR LF ends a line (the console writes its own); a CR alone is a line editor
            // returning to the start of the line to redraw it, and goes through.
            if (value == '\r')
            {
                _pendingCr = true;
                return;
            }
            bool cr = _pendingCr;
            _pendingCr = false;
            if (Watch != null)
                Watch.See(value);
            if (value == '\n')
            {
                Emit(true);
                return;
            }
            if (cr)
                Append((byte)'\r');
            Append(value);
        }

        private bool _pendingCr;

        private void Append(byte value)
        {
            if (_lineLength == _line.Length)
                Emit(false);
            _line[_lineLength++] = value;
        }

        /// <summary>Ends the VM's current line on the console (at the VM's end). Takes the VM's device lock, which the UART's writes hold.</summary>
        public void FlushSerial()
        {
            Platform.Lock.Enter();
            if (_lineLength > 0 || _partialShown)
                Emit(true);
            Platform.Lock.Exit();
        }

        /// <summary>
        /// Shows what the guest wrote of its current line so far (the vCPU is about to halt: a prompt
        /// waits for input). Takes the VM's device lock, which the UART's writes hold.
        /// </summary>
        public void FlushPartialSerial()
        {
            if (System.Threading.Volatile.Read(ref _lineLength) == 0)
                return;
            Platform.Lock.Enter();
            if (_lineLength > 0)
                Emit(false);
            Platform.Lock.Exit();
        }

        /// <summary>Part of the current line is already on the console.</summary>
        private bool _partialShown;

        private void Emit(bool endOfLine)
        {
            bool continues = false;
            ulong f = KvmHost.LogBeginAs != null ? KvmHost.LogBeginAs(Id, &continues) : KvmHost.LogBegin();
            if (!(continues && _partialShown))
            {
                KvmHost.Write("[vm ");
                KvmHost.WriteDecimal((ulong)Id);
                KvmHost.Write("] ");
            }
            for (int i = 0; i < _lineLength; i++)
                KvmHost.WriteChar(Printable(_line[i]) ? (char)_line[i] : '?');
            if (endOfLine)
            {
                KvmHost.WriteChar('\n');
                _partialShown = false;
            }
            else
            {
                _partialShown = true;
                if (KvmHost.LogLeaveOpen != null)
                    KvmHost.LogLeaveOpen(Id);
            }
            KvmHost.LogEnd(f);
            _lineLength = 0;
        }

        /// <summary>Text, and what a line editor needs on a terminal: backspace, tab, carriage return and escape sequences.</summary>
        private static bool Printable(byte b) => (b >= 32 && b < 127) || b == 8 || b == 9 || b == 13 || b == 27;

        private const int PortSlots = 64;
        private readonly int[] _portKey = new int[PortSlots];      // port + 1; 0: free
        private readonly long[] _portCount = new long[PortSlots];

        /// <summary>Counts a port I/O exit by port (the first 64 ports a guest uses; more are not counted).</summary>
        public void CountPort(ushort port)
        {
            int key = port + 1;
            int i = (port * 40503) & (PortSlots - 1);
            for (int probe = 0; probe < PortSlots; probe++, i = (i + 1) & (PortSlots - 1))
            {
                int k = System.Threading.Volatile.Read(ref _portKey[i]);
                if (k == 0)
                    k = System.Threading.Interlocked.CompareExchange(ref _portKey[i], key, 0) == 0 ? key : _portKey[i];
                if (k == key)
                {
                    System.Threading.Interlocked.Increment(ref _portCount[i]);
                    return;
                }
            }
        }

        /// <summary>The port with the <paramref name="rank"/>-th most exits (0: the most) and its count; false past the last.</summary>
        public bool TopPort(int rank, out ushort port, out long count)
        {
            port = 0;
            count = 0;
            long above = long.MaxValue;
            int aboveKey = int.MaxValue;
            for (int r = 0; r <= rank; r++)
            {
                int best = -1;
                for (int i = 0; i < PortSlots; i++)
                {
                    int k = _portKey[i];
                    long c = _portCount[i];
                    if (k == 0 || c > above || (c == above && k >= aboveKey))
                        continue;
                    if (best < 0 || c > _portCount[best] || (c == _portCount[best] && k < _portKey[best]))
                        best = i;
                }
                if (best < 0)
                    return false;
                above = _portCount[best];
                aboveKey = _portKey[best];
            }
            port = (ushort)(aboveKey - 1);
            count = above;
            return true;
        }

        /// <summary>Watches the guest's console output for a marker (the Linux tests); null: none.</summary>
        public ConsoleWatch? Watch;
    }
}
