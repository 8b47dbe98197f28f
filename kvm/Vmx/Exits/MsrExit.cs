using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// RDMSR and WRMSR (exit reasons 31 and 32; every MSR exits through the all-ones bitmap).
    /// EFER is the VMCS's copy; other MSRs read as 0 and writes are dropped, so a guest can never
    /// reach the host's MSRs.
    /// </summary>
    internal static unsafe class MsrExit
    {
        private const uint Efer = 0xC000_0080;

        public static ExitAction HandleRead(Vcpu v, in ExitInfo e)
        {
            GuestRegisters* r = v.Registers;
            uint msr = (uint)r->Rcx;
            ulong value = msr == Efer ? Vmcs.Read(VmcsField.GuestIa32Efer) : 0;
            r->Rax = (uint)value;
            r->Rdx = value >> 32;
            e.Skip();
            return ExitAction.Resume;
        }

        public static ExitAction HandleWrite(Vcpu v, in ExitInfo e)
        {
            GuestRegisters* r = v.Registers;
            uint msr = (uint)r->Rcx;
            ulong value = (r->Rdx << 32) | (uint)r->Rax;
            if (msr == Efer)
            {
                // Keep LMA as the CPU maintains it; the guest controls LME, NXE, SCE.
                ulong current = Vmcs.Read(VmcsField.GuestIa32Efer);
                Vmcs.Write(VmcsField.GuestIa32Efer, (value & ~(1UL << 10)) | (current & (1UL << 10)));
            }
            e.Skip();
            return ExitAction.Resume;
        }
    }
}
