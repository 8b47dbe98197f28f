using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// EPT violation (exit reason 48): fault the guest page in through the VM's guest memory (its
    /// RAM, or memory shared into it above RAM), or, outside them, emulate the instruction (<see cref="MmioExit"/>) against the device there or,
    /// where there is none, as an unassigned access (reads all ones, writes dropped). Nothing
    /// outside RAM is ever mapped in the EPT, so every such access exits. An instruction fetch or a
    /// guest page walk outside RAM cannot be emulated and stops the VM with a dump.
    /// </summary>
    internal static class EptViolationExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            ulong gpa = Vmcs.Read(VmcsField.GuestPhysicalAddress);
            if (gpa >= v.Vm.Memory.Size && !v.Vm.Memory.Maps(gpa))
                return MmioExit.Handle(v, gpa);
            string? problem = v.Vm.Memory.HandleViolation(gpa, e.Qualification);
            if (problem == null)
                return ExitAction.Resume;               // retry the access; no RIP change
            v.Vm.Stop(255, problem);
            return ExitAction.Stop;
        }
    }
}
