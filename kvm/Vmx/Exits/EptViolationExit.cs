using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// EPT violation (exit reason 48): fault the guest page in through the VM's guest memory, or,
    /// on a device page outside RAM, emulate the instruction against the device (<see cref="MmioExit"/>).
    /// </summary>
    internal static class EptViolationExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            ulong gpa = Vmcs.Read(VmcsField.GuestPhysicalAddress);
            if (gpa >= v.Vm.Memory.Size && MmioExit.IsDevice(v, gpa))
                return MmioExit.Handle(v, gpa);
            string? problem = v.Vm.Memory.HandleViolation(gpa, e.Qualification);
            if (problem == null)
                return ExitAction.Resume;               // retry the access; no RIP change
            v.Vm.Stop(255, problem);
            return ExitAction.Stop;
        }
    }
}
