using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// VMCALL (exit reason 18): Tandem's hypercalls. The number is in RAX, the result comes back in
    /// RAX, RIP moves past the VMCALL; every other register is left as it was (docs/guests.md,
    /// "Hypercalls").
    /// <list type="table">
    /// <item><term>0, ping</term><description>RAX = 0 back.</description></item>
    /// <item><term>1, yield</term><description>The host takes its pending interrupts, then the vCPU's
    /// thread gives its physical CPU to a thread queued for it, if there is one (<see cref="KvmHost.Yield"/>, the scheduler's yield), and the
    /// guest resumes when the thread runs again; RAX = 0 back. With nothing queued it returns at once.
    /// The SMP benchmark guest yieldbench32 passes the TSC it read just before the VMCALL in ESI:EDI
    /// for the host's bench (<see cref="VcpuBench"/>); the hypercall itself ignores them.</description></item>
    /// <item><term>anything else</term><description>RAX = -1 (unknown hypercall).</description></item>
    /// </list>
    /// Only ring 0 may call: at CPL != 0 (SS.DPL, as KVM reads it) the host does nothing, counts it in
    /// <see cref="Vcpu.RefusedHypercalls"/> and returns RAX = -2 (not permitted, KVM's -KVM_EPERM),
    /// so a guest's user programs cannot reach the host.
    /// </summary>
    internal static unsafe class VmcallExit
    {
        public const ulong Ping = 0, Yield = 1;

        /// <summary>RAX back for a hypercall made at CPL != 0: -2, not permitted.</summary>
        public const ulong NotPermitted = unchecked((ulong)-2L);

        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            GuestRegisters* r = v.Registers;
            ulong number = r->Rax;
            e.Skip();                                  // before the yield: this VMCS is current now
            // CPL = SS.DPL (CS.DPL differs for conforming code): ring 1-3 and virtual-8086 code refused.
            if (((Vmcs.Read(VmcsField.GuestSsAccessRights) >> 5) & 3) != 0)
            {
                v.RefusedHypercalls++;
                r->Rax = NotPermitted;
                return ExitAction.Resume;
            }
            if (number == Yield)
            {
                r->Rax = 0;
                // A voluntary scheduling point: let the host's pending interrupts in first (its tick
                // may have made a sleeper runnable here). A guest that exits this often never gets a
                // preemption-timer exit, and Bochs does not exit for a host interrupt while the guest
                // runs with IF=0, so without this a yield loop would starve this CPU's timer.
                KvmHost.PollInterrupts();
                VcpuBench? bench = v.Bench;
                if (bench != null)
                    bench.BeforeYield(v);
                if (KvmHost.Yield != null)
                    KvmHost.Yield();                   // the switch-in hook makes our VMCS current again
                if (bench != null)
                    bench.AfterYield(v);
                return ExitAction.Resume;
            }
            r->Rax = number == Ping ? 0 : ulong.MaxValue;
            return ExitAction.Resume;
        }
    }
}
