namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// External interrupt (exit reason 1). The interrupt is not acknowledged on exit, so it stays
    /// pending and the host takes it through its IDT when this handler briefly opens interrupts (the
    /// run loop also opens them before every 8th entry, for interrupts that came while exits were
    /// handled).
    /// </summary>
    internal static unsafe class ExternalInterruptExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            KvmHost.PollInterrupts();      // the host's IDT takes the pending interrupt here
            Events.PollConsole(v);         // the host's tick is also when typed input reaches the VM
            return ExitAction.Resume;
        }
    }
}
