using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>XSETBV (exit reason 55): XSAVE is hidden from guests, so the instruction gets #UD (vector 6).</summary>
    internal static class XsetbvExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            // VM-entry interruption information: valid, hardware exception, vector 6 (SDM 25.8.3).
            Vmcs.Write(VmcsField.EntryInterruptionInfo, 0x8000_0306);
            return ExitAction.Resume;
        }
    }
}
