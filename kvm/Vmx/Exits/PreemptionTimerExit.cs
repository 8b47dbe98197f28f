namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// VMX-preemption timer (exit reason 52): the guest used its quantum, or a device event is due
    /// (the next entry polls the devices, <see cref="Events.BeforeEntry"/>). A guest that runs past
    /// its budget (<see cref="Vm.MaxQuanta"/> full quanta of time) is stopped as runaway.
    /// </summary>
    internal static unsafe class PreemptionTimerExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            KvmHost.PollInterrupts();      // the host's scheduler gets a look on every quantum (guest-mode preemption)
            Events.PollConsole(v);
            if (Events.ChargeBudget(v))
            {
                v.Vm.Stop(255, "guest ran past its time budget without finishing");
                return ExitAction.Stop;
            }
            return ExitAction.Resume;
        }
    }
}
