using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx
{
    /// <summary>What the run loop does after an exit handler.</summary>
    public enum ExitAction
    {
        Resume,
        Stop,
    }

    /// <summary>The exit fields every handler needs, read once per exit.</summary>
    public struct ExitInfo
    {
        public int Reason;
        public ulong Qualification;
        public ulong InstructionLength;
        public ulong Rip;

        public static ExitInfo Read()
        {
            ExitInfo e;
            e.Reason = (int)(Vmcs.Read(VmcsField.ExitReason) & 0xFFFF);
            e.Qualification = Vmcs.Read(VmcsField.ExitQualification);
            e.InstructionLength = Vmcs.Read(VmcsField.ExitInstructionLength);
            e.Rip = Vmcs.Read(VmcsField.GuestRip);
            return e;
        }

        /// <summary>Moves the guest past the instruction that exited.</summary>
        public readonly void Skip() => Vmcs.Write(VmcsField.GuestRip, Rip + InstructionLength);
    }
}
