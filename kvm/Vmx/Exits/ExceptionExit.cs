using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>Exception or NMI (exit reason 0): only NMIs exit (the exception bitmap is empty); the host handles them.</summary>
    internal static unsafe class ExceptionExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            ulong info = Vmcs.Read(VmcsField.ExitInterruptionInfo);
            if (((info >> 8) & 7) == 2)
            {
                KvmHost.HandleNmi();
                return ExitAction.Resume;
            }
            v.Vm.Stop(255, "unexpected guest exception exit");
            return ExitAction.Stop;
        }
    }
}
