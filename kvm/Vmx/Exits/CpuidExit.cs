using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>CPUID (exit reason 10): the host's answer, minus VMX and XSAVE, plus the hypervisor bit and leaf.</summary>
    internal static unsafe class CpuidExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            GuestRegisters* r = v.Registers;
            uint leaf = (uint)r->Rax, subleaf = (uint)r->Rcx;
            CpuIdResult c;
            if (leaf == 0x4000_0000)
            {
                c.Eax = 0x4000_0000;
                c.Ebx = 0x646E6154; // "TandemTandem"
                c.Ecx = 0x546D6564;
                c.Edx = 0x6D65646E;
            }
            else
            {
                c = Native.CpuId(leaf, subleaf);
                if (leaf == 1)
                {
                    c.Ecx &= ~((1u << 5) | (1u << 26) | (1u << 27));   // no VMX, XSAVE, OSXSAVE for the guest
                    c.Ecx |= 1u << 31;                                  // running under a hypervisor
                }
            }
            r->Rax = c.Eax;
            r->Rbx = c.Ebx;
            r->Rcx = c.Ecx;
            r->Rdx = c.Edx;
            e.Skip();
            return ExitAction.Resume;
        }
    }
}
