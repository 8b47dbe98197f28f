namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>EPT misconfiguration (exit reason 49): a host bug in the EPT tables; this VM stops.</summary>
    internal static class EptMisconfigExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            v.Vm.Stop(255, "EPT misconfiguration (host bug in the EPT tables)");
            return ExitAction.Stop;
        }
    }
}
