using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>Interrupt window (exit reason 7): nothing to inject yet; turn the window exiting off again.</summary>
    internal static class InterruptWindowExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            Vmcs.Write(VmcsField.ProcBasedControls, Vmcs.Read(VmcsField.ProcBasedControls) & ~(1UL << 2));
            return ExitAction.Resume;
        }
    }
}
