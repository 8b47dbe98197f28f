namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// NMI window (exit reason 8): the guest no longer blocks NMIs (its NMI handler returned, or an
    /// STI or MOV SS shadow ended); the next entry injects the waiting NMI (<see cref="Events.BeforeEntry"/>).
    /// </summary>
    internal static class NmiWindowExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            Events.SetNmiWindow(v, false);
            v.EntryWork = true;
            return ExitAction.Resume;
        }
    }
}
