namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>VMCALL (exit reason 18): hypercall 0 is "ping" (rax = 0 back); others return -1 (unknown).</summary>
    internal static unsafe class VmcallExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            v.Registers->Rax = v.Registers->Rax == 0 ? 0 : ulong.MaxValue;
            e.Skip();
            return ExitAction.Resume;
        }
    }
}
