namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>HLT (exit reason 12): there are no virtual interrupts yet, so the guest simply continues.</summary>
    internal static class HltExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            e.Skip();
            return ExitAction.Resume;
        }
    }
}
