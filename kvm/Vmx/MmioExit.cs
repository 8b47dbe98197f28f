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
        internal readonly struct GuestReader : IGuestPhysicalReader
        {
            private readonly IGuestMemory _memory;

            public GuestReader(IGuestMemory memory) { _memory = memory; }

            public bool Read(ulong gpa, System.Span<byte> destination)
            {
                fixed (byte* p = destination)
                    return _memory.Read(gpa, p, (ulong)destination.Length);
            }
        }

        /// <summary>
        /// Data accesses: a device's page, guest RAM (a movs between RAM and a device), or neither:
        /// an unassigned address reads as all ones and takes no writes, as on a PC, counted in
        /// <see cref="Vcpu.UnassignedAccesses"/> (docs/security.md, "EPT violations and MMIO").
        /// </summary>
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
                ulong ram = _vm.Memory.Size;
                if (gpa < ram && (ulong)size <= ram - gpa)
                {
                    bool ok = _vm.Memory.Read(gpa, (byte*)&v, (ulong)size);
                    value = v;
                    return ok;
                }
                // Unassigned: no RAM and no device answers, as on a PC's bus: all ones. Bytes
                // below the end of RAM (an access across it) still come from RAM.
                v = ~0UL;
                for (int i = 0; i < size; i++)
                {
                    if (gpa + (ulong)i < ram && !_vm.Memory.Read(gpa + (ulong)i, (byte*)&v + i, 1))
                    {
                        value = 0;
                        return false;
                    }
                }
                value = size == 8 ? v : v & ((1UL << (8 * size)) - 1);
                Unassigned(gpa, write: false);
                return true;
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
                ulong ram = _vm.Memory.Size;
                if (gpa < ram && (ulong)size <= ram - gpa)
                    return _vm.Memory.Write(gpa, (byte*)&value, (ulong)size);
                // Unassigned: the bytes past the end of RAM go nowhere; those below it are written.
                for (int i = 0; i < size; i++)
                {
                    if (gpa + (ulong)i < ram && !_vm.Memory.Write(gpa + (ulong)i, (byte*)&value + i, 1))
                        return false;
                }
                Unassigned(gpa, write: true);
                return true;
            }

            /// <summary>Counts an unassigned access; the VM's first few get a console line each.</summary>
            private void Unassigned(ulong gpa, bool write)
            {
                Vcpu v = _vm.Vcpus[_cpu];
                v.UnassignedAccesses++;
                ulong seen = System.Threading.Interlocked.Increment(ref _vm.UnassignedAccesses);
                if (seen <= Vm.UnassignedLogged)
                {
                    ulong f = KvmHost.LogBegin();
                    KvmHost.Write("vm ");
                    KvmHost.WriteDecimal((ulong)_vm.Id);
                    KvmHost.Write(write ? ": guest write to unassigned guest-physical " : ": guest read of unassigned guest-physical ");
                    KvmHost.WriteHex(gpa);
                    KvmHost.Write(seen == Vm.UnassignedLogged
                        ? " (no RAM or device there: reads give all ones, writes are dropped; further ones are only counted)\n"
                        : " (no RAM or device there: reads give all ones, writes are dropped)\n");
                    KvmHost.LogEnd(f);
                }
            }
        }

        public static ExitAction Handle(Vcpu v, ulong gpa)
        {
            MmioVcpuState cpu = ReadState();
            var bus = new Bus(v.Vm, v.Index);
            var memory = new GuestReader(v.Vm.Memory);
            byte* bytes = stackalloc byte[16];
            MmioStatus status = MmioEmulator.Step(ref bus, ref memory, ref *v.Registers, ref cpu, new System.Span<byte>(bytes, 15),
                out int count, out MmioInstruction _, out MmioDecodeStatus decode, out GuestWalkStatus _, out ulong _);
            v.MmioExits++;
            if (Completed(v, cpu, status))
                return ExitAction.Resume;
            v.Vm.Stop(255, status == MmioStatus.Refused ? "an MMIO instruction Tandem does not emulate" : "an MMIO access Tandem could not complete");
            Dump(v, "MMIO at gpa ", gpa, cpu.Rip, status, (ulong)decode, bytes, count);
            return ExitAction.Stop;
        }

        /// <summary>The ports of the VM's port bus, for INS and OUTS (the device lock per element).</summary>
        private readonly struct Ports : IPortIo
        {
            private readonly PcPlatform _p;

            public Ports(PcPlatform p) { _p = p; }

            public uint Read(ushort port, int size)
            {
                _p.Lock.Enter();
                uint value = _p.Ports.Read(port, size);
                _p.Lock.Exit();
                return value;
            }

            public bool Write(ushort port, int size, uint value)
            {
                _p.Lock.Enter();
                _p.Ports.Write(port, size, value);
                _p.Lock.Exit();
                return !Exits.IoExit.EndRequested(_p);
            }
        }

        /// <summary>
        /// A string port instruction (INS, OUTS, with or without REP; port I/O exit with the string
        /// bit): emulated against the port bus and guest memory through the guest's page tables
        /// (<see cref="MmioEmulator.PortString"/>). A long REP runs in slices, RIP staying on it. An
        /// instruction that cannot be completed (a faulting or page-crossing element, bytes that
        /// disagree with the exit) stops the VM with a dump, never the host.
        /// </summary>
        public static ExitAction PortString(Vcpu v, bool input, ushort port, int size, bool rep)
        {
            MmioVcpuState cpu = ReadState();
            var ports = new Ports(v.Platform);
            var bus = new Bus(v.Vm, v.Index);
            var memory = new GuestReader(v.Vm.Memory);
            byte* bytes = stackalloc byte[16];
            MmioStatus status = MmioEmulator.PortString(ref ports, ref bus, ref memory, ref *v.Registers, ref cpu, input, port, size, rep,
                new System.Span<byte>(bytes, 15), out int count, out GuestWalkStatus _, out ulong fault);
            v.EntryWork = true;                  // a device may have changed
            if (Completed(v, cpu, status))
                return input ? ExitAction.Resume : Exits.IoExit.AfterWrite(v, v.Platform);
            v.Vm.Stop(255, status == MmioStatus.Refused ? "a string port instruction Tandem could not decode" : "a string port instruction Tandem could not complete");
            Dump(v, input ? "INS from port " : "OUTS to port ", port, cpu.Rip, status, fault, bytes, count);
            return ExitAction.Stop;
        }

        /// <summary>The vCPU state the emulator needs, from the VMCS.</summary>
        internal static MmioVcpuState ReadState()
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
            return cpu;
        }

        /// <summary>Done or Partial: RIP, RSP and RFLAGS go back to the VMCS (Partial: a long REP did a slice; RIP stays and the guest executes it again).</summary>
        private static bool Completed(Vcpu v, in MmioVcpuState cpu, MmioStatus status)
        {
            if (status != MmioStatus.Done && status != MmioStatus.Partial)
                return false;
            Vmcs.Write(VmcsField.GuestRip, cpu.Rip);
            Vmcs.Write(VmcsField.GuestRsp, cpu.Rsp);
            Vmcs.Write(VmcsField.GuestRflags, cpu.Rflags);
            if (status == MmioStatus.Done)
                Events.EndInterruptShadow();
            v.EntryWork = true;          // a device may have changed
            return true;
        }

        private static void Dump(Vcpu v, string what, ulong where, ulong rip, MmioStatus status, ulong detail, byte* bytes, int count)
        {
            ulong f = KvmHost.LogBegin();
            KvmHost.Write("vm ");
            KvmHost.WriteDecimal((ulong)v.Vm.Id);
            KvmHost.Write(": ");
            KvmHost.Write(what);
            KvmHost.WriteHex(where);
            KvmHost.Write(", rip ");
            KvmHost.WriteHex(rip);
            KvmHost.Write(", status ");
            KvmHost.WriteDecimal((ulong)status);
            KvmHost.Write(", detail ");
            KvmHost.WriteHex(detail);
            KvmHost.Write(", bytes");
            for (int i = 0; i < count; i++)
            {
                KvmHost.WriteChar(' ');
                KvmHost.WriteChar(Hex(bytes[i] >> 4));
                KvmHost.WriteChar(Hex(bytes[i] & 15));
            }
            KvmHost.WriteChar('\n');
            KvmHost.LogEnd(f);
        }

        private static char Hex(int n) => (char)(n < 10 ? '0' + n : 'a' + n - 10);
    }
}
