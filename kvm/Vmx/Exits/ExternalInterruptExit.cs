namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// External interrupt (exit reason 1). The interrupt is not acknowledged on exit, so it stays
    /// pending and the host takes it through its IDT when the run loop opens interrupts.
    /// </summary>
    internal static class ExternalInterruptExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e) => ExitAction.Resume;
    }
}
