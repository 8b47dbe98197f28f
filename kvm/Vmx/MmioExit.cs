using Tandem.Arch.X86;
using Tandem.Kvm.Devices;
using Tandem.Kvm.Mmio;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// An EPT violation on a device page: the exit names the address but not the operand, so the
    /// instruction at CS:RIP is fetched through the guest's own page tables, decoded and executed
    /// against the device (kvm/Mmio, docs/mmio.md), and RIP moves past it. An instruction the
    /// decoder refuses, or a fetch that faults, stops that VM with a dump of the instruction bytes,
    /// RIP and the address; the host never stops.
    /// </summary>
    internal static unsafe class MmioExit
    {
        /// <summary>The guest's physical memory for the instruction fetch and page walks.</summary>
        private readonly struct GuestReader : IGuestPhysicalReader
        {
            private readonly IGuestMemory _memory;

            public GuestReader(IGuestMemory memory) { _memory = memory; }

            public bool Read(ulong gpa, System.Span<byte> destination)
            {
                fixed (byte* p = destination)
                    return _memory.Read(gpa, p, (ulong)destination.Length);
            }
        }

        /// <summary>Data accesses: a device's page, or guest RAM (a movs between RAM and a device).</summary>
        private readonly struct Bus : IMmioBus
        {
            private readonly Vm _vm;
            private readonly int _cpu;

            public Bus(Vm vm, int cpu) { _vm = vm; _cpu = cpu; }

            public bool Read(ulong gpa, int size, out ulong value)
            {
                IMmioDevice? d = _vm.Platform.FindMmio(_cpu, gpa, size, out ulong offset);
                if (d != null)
                {
                    _vm.Platform.Lock.Enter();
                    value = d.Read(offset, size);
                    _vm.Platform.Lock.Exit();
                    return true;
                }
                ulong v = 0;
                bool ok = _vm.Memory.Read(gpa, (byte*)&v, (ulong)size);
                value = v;
                return ok;
            }

            public bool Write(ulong gpa, int size, ulong value)
            {
                IMmioDevice? d = _vm.Platform.FindMmio(_cpu, gpa, size, out ulong offset);
                if (d != null)
                {
                    _vm.Platform.Lock.Enter();
                    d.Write(offset, size, value);
                    _vm.Platform.Lock.Exit();
                    return true;
                }
                return _vm.Memory.Write(gpa, (byte*)&value, (ulong)size);
            }
        }

        /// <summary>True if <paramref name="gpa"/> is on a device page of <paramref name="v"/>'s VM.</summary>
        public static bool IsDevice(Vcpu v, ulong gpa) => v.Platform.FindMmio(v.Index, gpa, 1, out _) != null;

        public static ExitAction Handle(Vcpu v, ulong gpa)
        {
            MmioVcpuState cpu = default;
            cpu.Rip = Vmcs.Read(VmcsField.GuestRip);
            cpu.Rsp = Vmcs.Read(VmcsField.GuestRsp);
            cpu.Rflags = Vmcs.Read(VmcsField.GuestRflags);
            ulong csAccess = Vmcs.Read(VmcsField.GuestCsAccessRights);
            cpu.Paging.Cr0 = Vmcs.GuestVisibleCr0();       // PE/PG are the guest's: not in the shadow
            cpu.Paging.Cr3 = Vmcs.Read(VmcsField.GuestCr3);
            cpu.Paging.Cr4 = Vmcs.GuestVisibleCr4();
            cpu.Paging.Efer = Vmcs.Read(VmcsField.GuestIa32Efer);
            cpu.Paging.Cpl = (byte)((csAccess >> 5) & 3);
            bool long64 = (cpu.Paging.Efer & GuestPagingState.EferLma) != 0 && (csAccess & (1UL << 13)) != 0;
            bool protectedMode = (cpu.Paging.Cr0 & 1) != 0;
            cpu.Mode = long64 ? CpuMode.Bits64 : protectedMode && (csAccess & (1UL << 14)) != 0 ? CpuMode.Bits32 : CpuMode.Bits16;
            cpu.EsBase = Vmcs.Read(VmcsField.GuestEsBase);
            cpu.CsBase = Vmcs.Read(VmcsField.GuestCsBase);
            cpu.SsBase = Vmcs.Read(VmcsField.GuestSsBase);
            cpu.DsBase = Vmcs.Read(VmcsField.GuestDsBase);
            cpu.FsBase = Vmcs.Read(VmcsField.GuestFsBase);
            cpu.GsBase = Vmcs.Read(VmcsField.GuestGsBase);

            var bus = new Bus(v.Vm, v.Index);
            var memory = new GuestReader(v.Vm.Memory);
            byte* bytes = stackalloc byte[16];
            MmioStatus status = MmioEmulator.Step(ref bus, ref memory, ref *v.Registers, ref cpu, new System.Span<byte>(bytes, 15),
                out int count, out MmioInstruction _, out MmioDecodeStatus decode, out GuestWalkStatus _, out ulong _);
            v.MmioExits++;
            if (status == MmioStatus.Done || status == MmioStatus.Partial)
            {
                // Partial: a long REP string op did a slice; RIP stays and the guest re-executes it.
                Vmcs.Write(VmcsField.GuestRip, cpu.Rip);
                Vmcs.Write(VmcsField.GuestRsp, cpu.Rsp);
                Vmcs.Write(VmcsField.GuestRflags, cpu.Rflags);
                if (status == MmioStatus.Done)
                    Events.EndInterruptShadow();
                v.EntryWork = true;          // a device may have changed
                return ExitAction.Resume;
            }
            v.Vm.Stop(255, status == MmioStatus.Refused ? "an MMIO instruction Tandem does not emulate" : "an MMIO access Tandem could not complete");
            ulong f = KvmHost.LogBegin();
            KvmHost.Write("vm ");
            KvmHost.WriteDecimal((ulong)v.Vm.Id);
            KvmHost.Write(": MMIO at gpa ");
            KvmHost.WriteHex(gpa);
            KvmHost.Write(", rip ");
            KvmHost.WriteHex(cpu.Rip);
            KvmHost.Write(", status ");
            KvmHost.WriteDecimal((ulong)status);
            KvmHost.Write(", decoder ");
            KvmHost.WriteDecimal((ulong)decode);
            KvmHost.Write(", bytes");
            for (int i = 0; i < count; i++)
            {
                KvmHost.WriteChar(' ');
                KvmHost.WriteChar(Hex(bytes[i] >> 4));
                KvmHost.WriteChar(Hex(bytes[i] & 15));
            }
            KvmHost.WriteChar('\n');
            KvmHost.LogEnd(f);
            return ExitAction.Stop;
        }

        private static char Hex(int n) => (char)(n < 10 ? '0' + n : 'a' + n - 10);
    }
}
