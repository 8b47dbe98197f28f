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
        /// <summary>Runs <paramref name="vcpu"/> on the current CPU. Returns when the VM stopped or paused.</summary>
        public static void Run(Vcpu vcpu)
        {
            Vm vm = vcpu.Vm;
            vcpu.MakeCurrent();
            // This CPU may cache the VM's EPT translations from the first entry on: it must be in
            // the EPT's CPU mask before it, or a remote INVEPT would skip it. Once per Run is
            // enough: the vCPU stays on this CPU until Run returns, and a bit is never cleared.
            vm.Memory.ActivateOn(KvmHost.CurrentCpu());
            VmcsSetup.WriteHostState();
            vm.PauseRequested = false;
            vcpu.ChargedUntil = Native.Rdtsc();
            while (!vm.Stopped && !vm.PauseRequested)
            {
                Events.BeforeEntry(vcpu);
                int status = Native.VmRunFx(vcpu.Registers, vcpu.Launched ? 1 : 0, vcpu.FxArea);
                if (status != 0)
                {
                    ulong error = 0;
                    if (status == 2)
                        Native.VmRead(VmcsField.InstructionError, &error);
                    vm.Stop(255, status == 1 ? "VM entry failed (VMfailInvalid)" : "VM entry failed (VMfailValid)");
                    Dump(vcpu, -1, error);
                    return;
                }
                vcpu.Launched = true;
                vcpu.Exits++;
                ExitInfo e = ExitInfo.Read();
                if (e.Reason < ExitReason.Count)
                    vcpu.ExitCounts[e.Reason]++;
                ExitAction action = e.EntryFailed ? EntryFailure(vcpu, e) : Dispatch(vcpu, e);
                if (action == ExitAction.Stop)
                {
                    if (vm.StopReason != null)
                        Dump(vcpu, e.Reason, e.Qualification);
                    break;
                }
            }
            Events.ChargeBudget(vcpu);
            vm.FlushSerial();
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
