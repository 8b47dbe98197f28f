namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>Triple fault (exit reason 2): the guest is dead; stop this VM only.</summary>
    internal static class TripleFaultExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            v.Vm.Stop(255, "guest triple fault");
            return ExitAction.Stop;
        }
    }
}
