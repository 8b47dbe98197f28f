using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// VMX-preemption timer (exit reason 52): the guest used its quantum. Re-arm it; a guest that
    /// never finishes is stopped after <see cref="Vm.MaxQuanta"/> quanta.
    /// </summary>
    internal static class PreemptionTimerExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            if (v.ExitCount(ExitReason.PreemptionTimer) > v.Vm.MaxQuanta)
            {
                v.Vm.Stop(255, "guest ran past its time budget without finishing");
                return ExitAction.Stop;
            }
            Vmcs.Write(VmcsField.PreemptionTimerValue, VmcsSetup.PreemptionQuantum);
            return ExitAction.Resume;
        }
    }
}
