using Tandem.Arch.X86;
using Tandem.Kvm.Mmio;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// What the host prints when it stops a VM: the reason, the exit reason by number and name,
    /// the guest's registers, control registers and segments from the VMCS, and the instruction
    /// bytes around RIP (<see cref="CodeLine"/>), fetched through the guest's own page tables and
    /// the VM's memory. docs/debugging.md shows one and how the build driver decodes it.
    /// </summary>
    public static unsafe class StopDump
    {
        /// <summary>
        /// Writes the dump of <paramref name="v"/> (its VMCS current): <paramref name="reason"/> is
        /// the basic exit reason, or -1 when VMLAUNCH/VMRESUME itself failed (then
        /// <paramref name="qualification"/> is the VM-instruction error).
        /// </summary>
        public static void Write(Vcpu v, int reason, ulong qualification)
        {
            GuestRegisters* r = v.Registers;
            MmioVcpuState cpu = MmioExit.ReadState();
            ulong f = KvmHost.LogBegin();
            KvmHost.Write("vm ");
            KvmHost.WriteDecimal((ulong)v.Vm.Id);
            KvmHost.Write(": stopped: ");
            KvmHost.Write(v.Vm.StopReason ?? "?");
            KvmHost.Write("\n  exit reason ");
            if (reason < 0)
            {
                KvmHost.Write("(entry instruction failed)  VM-instruction error ");
            }
            else
            {
                KvmHost.WriteDecimal((ulong)reason);
                KvmHost.Write(" (");
                KvmHost.Write(ExitReason.Name(reason) ?? "unknown");
                KvmHost.Write(")  qualification ");
            }
            KvmHost.WriteHex(qualification);
            Pair("\n  rip ", cpu.Rip);
            Pair("  rsp ", cpu.Rsp);
            Pair("  rflags ", cpu.Rflags);
            KvmHost.Write("  vcpu ");
            KvmHost.WriteDecimal((ulong)v.Index);
            KvmHost.Write("  exits ");
            KvmHost.WriteDecimal(v.Exits);
            Pair("\n  cr0 ", cpu.Paging.Cr0);
            Pair("  cr2 ", r->Cr2);
            Pair("  cr3 ", cpu.Paging.Cr3);
            Pair("  cr4 ", cpu.Paging.Cr4);
            Pair("  efer ", cpu.Paging.Efer);
            KvmHost.Write("  ");
            KvmHost.Write(ModeName(cpu.Mode));
            KvmHost.WriteChar('\n');
            Segment("es", VmcsField.GuestEsSelector, VmcsField.GuestEsBase, VmcsField.GuestEsLimit, VmcsField.GuestEsAccessRights);
            Segment("cs", VmcsField.GuestCsSelector, VmcsField.GuestCsBase, VmcsField.GuestCsLimit, VmcsField.GuestCsAccessRights);
            Segment("ss", VmcsField.GuestSsSelector, VmcsField.GuestSsBase, VmcsField.GuestSsLimit, VmcsField.GuestSsAccessRights);
            Segment("ds", VmcsField.GuestDsSelector, VmcsField.GuestDsBase, VmcsField.GuestDsLimit, VmcsField.GuestDsAccessRights);
            Segment("fs", VmcsField.GuestFsSelector, VmcsField.GuestFsBase, VmcsField.GuestFsLimit, VmcsField.GuestFsAccessRights);
            Segment("gs", VmcsField.GuestGsSelector, VmcsField.GuestGsBase, VmcsField.GuestGsLimit, VmcsField.GuestGsAccessRights);
            Segment("tr", VmcsField.GuestTrSelector, VmcsField.GuestTrBase, VmcsField.GuestTrLimit, VmcsField.GuestTrAccessRights);
            Segment("ldtr", VmcsField.GuestLdtrSelector, VmcsField.GuestLdtrBase, VmcsField.GuestLdtrLimit, VmcsField.GuestLdtrAccessRights);
            Pair("  gdtr base ", Vmcs.Read(VmcsField.GuestGdtrBase));
            Pair(" limit ", Vmcs.Read(VmcsField.GuestGdtrLimit));
            Pair("  idtr base ", Vmcs.Read(VmcsField.GuestIdtrBase));
            Pair(" limit ", Vmcs.Read(VmcsField.GuestIdtrLimit));
            Pair("\n  rax ", r->Rax);
            Pair("  rbx ", r->Rbx);
            Pair("  rcx ", r->Rcx);
            Pair("  rdx ", r->Rdx);
            Pair("\n  rsi ", r->Rsi);
            Pair("  rdi ", r->Rdi);
            Pair("  rbp ", r->Rbp);
            KvmHost.Write("\n  ");
            WriteCode(v, cpu);
            KvmHost.WriteChar('\n');
            KvmHost.LogEnd(f);
        }

        private static void Pair(string label, ulong value)
        {
            KvmHost.Write(label);
            KvmHost.WriteHex(value);
        }

        private static void Segment(string name, ulong selector, ulong baseField, ulong limit, ulong accessRights)
        {
            KvmHost.Write("  ");
            KvmHost.Write(name);
            Pair(" sel ", Vmcs.Read(selector));
            Pair(" base ", Vmcs.Read(baseField));
            Pair(" limit ", Vmcs.Read(limit));
            Pair(" ar ", Vmcs.Read(accessRights));
            KvmHost.WriteChar('\n');
        }

        private static string ModeName(CpuMode mode) =>
            mode == CpuMode.Bits64 ? "64-bit" : mode == CpuMode.Bits32 ? "32-bit" : "16-bit";

        /// <summary>
        /// "code (N-bit): ..." with the bytes around CS:RIP: those from RIP up to the first that does
        /// not translate or read, and before it as many as can be read (at most <see cref="CodeLine.Before"/>).
        /// </summary>
        private static void WriteCode(Vcpu v, in MmioVcpuState cpu)
        {
            bool is64 = cpu.Mode == CpuMode.Bits64;
            ulong linear = is64 ? cpu.Rip : (cpu.CsBase + cpu.Rip) & 0xFFFF_FFFFUL;
            var memory = new MmioExit.GuestReader(v.Vm.Memory);
            byte* bytes = stackalloc byte[CodeLine.Before + CodeLine.After];
            int first = GuestCode.Fetch(ref memory, cpu.Paging, linear, !is64, new System.Span<byte>(bytes, CodeLine.Before + CodeLine.After),
                CodeLine.Before, out int end, out GuestWalkStatus stop);
            KvmHost.Write("code (");
            KvmHost.Write(ModeName(cpu.Mode));
            if (end == CodeLine.Before)
            {
                KvmHost.Write("): unreadable at linear ");
                KvmHost.WriteHex(linear);
                KvmHost.Write(", walk status ");
                KvmHost.WriteDecimal((ulong)stop);
                return;
            }
            KvmHost.Write(")");
            System.Span<char> text = stackalloc char[CodeLine.MaxChars];
            int n = CodeLine.Format(new System.ReadOnlySpan<byte>(bytes + first, end - first), CodeLine.Before - first, text);
            for (int i = 4; i < n; i++)           // after "code", which is written above with the mode
                KvmHost.WriteChar(text[i]);
        }
    }
}
