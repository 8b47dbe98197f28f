using Tandem.Arch.X86;
using Tandem.Kvm.Vmx.Exits;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// Enters the guest until it ends, a handler stops it, or a phase handler asks for a pause.
    /// One handler per exit reason (kvm/Vmx/Exits); an exit nobody handles stops that VM with a
    /// dump and never the host.
    /// </summary>
    public static unsafe class RunLoop
    {
        /// <summary>
        /// Runs <paramref name="vcpu"/> on the current thread, with interrupts off except where the
        /// exit handlers let them in (the scheduler may preempt or move the thread there: its
        /// switch-in hook makes the VMCS current again, on whatever CPU). Returns when the VM stopped
        /// or paused.
        /// </summary>
        public static void Run(Vcpu vcpu)
        {
            Vm vm = vcpu.Vm;
            ulong flags = Vcpu.DisableInterrupts();
            System.Threading.Volatile.Write(ref vcpu.Thread, KvmHost.CurrentThread());
            KvmHost.SetSwitchInHook(&Vcpu.OnSwitchIn, vcpu.Vpid);
            vcpu.Load();
            vm.PauseRequested = false;
            vcpu.ChargedUntil = Native.Rdtsc();
            if (!vcpu.Started)
                Startup.WaitForSipi(vcpu);
            if (!System.Threading.Volatile.Read(ref s_handlersFilled))
                FillHandlers();
            // The host time of each exit (Vcpu.ExitHostTsc): its reason and the TSC right after it,
            // charged right before the next entry. Two RDTSCs an exit, no lock (the counters are
            // this thread's).
            int lastExit = -1;
            ulong exitTsc = 0;
            while (!vm.Stopped && !vm.PauseRequested && !System.Threading.Volatile.Read(ref vm.Paused))
            {
                if (vcpu.HaltedAtPause || vcpu.ParkedAtPause)
                {
                    // A pause for a move took it halted or parked: it waits again as the guest asked
                    // before any entry (after the move, or when the move was refused and the pause
                    // ended before this loop looked), so no wake-up is made up. A pause during
                    // this wait marks it again; a stop ends it (the loop's test).
                    WaitAgain(vcpu);
                    continue;
                }
                // A host interrupt that came while exits were handled (interrupts off) is taken
                // here, before every 8th entry: the SDM has such a pending interrupt cause an exit
                // right after the entry, but Bochs does not (a guest that faults on every page then
                // kept its CPU from every timer tick for 20 s). Every 8th: the exit path's cost
                // (host_per_exit) stays within its goal; the wait is at most 7 more exits.
                if ((++vcpu.EntriesSincePoll & 7) == 0)
                    KvmHost.PollInterrupts();
                // IN_GUEST_MODE before the entry checks: a kick from now on sends an IPI, which
                // stays pending (interrupts are off) and makes the guest exit right after entry.
                System.Threading.Interlocked.Exchange(ref vcpu.InGuest, 1);
                if (!Events.BeforeEntry(vcpu))
                {
                    // An INIT reset this AP: it waits for a start-up IPI, as at power-on.
                    System.Threading.Volatile.Write(ref vcpu.InGuest, 0);
                    ChargeExit(vcpu, ref lastExit, exitTsc);
                    Startup.WaitForSipi(vcpu);
                    continue;
                }
                ChargeExit(vcpu, ref lastExit, exitTsc);
                uint exit = Native.VmRun(vcpu.Registers);
                exitTsc = Native.Rdtsc();
                System.Threading.Volatile.Write(ref vcpu.InGuest, 0);
                ExitAction action;
                if (exit < ExitReason.Count)
                {
                    // Every ordinary exit: a basic reason and no flag bits (bit 31, VM-entry
                    // failure, would make it larger).
                    vcpu.Exits++;
                    vcpu.ExitCounts[exit]++;
                    lastExit = (int)exit;
                    action = Dispatch(vcpu, new ExitInfo((int)exit));
                }
                else if (exit >= Native.VmRunFailValid)
                {
                    ulong error = 0;
                    if (exit == Native.VmRunFailValid)
                        Native.VmRead(VmcsField.InstructionError, &error);
                    vm.Stop(255, exit == Native.VmRunFailInvalid ? "VM entry failed (VMfailInvalid)" : "VM entry failed (VMfailValid)");
                    StopDump.Write(vcpu, -1, error);
                    break;
                }
                else
                {
                    lastExit = (exit & 0xFFFF) < ExitReason.Count ? (int)(exit & 0xFFFF) : -1;
                    action = Unusual(vcpu, exit);
                }
                if (action == ExitAction.Stop)
                {
                    if (vm.StopReason != null && vm.Stopped)
                        StopDump.Write(vcpu, (int)(exit & 0xFFFF), Vmcs.Read(VmcsField.ExitQualification));
                    break;
                }
            }
            ChargeExit(vcpu, ref lastExit, exitTsc);
            Events.ChargeBudget(vcpu);
            if (vcpu.Launched)
                Events.SampleRip(vcpu);
            if (vcpu.Index == 0)
                vm.FlushSerial();
            KvmHost.SetSwitchInHook(null, 0);
            Vcpu.RestoreInterrupts(flags);
        }

        /// <summary>Halts (<see cref="Events.Halt"/>) or parks (<see cref="HltExit.Park"/>) again a vCPU that a pause for a move took halted or parked; the flag is cleared first.</summary>
        private static void WaitAgain(Vcpu vcpu)
        {
            if (vcpu.ParkedAtPause)
            {
                vcpu.ParkedAtPause = false;
                HltExit.Park(vcpu);
            }
            else
            {
                vcpu.HaltedAtPause = false;
                Events.Halt(vcpu);
            }
        }

        /// <summary>Adds the host time since the last exit (taken at <paramref name="exitTsc"/>) to its reason's counter, once.</summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        private static void ChargeExit(Vcpu vcpu, ref int lastExit, ulong exitTsc)
        {
            if (lastExit < 0)
                return;
            ref ulong slot = ref vcpu.ExitHostTsc[lastExit];
            System.Threading.Volatile.Write(ref slot, slot + (Native.Rdtsc() - exitTsc));
            lastExit = -1;
        }

        /// <summary>
        /// The handler of every basic exit reason below <see cref="ExitReason.Count"/>, indexed by
        /// reason (KVM's <c>kvm_vmx_exit_handlers</c>): dispatching an exit is one load and one
        /// indirect call, where a switch over the sparse reasons compiles to a tree of compares and
        /// several jump tables. Filled by the first <see cref="Run"/> (CPUs that race there write the
        /// same values); a fixed buffer in a static of a class without a static constructor, so
        /// reading it needs no class-initialization check.
        /// </summary>
        private struct HandlerTable
        {
            public fixed ulong Entries[ExitReason.Count];
        }

        private static HandlerTable s_handlers;
        private static bool s_handlersFilled;

        private static void FillHandlers()
        {
            for (int i = 0; i < ExitReason.Count; i++)
                Set(i, &Unhandled);
            Set(ExitReason.ExceptionOrNmi, &ExceptionOrNmi);
            Set(ExitReason.ExternalInterrupt, &ExternalInterruptExit.Handle);
            Set(ExitReason.TripleFault, &TripleFaultExit.Handle);
            Set(ExitReason.InterruptWindow, &InterruptWindowExit.Handle);
            Set(ExitReason.NmiWindow, &NmiWindowExit.Handle);
            Set(ExitReason.Cpuid, &CpuidExit.Handle);
            Set(ExitReason.Hlt, &HltExit.Handle);
            Set(ExitReason.Invd, &CacheExit.Handle);
            Set(ExitReason.Wbinvd, &CacheExit.Handle);
            Set(ExitReason.Vmcall, &VmcallExit.Handle);
            Set(ExitReason.CrAccess, &CrAccessExit.Handle);
            Set(ExitReason.DrAccess, &DrAccessExit.Handle);
            Set(ExitReason.IoInstruction, &IoExit.Handle);
            Set(ExitReason.Rdmsr, &MsrExit.HandleRead);
            Set(ExitReason.Wrmsr, &MsrExit.HandleWrite);
            Set(ExitReason.EptViolation, &EptViolation);
            Set(ExitReason.EptMisconfiguration, &EptMisconfiguration);
            Set(ExitReason.PreemptionTimer, &PreemptionTimerExit.Handle);
            Set(ExitReason.Xsetbv, &XsetbvExit.Handle);
            Set(ExitReason.Getsec, &FaultingInstructionExit.InvalidOpcode);
            for (int reason = ExitReason.Vmclear; reason <= ExitReason.Vmxon; reason++)
                Set(reason, &FaultingInstructionExit.InvalidOpcode);
            Set(ExitReason.Invept, &FaultingInstructionExit.InvalidOpcode);
            Set(ExitReason.Invvpid, &FaultingInstructionExit.InvalidOpcode);
            Set(ExitReason.Vmfunc, &FaultingInstructionExit.InvalidOpcode);
            Set(ExitReason.Monitor, &FaultingInstructionExit.InvalidOpcode);
            Set(ExitReason.Mwait, &FaultingInstructionExit.InvalidOpcode);
            Set(ExitReason.Rdpmc, &FaultingInstructionExit.Rdpmc);
            System.Threading.Volatile.Write(ref s_handlersFilled, true);
        }

        private static void Set(int reason, delegate*<Vcpu, in ExitInfo, ExitAction> handler) =>
            s_handlers.Entries[reason] = (ulong)handler;

        /// <summary>Calls the handler of <paramref name="e"/>'s reason (below <see cref="ExitReason.Count"/>).</summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        private static ExitAction Dispatch(Vcpu v, in ExitInfo e) =>
            ((delegate*<Vcpu, in ExitInfo, ExitAction>)s_handlers.Entries[e.Reason])(v, e);

        // The exits that can occur during event delivery (SDM 27.2.3) re-inject the event first.
        private static ExitAction ExceptionOrNmi(Vcpu v, in ExitInfo e)
        {
            Events.Reinject(v);
            return ExceptionExit.Handle(v, e);
        }

        private static ExitAction EptViolation(Vcpu v, in ExitInfo e)
        {
            Events.Reinject(v);
            return EptViolationExit.Handle(v, e);
        }

        private static ExitAction EptMisconfiguration(Vcpu v, in ExitInfo e)
        {
            Events.Reinject(v);
            return EptMisconfigExit.Handle(v, e);
        }

        private static ExitAction Unhandled(Vcpu v, in ExitInfo e)
        {
            v.Vm.Stop(255, "unhandled VM exit");
            return ExitAction.Stop;
        }

        /// <summary>An exit whose reason field has a flag bit (VM-entry failure, say) or a basic reason beyond <see cref="ExitReason.Count"/>.</summary>
        private static ExitAction Unusual(Vcpu v, uint exit)
        {
            v.Exits++;
            ExitInfo e = new ExitInfo(exit);
            if (e.Reason < ExitReason.Count)
                v.ExitCounts[e.Reason]++;
            if (e.EntryFailed)
                return EntryFailure(v, e);
            return e.Reason < ExitReason.Count ? Dispatch(v, e) : Unhandled(v, e);
        }

        private static ExitAction EntryFailure(Vcpu v, in ExitInfo e)
        {
            v.Vm.Stop(255, e.Reason == ExitReason.InvalidGuestState ? "VM entry failed: invalid guest state" : "VM entry failed");
            return ExitAction.Stop;
        }
    }
}

