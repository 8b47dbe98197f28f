namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// Instructions a guest may execute that must fault in it, not end its VM: every VMX
    /// instruction (the guest has no VMX: CPUID hides it), GETSEC, MONITOR and MWAIT (hidden in
    /// CPUID and intercepted, so a guest cannot put the host CPU into a deep sleep) raise #UD, as
    /// on a CPU without those features, from any privilege level; RDPMC (intercepted: no host
    /// performance counter reaches a guest) raises #GP(0), as for a counter that does not exist.
    /// RIP stays on the instruction, as the fault requires.
    /// </summary>
    internal static class FaultingInstructionExit
    {
        public static ExitAction InvalidOpcode(Vcpu v, in ExitInfo e)
        {
            v.InstructionFaults++;
            Events.InjectException(v, Events.InvalidOpcode, 0);
            return ExitAction.Resume;
        }

        public static ExitAction Rdpmc(Vcpu v, in ExitInfo e)
        {
            v.InstructionFaults++;
            Events.InjectException(v, Events.GeneralProtection, 0);
            return ExitAction.Resume;
        }
    }
}
