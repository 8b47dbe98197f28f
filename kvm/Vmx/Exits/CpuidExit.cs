using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// CPUID (exit reason 10): one consistent machine. The host's answer, with every feature the
    /// guest cannot use removed (VMX, SMX, XSAVE, MONITOR/MWAIT, the debug-store and thermal
    /// features, INVPCID and RDTSCP, whose VMX controls are off and which would raise #UD, PT,
    /// SGX, WAITPKG), the local APIC with x2APIC and the TSC-deadline timer (emulated), the vCPU's own APIC
    /// ID and a package of one logical processor, the hypervisor bit and Tandem's leaf
    /// 0x40000000 ("TandemTandem"), and the TSC frequency in leaves 0x15 and 0x16 (Linux needs a
    /// TSC frequency source). Basic leaves above 0x16 (the maximum leaf 0 reports; 0x1F excepted)
    /// answer like 0x16, as hardware answers like its highest basic leaf.
    /// </summary>
    /// <remarks>
    /// The answers of the basic leaves that have no subleaves and never change (<see cref="CachedLeaves"/>:
    /// 0, 1, 2, 3, 5, 6, 0xA, 0x15, 0x16) are computed once, when the vCPU is made
    /// (<see cref="FillCache"/>), and kept in its register page (<see cref="Vcpu.CpuidCache"/>): an exit
    /// for one of them copies four registers, with no CPUID on the host (which costs a VM exit of its
    /// own when Tandem itself runs nested). The host's answers to them are the same on every CPU and at
    /// any time, and those parts of Tandem's that are not (the APIC ID, the TSC frequency) are fixed per
    /// vCPU from the start. Every other leaf is answered at the exit, as before.
    /// </remarks>
    internal static unsafe class CpuidExit
    {
        public const uint HypervisorLeaf = 0x4000_0000;

        /// <summary>The highest basic leaf the guest is offered (the TSC frequency leaves).</summary>
        public const uint MaxBasicLeaf = 0x16;

        /// <summary>Bit n set: basic leaf n (below <see cref="CacheSize"/>) is answered from the cache.</summary>
        public const uint CachedLeaves = (1u << 0) | (1u << 1) | (1u << 2) | (1u << 3) | (1u << 5) | (1u << 6)
            | (1u << 0xA) | (1u << 0x15) | (1u << 0x16);

        /// <summary>Cache slots: one per basic leaf up to the highest the guest is offered (0x16).</summary>
        public const int CacheSize = 0x17;

        /// <summary>A cached answer, laid out as the guest's RAX, RBX, RCX and RDX in <see cref="GuestRegisters"/>.</summary>
        public struct Answer4
        {
            public ulong Rax, Rbx, Rcx, Rdx;
        }

        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            GuestRegisters* r = v.Registers;
            uint leaf = (uint)r->Rax;
            if (leaf < CacheSize && ((CachedLeaves >> (int)leaf) & 1) != 0)
                *(Answer4*)r = v.CpuidCache[leaf];       // RAX, RBX, RCX, RDX: the first four registers
            else
                AnswerNow(v, r, leaf);
            e.Skip();
            return ExitAction.Resume;
        }

        private static void AnswerNow(Vcpu v, GuestRegisters* r, uint leaf)
        {
            CpuIdResult c = Answer(v, leaf, (uint)r->Rcx);
            r->Rax = c.Eax;
            r->Rbx = c.Ebx;
            r->Rcx = c.Ecx;
            r->Rdx = c.Edx;
        }

        /// <summary>Computes the cached answers of a new vCPU (its APIC ID is set).</summary>
        public static void FillCache(Vcpu v)
        {
            for (uint leaf = 0; leaf < CacheSize; leaf++)
            {
                if (((CachedLeaves >> (int)leaf) & 1) == 0)
                    continue;
                CpuIdResult c = Answer(v, leaf, 0);
                Answer4* a = v.CpuidCache + leaf;
                a->Rax = c.Eax;
                a->Rbx = c.Ebx;
                a->Rcx = c.Ecx;
                a->Rdx = c.Edx;
            }
        }

        private static CpuIdResult Answer(Vcpu v, uint leaf, uint subleaf)
        {
            CpuIdResult c;
            if (leaf >= HypervisorLeaf && leaf < HypervisorLeaf + 0x100)
            {
                c.Eax = leaf == HypervisorLeaf ? HypervisorLeaf : 0;
                c.Ebx = leaf == HypervisorLeaf ? 0x646E6154u : 0;   // "TandemTandem"
                c.Ecx = leaf == HypervisorLeaf ? 0x546D6564u : 0;
                c.Edx = leaf == HypervisorLeaf ? 0x6D65646Eu : 0;
                return c;
            }
            // Tandem offers basic leaves up to 0x16 (leaf 0 says so): a higher one, short of the
            // extended range, answers like 0x16, as hardware answers like its highest basic leaf.
            // Passed on, it would hand the guest the host CPU's raw answer (0x1F, the extended
            // topology, keeps its own answer below).
            if (leaf > MaxBasicLeaf && leaf < 0x8000_0000 && leaf != 0x1F)
            {
                leaf = MaxBasicLeaf;
                subleaf = 0;
            }
            c = Native.CpuId(leaf, subleaf);
            switch (leaf)
            {
                case 0:
                    c.Eax = MaxBasicLeaf;                               // up to the TSC frequency leaves; higher ones are not offered
                    break;
                case 1:
                    // ECX: no DTES64 (2), MONITOR (3), DS-CPL (4), VMX (5), SMX (6), EST (7), TM2 (8),
                    // PDCM (15), XSAVE (26), OSXSAVE (27); + x2APIC (21), TSC-deadline (24), hypervisor (31).
                    c.Ecx &= ~((1u << 2) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 7) | (1u << 8)
                        | (1u << 15) | (1u << 26) | (1u << 27));
                    c.Ecx |= (1u << 21) | (1u << 24) | (1u << 31);
                    // EDX: the APIC (9); no DS (21), ACPI thermal (22), TM (29), PBE (31).
                    c.Edx &= ~((1u << 21) | (1u << 22) | (1u << 29) | (1u << 31));
                    c.Edx |= 1u << 9;
                    // EBX: APIC ID (31:24) = the vCPU's, one logical processor (23:16), CLFLUSH size kept.
                    c.Ebx = (c.Ebx & 0xFFFF) | (1u << 16) | ((uint)v.ApicId << 24);
                    c.Edx &= ~(1u << 28);                              // no HTT: one logical processor per package
                    break;
                case 4:
                    // Cache topology: one core, one thread sharing each cache.
                    c.Eax &= 0x3FF;
                    break;
                case 5:
                case 6:
                case 0xA:
                    c = default;                                        // MONITOR, power, perfmon: none
                    break;
                case 7:
                    if (subleaf == 0)
                    {
                        // EBX: no SGX (2), INVPCID (10), PQM (12), PQE (15), PT (25); ECX: no PKU or OSPKE (3, 4:
                        // PKRU is not switched and CR4.PKE is refused), WAITPKG (5), SGX-LC (30), PKS (31);
                        // EDX: no hybrid or architectural LBR bits that would need MSRs (15, 19).
                        c.Ebx &= ~((1u << 2) | (1u << 10) | (1u << 12) | (1u << 15) | (1u << 25));
                        c.Ecx &= ~((1u << 3) | (1u << 4) | (1u << 5) | (1u << 30) | (1u << 31));
                        c.Edx &= ~((1u << 15) | (1u << 19));
                    }
                    else
                    {
                        c = default;
                    }
                    break;
                case 0xB:
                case 0x1F:
                    // Extended topology: one thread, one core; x2APIC ID = the vCPU's.
                    c = default;
                    if (subleaf == 0)
                    {
                        c.Ebx = 1;
                        c.Ecx = 0x100;
                    }
                    else if (subleaf == 1)
                    {
                        c.Ebx = 1;
                        c.Ecx = 0x201;
                    }
                    else
                    {
                        c.Ecx = subleaf & 0xFF;
                    }
                    c.Edx = (uint)v.ApicId;
                    break;
                case 0xD:
                case 0x12:
                case 0x14:
                    c = default;                                        // XSAVE, SGX, PT: none
                    break;
                case 0x15:
                    // TSC = crystal * EBX / EAX: report the calibrated TSC as the crystal, ratio 1.
                    c.Eax = 1;
                    c.Ebx = 1;
                    c.Ecx = (uint)(KvmHost.TscPerSecond > uint.MaxValue ? 0 : KvmHost.TscPerSecond);
                    c.Edx = 0;
                    break;
                case 0x16:
                    c.Eax = (uint)(KvmHost.TscPerSecond / 1_000_000);     // base MHz
                    c.Ebx = c.Eax;
                    c.Ecx = 100;
                    c.Edx = 0;
                    break;
                case 0x8000_0001:
                    c.Edx &= ~(1u << 27);                               // no RDTSCP (its VMX control is off)
                    break;
            }
            return c;
        }
    }
}
