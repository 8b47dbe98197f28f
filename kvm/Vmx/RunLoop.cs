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
            while (!vm.Stopped && !vm.PauseRequested)
            {
                // IN_GUEST_MODE before the entry checks: a kick from now on sends an IPI, which
                // stays pending (interrupts are off) and makes the guest exit right after entry.
                System.Threading.Interlocked.Exchange(ref vcpu.InGuest, 1);
                Events.BeforeEntry(vcpu);
                uint exit = Native.VmRun(vcpu.Registers);
                System.Threading.Volatile.Write(ref vcpu.InGuest, 0);
                ExitAction action;
                if (exit < ExitReason.Count)
                {
                    // Every ordinary exit: a basic reason and no flag bits (bit 31, VM-entry
                    // failure, would make it larger).
                    vcpu.Exits++;
                    vcpu.ExitCounts[exit]++;
                    action = Dispatch(vcpu, new ExitInfo((int)exit));
                }
                else if (exit >= Native.VmRunFailValid)
                {
                    ulong error = 0;
                    if (exit == Native.VmRunFailValid)
                        Native.VmRead(VmcsField.InstructionError, &error);
                    vm.Stop(255, exit == Native.VmRunFailInvalid ? "VM entry failed (VMfailInvalid)" : "VM entry failed (VMfailValid)");
                    Dump(vcpu, -1, error);
                    break;
                }
                else
                {
                    action = Unusual(vcpu, exit);
                }
                if (action == ExitAction.Stop)
                {
                    if (vm.StopReason != null && vm.Stopped)
                        Dump(vcpu, (int)(exit & 0xFFFF), Vmcs.Read(VmcsField.ExitQualification));
                    break;
                }
            }
            Events.ChargeBudget(vcpu);
            if (vcpu.Index == 0)
                vm.FlushSerial();
            KvmHost.SetSwitchInHook(null, 0);
            Vcpu.RestoreInterrupts(flags);
        }

        private static ExitAction Dispatch(Vcpu v, in ExitInfo e)
        {
            switch (e.Reason)
            {
                // The exits that can occur during event delivery (SDM 27.2.3) re-inject the event first.
                case ExitReason.ExceptionOrNmi: Events.Reinject(v); return ExceptionExit.Handle(v, e);
                case ExitReason.ExternalInterrupt: return ExternalInterruptExit.Handle(v, e);
                case ExitReason.TripleFault: return TripleFaultExit.Handle(v, e);
                case ExitReason.InterruptWindow: return InterruptWindowExit.Handle(v, e);
                case ExitReason.Cpuid: return CpuidExit.Handle(v, e);
                case ExitReason.Hlt: return HltExit.Handle(v, e);
                case ExitReason.Invd: return CacheExit.Handle(v, e);
                case ExitReason.Wbinvd: return CacheExit.Handle(v, e);
                case ExitReason.Vmcall: return VmcallExit.Handle(v, e);
                case ExitReason.CrAccess: return CrAccessExit.Handle(v, e);
                case ExitReason.IoInstruction: return IoExit.Handle(v, e);
                case ExitReason.Rdmsr: return MsrExit.HandleRead(v, e);
                case ExitReason.Wrmsr: return MsrExit.HandleWrite(v, e);
                case ExitReason.EptViolation: Events.Reinject(v); return EptViolationExit.Handle(v, e);
                case ExitReason.EptMisconfiguration: Events.Reinject(v); return EptMisconfigExit.Handle(v, e);
                case ExitReason.PreemptionTimer: return PreemptionTimerExit.Handle(v, e);
                case ExitReason.Xsetbv: return XsetbvExit.Handle(v, e);
                default:
                    v.Vm.Stop(255, "unhandled VM exit");
                    return ExitAction.Stop;
            }
        }

        /// <summary>An exit whose reason field has a flag bit (VM-entry failure, say) or a basic reason beyond <see cref="ExitReason.Count"/>.</summary>
        private static ExitAction Unusual(Vcpu v, uint exit)
        {
            v.Exits++;
            ExitInfo e = new ExitInfo(exit);
            if (e.Reason < ExitReason.Count)
                v.ExitCounts[e.Reason]++;
            return e.EntryFailed ? EntryFailure(v, e) : Dispatch(v, e);
        }

        private static ExitAction EntryFailure(Vcpu v, in ExitInfo e)
        {
            v.Vm.Stop(255, e.Reason == ExitReason.InvalidGuestState ? "VM entry failed: invalid guest state" : "VM entry failed");
            return ExitAction.Stop;
        }

        /// <summary>Exit reason, qualification and guest registers of a VM the host stopped.</summary>
        private static void Dump(Vcpu v, int reason, ulong qualification)
        {
            GuestRegisters* r = v.Registers;
            ulong f = KvmHost.LogBegin();
            KvmHost.Write("vm ");
            KvmHost.WriteDecimal((ulong)v.Vm.Id);
            KvmHost.Write(": stopped: ");
            KvmHost.Write(v.Vm.StopReason ?? "?");
            KvmHost.Write("\n  exit reason ");
            if (reason < 0)
                KvmHost.Write("(entry instruction failed)");
            else
                KvmHost.WriteDecimal((ulong)reason);
            KvmHost.Write(reason < 0 ? "  VM-instruction error " : "  qualification ");
            KvmHost.WriteHex(qualification);
            KvmHost.Write("\n  rip ");
            KvmHost.WriteHex(Vmcs.Read(VmcsField.GuestRip));
            KvmHost.Write("  rsp ");
            KvmHost.WriteHex(Vmcs.Read(VmcsField.GuestRsp));
            KvmHost.Write("  rflags ");
            KvmHost.WriteHex(Vmcs.Read(VmcsField.GuestRflags));
            KvmHost.Write("  cr0 ");
            KvmHost.WriteHex(Vmcs.Read(VmcsField.GuestCr0));
            KvmHost.Write("\n  cs ");
            KvmHost.WriteHex(Vmcs.Read(VmcsField.GuestCsSelector));
            KvmHost.Write(" base ");
            KvmHost.WriteHex(Vmcs.Read(VmcsField.GuestCsBase));
            KvmHost.Write(" ar ");
            KvmHost.WriteHex(Vmcs.Read(VmcsField.GuestCsAccessRights));
            KvmHost.Write("  vcpu ");
            KvmHost.WriteDecimal((ulong)v.Index);
            KvmHost.Write("\n  rax ");
            KvmHost.WriteHex(r->Rax);
            KvmHost.Write("  rbx ");
            KvmHost.WriteHex(r->Rbx);
            KvmHost.Write("  rcx ");
            KvmHost.WriteHex(r->Rcx);
            KvmHost.Write("  rdx ");
            KvmHost.WriteHex(r->Rdx);
            KvmHost.Write("\n  rsi ");
            KvmHost.WriteHex(r->Rsi);
            KvmHost.Write("  rdi ");
            KvmHost.WriteHex(r->Rdi);
            KvmHost.Write("  rbp ");
            KvmHost.WriteHex(r->Rbp);
            KvmHost.Write("  exits ");
            KvmHost.WriteDecimal(v.Exits);
            KvmHost.WriteChar('\n');
            KvmHost.LogEnd(f);
        }
    }
}

