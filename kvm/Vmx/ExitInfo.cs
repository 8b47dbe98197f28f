using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx
{
    /// <summary>What the run loop does after an exit handler.</summary>
    public enum ExitAction
    {
        Resume,
        Stop,
    }

    /// <summary>
    /// The exit reason, read once per exit; the other exit fields are read only by the handlers
    /// that need them (each VMREAD is on the hot path of every exit).
    /// </summary>
    public readonly struct ExitInfo
    {
        public readonly int Reason;
        public readonly bool EntryFailed;

        private ExitInfo(ulong raw)
        {
            Reason = (int)(raw & 0xFFFF);
            EntryFailed = (raw & (1UL << 31)) != 0;
        }

        public static ExitInfo Read() => new ExitInfo(Vmcs.Read(VmcsField.ExitReason));

        /// <summary>The exit qualification (SDM Vol. 3C 28.2.1).</summary>
        public ulong Qualification => Vmcs.Read(VmcsField.ExitQualification);

        /// <summary>Moves the guest past the instruction that exited (guest RIP += exit instruction length).</summary>
        public void Skip()
        {
            if (Native.VmxSkipInstruction() != 0)
                throw new System.InvalidOperationException("advancing the guest RIP failed");
        }
    }
}
