namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>Interrupt window (exit reason 7): the guest can take an interrupt now; the next entry injects it (<see cref="Events.BeforeEntry"/>).</summary>
    internal static class InterruptWindowExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e) => ExitAction.Resume;
    }
}
