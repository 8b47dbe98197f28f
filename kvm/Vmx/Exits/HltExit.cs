using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// HLT (exit reason 12). With interrupts enabled the vCPU blocks until an interrupt is pending
    /// (<see cref="Events.Halt"/>). With interrupts disabled nothing could ever wake it (there are
    /// no virtual NMIs or INIT yet), so the VM stops with that reason instead of hanging.
    /// </summary>
    internal static class HltExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            e.Skip();
            Events.EndInterruptShadow();
            if ((Vmcs.Read(VmcsField.GuestRflags) & (1UL << 9)) == 0)
            {
                v.Vm.Stop(255, "the guest halted with interrupts disabled (cli; hlt): nothing can wake it");
                return ExitAction.Stop;
            }
            return Events.Halt(v);
        }
    }
}
