using System.Runtime.InteropServices;

namespace Tandem.Kvm.Vmx
{
    /// <summary>The guest registers the VM-entry stub loads and the exit stub saves (tools/StubGen/Stubs/VmRun.cs).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct GuestRegisters
    {
        /// <summary>The general registers except rsp (and CR2), in the stub's save order.</summary>
        public ulong Rax, Rbx, Rcx, Rdx, Rsi, Rdi, Rbp, R8, R9, R10, R11, R12, R13, R14, R15, Cr2;

        /// <summary>
        /// Not guest state: the entry stub's own two words. <see cref="HostRsp"/> is the HOST_RSP value
        /// last written to the vCPU's VMCS, with HOST_RIP (0: none yet; the stub writes both only when
        /// its stack pointer differs). <see cref="Launched"/> is nonzero once VMLAUNCH succeeded; the host
        /// clears it after a VMCLEAR, and the next entry is then a VMLAUNCH.
        /// </summary>
        public ulong HostRsp, Launched;

        /// <summary>Where the guest's FXSAVE area (512 bytes, 16-byte aligned) is, from the registers' address (the stub loads and saves it there).</summary>
        public const int FxAreaOffset = 1024;

        /// <summary>General register by the SDM's encoding (0 = rax ... 15 = r15); rsp (4) lives in the VMCS.</summary>
        [System.Diagnostics.CodeAnalysis.UnscopedRef]
        public ref ulong ByIndex(int index)
        {
            switch (index)
            {
                case 0: return ref Rax;
                case 1: return ref Rcx;
                case 2: return ref Rdx;
                case 3: return ref Rbx;
                case 5: return ref Rbp;
                case 6: return ref Rsi;
                case 7: return ref Rdi;
                case 8: return ref R8;
                case 9: return ref R9;
                case 10: return ref R10;
                case 11: return ref R11;
                case 12: return ref R12;
                case 13: return ref R13;
                case 14: return ref R14;
                default: return ref R15;
            }
        }
    }
}
