using Tandem.Arch.X86;
using Tandem.Kvm.Devices;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// Interrupt delivery to a vCPU (SDM Vol. 3C, 27.6 "Event injection", 28.2.4 "Information for
    /// VM exits that occur during event delivery"), the preemption timer as the device models'
    /// alarm clock, blocking HLT and the guest's time budget.
    /// </summary>
    internal static unsafe class Events
    {
        private const uint Valid = 1u << 31;
        private const ulong RflagsIf = 1UL << 9;
        private const ulong ProcInterruptWindow = 1UL << 2;

        /// <summary>
        /// For the exits that can occur during event delivery (SDM 27.2.3: an intercepted
        /// exception, an EPT violation or misconfiguration; task switches, APIC accesses and a full
        /// page-modification log cannot happen here, they are not enabled): an event whose delivery
        /// the exit interrupted (an EPT violation on the IDT or the handler's stack, typically) is
        /// delivered again on the next entry, with its error code and, for software events, its
        /// instruction length. An acknowledged PIC interrupt is never lost this way. The run loop
        /// calls it from those exits' dispatch only, so every other exit pays nothing.
        /// </summary>
        public static void Reinject(Vcpu v)
        {
            ulong info = Vmcs.Read(VmcsField.IdtVectoringInfo);
            if ((info & Valid) == 0)
                return;
            uint type = (uint)(info >> 8) & 7;
            if ((info & (1UL << 11)) != 0)
                Vmcs.Write(VmcsField.EntryExceptionErrorCode, Vmcs.Read(VmcsField.IdtVectoringErrorCode));
            if (type == 4 || type == 5 || type == 6)
                Vmcs.Write(VmcsField.EntryInstructionLength, Vmcs.Read(VmcsField.ExitInstructionLength));
            Vmcs.Write(VmcsField.EntryInterruptionInfo, info & (Valid | 0xFFFUL));
            v.Reinjected++;
        }

        /// <summary>
        /// Before every entry: let the devices raise what is due, inject the PIC's interrupt when the
        /// guest can take it (IF set, no STI or MOV SS shadow, no other event queued) or ask for an
        /// interrupt-window exit, and arm the preemption timer for the next device event.
        /// </summary>
        /// <returns>False when an INIT reset the vCPU (an AP) instead: it must wait for a start-up
        /// IPI (<see cref="Startup.WaitForSipi"/>) before it enters again.</returns>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public static bool BeforeEntry(Vcpu v)
        {
            // The common case on the exit path: no device timer armed, nothing pending, no window
            // requested, a full quantum armed. Device state changes only through the guest's port
            // I/O (which sets EntryWork), time (only while a timer is armed: EntryWork stays set)
            // and host-side input (whoever queues it sets EntryWork), so one flag says it all.
            return !v.EntryWork || Deliver(v, v.Platform);
        }

        private const ulong ProcNmiWindow = 1UL << 22;
        /// <summary>Guest interruptibility: blocking by STI (bit 0), by MOV SS (bit 1), by NMI (bit 3).</summary>
        private const ulong NmiBlockers = 0xB;

        private static bool Deliver(Vcpu v, PcPlatform p)
        {
            // Take the work before looking at the devices: a kick that lands after this store sets
            // EntryWork again (and, as InGuest is 1, sends the IPI), so none is lost between our
            // look and the entry. The barrier orders the store before the device reads below.
            System.Threading.Volatile.Write(ref v.EntryWork, false);
            System.Threading.Interlocked.MemoryBarrier();
            int cpu = v.Index;
            p.Lock.Enter();
            p.Poll(cpu);
            LocalApic apic = p.Lapics[cpu];
            if (apic.InitPending)
            {
                // INIT (SDM 10.4.7.3; only an AP's APIC takes it, which reset itself already): the
                // vCPU drops what it was doing, queued events included, and waits for a start-up
                // IPI; WaitForSipi takes the INIT with the SIPI and sets the VMCS up afresh.
                p.Lock.Exit();
                Vmcs.Write(VmcsField.EntryInterruptionInfo, 0);
                v.Started = false;
                v.InitResets++;
                return false;
            }
            if (apic.NmiPending)
                DeliverNmi(v, apic);
            bool more;
            if (p.HasInterruptFor(cpu))
            {
                if ((Vmcs.Read(VmcsField.EntryInterruptionInfo) & Valid) == 0 && Interruptible())
                {
                    // Type 0 (external interrupt), no error code.
                    int vector = p.AcknowledgeInterrupt(cpu);
                    Vmcs.Write(VmcsField.EntryInterruptionInfo, Valid | (uint)vector);
                    v.Injected++;
                    if (v.Bench != null)
                        v.Bench.OnInject(vector);
                    SetWindow(v, false);
                }
                else
                {
                    SetWindow(v, true);
                }
            }
            else if (v.WindowRequested)
            {
                SetWindow(v, false);
            }
            ArmTimer(v, p.NextEventNsFor(cpu), p.Clock);
            more = !p.IsQuiet(cpu);
            p.Lock.Exit();
            if (more || v.WindowRequested || v.TimerValue != VmcsSetup.PreemptionQuantum)
                System.Threading.Volatile.Write(ref v.EntryWork, true);
            return true;
        }

        /// <summary>
        /// An NMI waits (device lock held): injected (type 2, vector 2; SDM 26.6.1) when no other
        /// event is queued and the guest blocks NMIs in no way (by STI, MOV SS or an NMI handler that
        /// has not yet returned: the checks SDM 26.3.1.5 makes of an NMI injection), else left
        /// pending with an NMI-window exit asked for (virtual NMIs) so it goes in as soon as the
        /// guest's IRET ends the blocking. NMIs come before external interrupts: an interrupt that
        /// finds the NMI queued asks for an interrupt window.
        /// </summary>
        private static void DeliverNmi(Vcpu v, LocalApic apic)
        {
            if ((Vmcs.Read(VmcsField.EntryInterruptionInfo) & Valid) == 0 && (Vmcs.Read(VmcsField.GuestInterruptibility) & NmiBlockers) == 0)
            {
                apic.TakeNmi();
                Vmcs.Write(VmcsField.EntryInterruptionInfo, Valid | (2u << 8) | 2u);
                v.NmisInjected++;
                SetNmiWindow(v, false);
            }
            else if (v.VirtualNmis)
            {
                SetNmiWindow(v, true);
            }
            // Without virtual NMIs there is no NMI window: the NMI stays pending, the devices are not
            // quiet, and every entry looks again.
        }

        /// <summary>NMI-window exiting on or off (exit reason 8, <see cref="Exits.NmiWindowExit"/>).</summary>
        public static void SetNmiWindow(Vcpu v, bool on)
        {
            if (v.NmiWindowRequested == on)
                return;
            ulong proc = Vmcs.Read(VmcsField.ProcBasedControls);
            Vmcs.Write(VmcsField.ProcBasedControls, on ? proc | ProcNmiWindow : proc & ~ProcNmiWindow);
            v.NmiWindowRequested = on;
        }

        private static bool Interruptible() =>
            (Vmcs.Read(VmcsField.GuestRflags) & RflagsIf) != 0 && (Vmcs.Read(VmcsField.GuestInterruptibility) & 3) == 0;

        private static void SetWindow(Vcpu v, bool on)
        {
            if (v.WindowRequested == on)
                return;
            ulong proc = Vmcs.Read(VmcsField.ProcBasedControls);
            Vmcs.Write(VmcsField.ProcBasedControls, on ? proc | ProcInterruptWindow : proc & ~ProcInterruptWindow);
            v.WindowRequested = on;
        }

        /// <summary>The preemption timer: a full quantum, or less when a device event is due sooner.</summary>
        private static void ArmTimer(Vcpu v, ulong next, IDeviceClock clock)
        {
            if (!v.PreemptionTimer)
                return;
            uint value = VmcsSetup.PreemptionQuantum;
            if (next != ulong.MaxValue)
            {
                ulong now = clock.NowNs;
                ulong ticks = next <= now ? 0 : TscClock.NsToTsc(next - now) >> VmcsSetup.PreemptionRate;
                if (ticks < value)
                    value = (uint)ticks;
            }
            if (value != v.TimerValue)
            {
                Vmcs.Write(VmcsField.PreemptionTimerValue, value);
                v.TimerValue = value;
            }
        }

        /// <summary>
        /// Keeps the guest's RIP from the current VMCS and the TSC of the sample for the monitor's
        /// <c>info vcpus</c> (<see cref="Vcpu.LastRip"/>): the owning thread reads it, as no other CPU
        /// can read a VMCS that is current here. RIP first: a reader that reads the time, then RIP,
        /// gets a RIP at least as new as that time (its age is never understated).
        /// </summary>
        public static void SampleRip(Vcpu v)
        {
            System.Threading.Volatile.Write(ref v.LastRip, Vmcs.Read(VmcsField.GuestRip));
            System.Threading.Volatile.Write(ref v.LastRipTsc, Native.Rdtsc());
        }

        /// <summary>
        /// Hands what was typed on the host console to the VM's COM1 (its receive FIFO, and IRQ 4 when
        /// the guest enabled it). Called where the host looks anyway: host timer ticks, preemption
        /// timer exits and halted waits, never on the hot exit path. It takes only as many bytes as
        /// the UART's host buffer has room for (<see cref="Uart16550.ReceiveRoom"/>); the rest waits
        /// in the console's own queue (the monitor's, kernel/Monitor/MonitorShell.cs) for the guest
        /// to drain its FIFO, so a paste longer than the UART holds arrives whole. Only this thread
        /// (vCPU 0's) adds to the buffer, and the guest only takes from it, so the room read under
        /// the lock can only grow before the bytes go in.
        /// </summary>
        public static void PollConsole(Vcpu v)
        {
            SampleRip(v);                  // for the monitor's info vcpus, at the host's look
            if (KvmHost.ReadConsole == null)
                return;
            if (v.Index != 0)
                return;                  // COM1's input is taken by vCPU 0's thread
            int focus = System.Threading.Volatile.Read(ref KvmHost.ConsoleFocus);
            if (focus != 0 && focus != v.Vm.Id)
                return;                  // the keyboard reaches another VM (the monitor's focus)
            v.Platform.Lock.Enter();
            int room = v.Platform.Com1.ReceiveRoom;
            v.Platform.Lock.Exit();
            int b;
            while (room > 0 && (b = KvmHost.ReadConsole()) >= 0)
            {
                v.Platform.Lock.Enter();
                v.Platform.Com1.Receive((byte)b);
                v.Platform.Lock.Exit();
                v.EntryWork = true;
                room--;
            }
        }

        /// <summary>The guest moved past an instruction the host completed for it: an STI or MOV SS shadow that covered it is over.</summary>
        public static void EndInterruptShadow()
        {
            ulong shadow = Vmcs.Read(VmcsField.GuestInterruptibility);
            if ((shadow & 3) != 0)
                Vmcs.Write(VmcsField.GuestInterruptibility, shadow & ~3UL);
        }

        /// <summary>#GP, the vector of a general-protection fault.</summary>
        public const int GeneralProtection = 13;
        public const int InvalidOpcode = 6;

        /// <summary>
        /// Queues a hardware exception with an error code for the next entry (type 3, SDM 26.6.1.1):
        /// the guest takes it through its own IDT, as if its instruction had faulted. The caller
        /// leaves RIP on the instruction.
        /// </summary>
        public static void InjectException(Vcpu v, int vector, uint errorCode)
        {
            // In real mode exceptions push no error code, and in protected mode only #DF, #TS, #NP,
            // #SS, #GP, #PF, #AC and #CP do: VM entry refuses any other (SDM 26.2.1.3).
            bool protectedMode = (Vmcs.Read(VmcsField.GuestCr0) & 1) != 0;
            bool hasCode = protectedMode && (vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21);
            Vmcs.Write(VmcsField.EntryExceptionErrorCode, hasCode ? errorCode : 0);
            Vmcs.Write(VmcsField.EntryInterruptionInfo, Valid | (3u << 8) | (hasCode ? 1u << 11 : 0) | (uint)vector);
            v.EntryWork = true;          // the next entry must not put an interrupt over it
        }

        /// <summary>Charges the time since the last charge to the guest's budget; true once it is spent.</summary>
        public static bool ChargeBudget(Vcpu v)
        {
            ulong now = Native.Rdtsc();
            v.UsedTsc += now - v.ChargedUntil;
            v.ChargedUntil = now;
            if (v.Vm.MaxQuanta == 0)
                return false;                                   // no budget: runs until it stops itself
            ulong unit = (ulong)VmcsSetup.BudgetQuantum << VmcsSetup.PreemptionRate;
            if (unit != 0 && v.Vm.MaxQuanta > ulong.MaxValue / unit)
                return false;                                   // a budget past 2^64 TSC ticks (ulong.MaxValue: none in effect)
            return v.UsedTsc > v.Vm.MaxQuanta * unit;
        }

        /// <summary>
        /// A HLT with interrupts enabled: the vCPU's thread blocks (its CPU runs other threads) until
        /// an interrupt is pending for it (a kick wakes it: an IPI, a device, the VM's end) or its next
        /// timer event is due; then the next entry injects it. A one-vCPU VM halted with nothing that
        /// could wake it is stopped, with the reason.
        /// </summary>
        public static ExitAction Halt(Vcpu v)
        {
            PcPlatform p = v.Vm.Platform;
            int cpu = v.Index;
            v.Halts++;
            v.Vm.FlushPartialSerial();       // a prompt waits for input: show it now
            while (true)
            {
                PollConsole(v);
                p.Lock.Enter();
                p.Poll(cpu);
                // An interrupt, or an NMI or INIT (SDM 8.4 / 10.6: both end a halt whatever IF says).
                bool pending = p.HasEvent(cpu);
                ulong next = p.NextEventNsFor(cpu);
                p.Lock.Exit();
                if (pending)
                {
                    v.EntryWork = true;
                    return ExitAction.Resume;
                }
                if (v.Vm.Stopped)
                    return ExitAction.Stop;
                if (Startup.MovePausing(v.Vm))
                {
                    // A move takes the vCPU where it waits: it leaves the run loop marked halted
                    // (RIP is past the HLT already), and the run loop halts it again first, here
                    // or in the VM that takes over (RunLoop.Run), so no wake-up is made up.
                    v.HaltedAtPause = true;
                    return ExitAction.Resume;
                }
                if (ChargeBudget(v))
                {
                    v.Vm.Stop(255, "guest ran past its time budget without finishing");
                    return ExitAction.Stop;
                }
                bool console = cpu == 0 && p.Com1.ReceiveInterruptEnabled && KvmHost.ReadConsole != null;
                if (next == ulong.MaxValue && !console && v.Vm.Vcpus.Length == 1)
                {
                    v.Vm.Stop(255, "the guest halted with no interrupt source armed: nothing can wake it");
                    return ExitAction.Stop;
                }
                // Sleep until the next timer event or a kick; at most 10 ms at a time while console
                // input may arrive (nothing interrupts us for it) or another vCPU may send an IPI.
                ulong now = p.Clock.NowNs;
                ulong wait = next == ulong.MaxValue || next - now > 10_000_000 ? 10_000_000 : (next > now ? next - now : 0);
                if (wait > 0)
                    KvmHost.BlockThread(Native.Rdtsc() + TscClock.NsToTsc(wait));
            }
        }
    }
}
