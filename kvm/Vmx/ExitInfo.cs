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
    /// The exit reason, which the entry stub reads right after the exit (<see cref="Native.VmRun"/>
    /// returns it); the other exit fields are read only by the handlers that need them (each VMREAD
    /// is on the hot path of every exit).
    /// </summary>
    public readonly struct ExitInfo
    {
        public readonly int Reason;
        public readonly bool EntryFailed;

        /// <summary>From the exit-reason field (SDM Vol. 3C 28.2.1: basic reason in bits 15:0, bit 31 = VM-entry failure).</summary>
        public ExitInfo(uint raw)
        {
            Reason = (int)(raw & 0xFFFF);
            EntryFailed = (raw & (1u << 31)) != 0;
        }

        /// <summary>An ordinary exit: <paramref name="reason"/> is the whole exit-reason field (no flag bits).</summary>
        public ExitInfo(int reason)
        {
            Reason = reason;
            EntryFailed = false;
        }

        /// <summary>The exit qualification (SDM Vol. 3C 28.2.1).</summary>
        public ulong Qualification => Vmcs.Read(VmcsField.ExitQualification);

        /// <summary>Moves the guest past the instruction that exited (guest RIP += exit instruction length).</summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public void Skip()
        {
            if (Native.VmxSkipInstruction() != 0)
                SkipFailed();
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        private static void SkipFailed() => throw new System.InvalidOperationException("advancing the guest RIP failed");
    }
}
