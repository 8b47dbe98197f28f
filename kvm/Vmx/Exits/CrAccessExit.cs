using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// Control-register access (exit reason 28; qualification per SDM table 28-3): a MOV to CR0 or
    /// CR4 that touched a bit VMX owns. The guest's value goes to the read shadow; the real
    /// register gets it with the VMX-fixed bits forced on.
    /// </summary>
    internal static unsafe class CrAccessExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            ulong qualification = e.Qualification;
            int cr = (int)(qualification & 15);
            int type = (int)((qualification >> 4) & 3);
            int gpr = (int)((qualification >> 8) & 15);
            if (type != 0 || (cr != 0 && cr != 4))
            {
                v.Vm.Stop(255, "unsupported control-register access");
                return ExitAction.Stop;
            }
            ulong value = gpr == 4 ? Vmcs.Read(VmcsField.GuestRsp) : v.Registers->ByIndex(gpr);
            if (cr == 0)
            {
                Vmcs.Write(VmcsField.Cr0ReadShadow, value);
                Vmcs.Write(VmcsField.GuestCr0, value | Vmcs.Read(VmcsField.Cr0GuestHostMask));
            }
            else
            {
                Vmcs.Write(VmcsField.Cr4ReadShadow, value);
                Vmcs.Write(VmcsField.GuestCr4, value | Vmcs.Read(VmcsField.Cr4GuestHostMask));
            }
            e.Skip();
            return ExitAction.Resume;
        }
    }
}
