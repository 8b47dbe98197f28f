using System;
using Tandem.Kvm.Mmio;
using Tandem.Kvm.Vmx;
using Xunit;

namespace Tandem.Kvm.Tests.Mmio;

/// <summary>One emulation step per form against a fake bus: accesses, registers, flags, RIP.</summary>
public class EmulatorTests
{
    private const ulong CodeAt = 0x1000;
    private const ulong Device = 0xFEE0_0000;

    /// <summary>A vCPU with paging off, its code at <see cref="CodeAt"/>.</summary>
    private sealed class Machine
    {
        public readonly GuestRam Ram = new();
        public readonly BusRecord Bus = new();
        public GuestRegisters Regs;
        public MmioVcpuState Cpu;
        public MmioInstruction Insn;
        public MmioDecodeStatus Decode;
        public GuestWalkStatus Walk;
        public ulong FaultLinear;
        public int ByteCount;

        public Machine(CpuMode mode = CpuMode.Bits64)
        {
            Cpu.Mode = mode;
            Cpu.Rip = CodeAt;
            Cpu.Rflags = 2;
            Cpu.Paging.Cr0 = 1;
        }

        public MmioStatus Run(params byte[] code)
        {
            Ram.Write(CodeAt, code);
            var bus = new FakeBus(Bus);
            var reader = new RamReader(Ram);
            Span<byte> bytes = stackalloc byte[15];
            return MmioEmulator.Step(ref bus, ref reader, ref Regs, ref Cpu, bytes, out ByteCount, out Insn, out Decode, out Walk, out FaultLinear);
        }

        public MmioStatus RunOk(params byte[] code)
        {
            MmioStatus s = Run(code);
            Assert.Equal(MmioStatus.Done, s);
            Assert.Equal(CodeAt + (ulong)code.Length, Cpu.Rip);
            return s;
        }

        public void ExpectAccesses(params (bool Write, ulong Gpa, int Size, ulong Value)[] expected)
        {
            Assert.Equal(expected, Bus.Accesses.ToArray());
        }
    }

    [Fact]
    public void MovStoresInEveryWidth()
    {
        var m = new Machine();
        m.Regs.Rax = Device;
        m.Regs.Rbx = 0x1122_3344_5566_7788;
        m.RunOk(0x88, 0x18); // mov [rax], bl
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x66, 0x89, 0x18); // mov [rax], bx
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x89, 0x18); // mov [rax], ebx
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x48, 0x89, 0x18); // mov [rax], rbx
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x88, 0x38); // mov [rax], bh
        m.ExpectAccesses((true, Device, 1, 0x88), (true, Device, 2, 0x7788), (true, Device, 4, 0x5566_7788),
            (true, Device, 8, 0x1122_3344_5566_7788), (true, Device, 1, 0x77));
    }

    [Fact]
    public void MovImmediates()
    {
        var m = new Machine();
        m.Regs.Rdx = Device;
        m.RunOk(0xC6, 0x42, 0x10, 0xAB); // mov byte [rdx+0x10], 0xAB
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x66, 0xC7, 0x02, 0x34, 0x12); // mov word [rdx], 0x1234
        m.Cpu.Rip = CodeAt;
        m.RunOk(0xC7, 0x02, 0x78, 0x56, 0x34, 0x12);
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x48, 0xC7, 0x02, 0x00, 0x00, 0x00, 0x80); // sign-extended to 64
        m.ExpectAccesses((true, Device + 0x10, 1, 0xAB), (true, Device, 2, 0x1234), (true, Device, 4, 0x1234_5678),
            (true, Device, 8, 0xFFFF_FFFF_8000_0000));
    }

    [Fact]
    public void LoadsZeroExtend32AndMerge16And8()
    {
        var m = new Machine();
        m.Regs.Rax = Device;
        m.Bus.Registers[Device] = 0x8765_4321_DEAD_BEEF;
        m.Regs.Rcx = ulong.MaxValue;
        m.RunOk(0x8B, 0x08); // mov ecx, [rax]
        Assert.Equal(0xDEAD_BEEFUL, m.Regs.Rcx);
        m.Regs.Rcx = ulong.MaxValue;
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x66, 0x8B, 0x08); // mov cx, [rax]
        Assert.Equal(0xFFFF_FFFF_FFFF_BEEFUL, m.Regs.Rcx);
        m.Regs.Rcx = ulong.MaxValue;
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x8A, 0x08); // mov cl, [rax]
        Assert.Equal(0xFFFF_FFFF_FFFF_FFEFUL, m.Regs.Rcx);
        m.Regs.Rcx = 0;
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x8A, 0x28); // mov ch, [rax]
        Assert.Equal(0xEF00UL, m.Regs.Rcx);
        m.Cpu.Rip = CodeAt;
        m.Regs.Rbp = ulong.MaxValue;
        m.RunOk(0x40, 0x8A, 0x28); // mov bpl, [rax]
        Assert.Equal(0xFFFF_FFFF_FFFF_FFEFUL, m.Regs.Rbp);
        Assert.Equal(0xEF00UL, m.Regs.Rcx);
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x4C, 0x8B, 0x38); // mov r15, [rax]
        Assert.Equal(0x8765_4321_DEAD_BEEFUL, m.Regs.R15);
    }

    [Fact]
    public void MovzxMovsxMovsxd()
    {
        var m = new Machine();
        m.Regs.Rax = Device;
        m.Bus.Registers[Device] = 0x8000_80F0;
        m.Regs.Rcx = ulong.MaxValue;
        m.RunOk(0x0F, 0xB6, 0x08); // movzx ecx, byte [rax]
        Assert.Equal(0xF0UL, m.Regs.Rcx);
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x48, 0x0F, 0xBE, 0x08); // movsx rcx, byte [rax]
        Assert.Equal(0xFFFF_FFFF_FFFF_FFF0UL, m.Regs.Rcx);
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x0F, 0xBF, 0x08); // movsx ecx, word [rax]
        Assert.Equal(0xFFFF_80F0UL, m.Regs.Rcx);
        m.Cpu.Rip = CodeAt;
        m.Regs.Rcx = ulong.MaxValue;
        m.RunOk(0x66, 0x0F, 0xB6, 0x08); // movzx cx, byte [rax]
        Assert.Equal(0xFFFF_FFFF_FFFF_00F0UL, m.Regs.Rcx);
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x48, 0x63, 0x08); // movsxd rcx, dword [rax]
        Assert.Equal(0xFFFF_FFFF_8000_80F0UL, m.Regs.Rcx);
        Assert.Equal(4, m.Bus.Accesses[^1].Size);
    }

    [Fact]
    public void MoffsAndRipRelative()
    {
        var m = new Machine();
        m.RunOk(0x48, 0xA1, 0x00, 0x00, 0xE0, 0xFE, 0, 0, 0, 0); // mov rax, [0xFEE00000]
        Assert.Equal(m.Bus.ValueAt(Device, 8), m.Regs.Rax);
        m.Cpu.Rip = CodeAt;
        m.Regs.Rax = 0x1234_5678_9ABC_DEF0;
        m.RunOk(0x67, 0xA3, 0x10, 0x00, 0xE0, 0xFE); // mov [0xFEE00010], eax (32-bit moffs)
        m.Cpu.Rip = CodeAt;
        int disp = 0x7000_0000 - (int)(CodeAt + 6); // a disp32 reaches +-2 GiB around the next RIP
        m.RunOk(0x89, 0x05, (byte)disp, (byte)(disp >> 8), (byte)(disp >> 16), (byte)(disp >> 24)); // mov [rip+disp], eax
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x89, 0x05, 0xF0, 0xFF, 0xFF, 0xFF); // mov [rip-16], eax: a negative disp32 from RIP 0x1006
        m.ExpectAccesses((false, Device, 8, m.Bus.ValueAt(Device, 8)), (true, Device + 0x10, 4, 0x9ABC_DEF0), (true, 0x7000_0000UL, 4, 0x9ABC_DEF0),
            (true, CodeAt + 6 - 16, 4, 0x9ABC_DEF0));
    }

    [Fact]
    public void SibRspBaseAndScaledIndex()
    {
        var m = new Machine();
        m.Cpu.Rsp = Device;
        m.Regs.R12 = 3;
        m.RunOk(0x42, 0x8B, 0x44, 0xA4, 0x08); // mov eax, [rsp + r12*4 + 8]
        Assert.Equal(Device + 8 + 12, m.Bus.Accesses[0].Gpa);
    }

    [Fact]
    public void SegmentBasesIn32BitAndFsIn64Bit()
    {
        var m = new Machine(CpuMode.Bits32);
        m.Cpu.DsBase = 0xFE00_0000;
        m.Cpu.EsBase = 0x1000_0000;
        m.Regs.Rbx = 0xE0_0100;
        m.RunOk(0x8B, 0x43, 0x04); // mov eax, [ebx+4] (DS)
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x26, 0x89, 0x03); // mov es:[ebx], eax
        Assert.Equal(0xFEE0_0104UL, m.Bus.Accesses[0].Gpa);
        Assert.Equal(0x10E0_0100UL, m.Bus.Accesses[1].Gpa);

        var l = new Machine();
        l.Cpu.FsBase = 0xFEE0_0000;
        l.Cpu.DsBase = 0x5000_0000; // ignored in 64-bit code
        l.RunOk(0x64, 0x8B, 0x04, 0x25, 0x20, 0, 0, 0); // mov eax, fs:[0x20]
        l.Cpu.Rip = CodeAt;
        l.RunOk(0x3E, 0x8B, 0x04, 0x25, 0x20, 0, 0, 0); // mov eax, ds:[0x20]
        Assert.Equal(0xFEE0_0020UL, l.Bus.Accesses[0].Gpa);
        Assert.Equal(0x20UL, l.Bus.Accesses[1].Gpa);
    }

    [Fact]
    public void AluReadModifyWriteAndFlags()
    {
        var m = new Machine();
        m.Regs.Rax = Device;
        m.Bus.Registers[Device] = 0xF0;
        m.Regs.Rcx = 0x0F;
        m.RunOk(0x09, 0x08); // or [rax], ecx
        m.ExpectAccesses((false, Device, 4, 0xF0), (true, Device, 4, 0xFF));
        Assert.Equal(MmioVcpuState.FlagPf, m.Cpu.Rflags & MmioVcpuState.StatusFlags);

        m.Bus.Accesses.Clear();
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x83, 0x38, 0x7F); // cmp dword [rax], 0x7F: reads only
        Assert.Single(m.Bus.Accesses);
        Assert.Equal(0UL, m.Cpu.Rflags & (MmioVcpuState.FlagZf | MmioVcpuState.FlagCf));

        m.Bus.Accesses.Clear();
        m.Cpu.Rip = CodeAt;
        m.RunOk(0xF6, 0x00, 0x00); // test byte [rax], 0
        Assert.Single(m.Bus.Accesses);
        Assert.NotEqual(0UL, m.Cpu.Rflags & MmioVcpuState.FlagZf);

        m.Cpu.Rip = CodeAt;
        m.Regs.Rdx = ulong.MaxValue;
        m.RunOk(0x2B, 0x10); // sub edx, [rax]: register destination, zero-extended
        Assert.Equal(0xFFFF_FFFFUL - 0xFF, m.Regs.Rdx);

        m.Cpu.Rip = CodeAt;
        m.Regs.Rdx = 0x100;
        m.RunOk(0x3B, 0x10); // cmp edx, [rax]: edx - [rax], edx unchanged
        Assert.Equal(0x100UL, m.Regs.Rdx);
        Assert.Equal(0UL, m.Cpu.Rflags & MmioVcpuState.FlagCf);
        m.Cpu.Rip = CodeAt;
        m.RunOk(0x39, 0x10); // cmp [rax], edx: 0xFF - 0x100 borrows
        Assert.NotEqual(0UL, m.Cpu.Rflags & MmioVcpuState.FlagCf);

        m.Cpu.Rip = CodeAt;
        m.Bus.Registers[Device] = 0xFF;
        m.Cpu.Rflags |= MmioVcpuState.FlagCf;
        m.RunOk(0x80, 0x10, 0x00); // adc byte [rax], 0 with CF = 1 → 0, CF = 1, ZF = 1
        Assert.Equal(0UL, m.Bus.Registers[Device]);
        Assert.Equal(MmioVcpuState.FlagCf | MmioVcpuState.FlagZf | MmioVcpuState.FlagPf | MmioVcpuState.FlagAf,
            m.Cpu.Rflags & MmioVcpuState.StatusFlags);
    }

    [Fact]
    public void XchgSwapsWithZeroExtension()
    {
        var m = new Machine();
        m.Regs.Rax = Device;
        m.Bus.Registers[Device] = 0x1111_2222;
        m.Regs.Rcx = 0xFFFF_FFFF_3333_4444;
        m.RunOk(0x87, 0x08); // xchg [rax], ecx
        Assert.Equal(0x1111_2222UL, m.Regs.Rcx);
        m.ExpectAccesses((false, Device, 4, 0x1111_2222), (true, Device, 4, 0x3333_4444));
        m.Cpu.Rip = CodeAt;
        m.Regs.Rbx = 0xAB00;
        m.RunOk(0xF0, 0x86, 0x38); // lock xchg [rax], bh: the memory byte is now 0x44 (from ecx above)
        Assert.Equal(0x4400UL, m.Regs.Rbx);
        Assert.Equal(0xABUL, m.Bus.Registers[Device]);
    }

    [Fact]
    public void RepStosCountsDownAndHonoursDf()
    {
        var m = new Machine();
        m.Regs.Rdi = Device;
        m.Regs.Rcx = 3;
        m.Regs.Rax = 0x0102_0304_0506_0708;
        m.RunOk(0xF3, 0x48, 0xAB); // rep stosq
        m.ExpectAccesses((true, Device, 8, 0x0102_0304_0506_0708), (true, Device + 8, 8, 0x0102_0304_0506_0708), (true, Device + 16, 8, 0x0102_0304_0506_0708));
        Assert.Equal(0UL, m.Regs.Rcx);
        Assert.Equal(Device + 24, m.Regs.Rdi);

        m.Bus.Accesses.Clear();
        m.Cpu.Rip = CodeAt;
        m.Cpu.Rflags |= MmioVcpuState.FlagDf;
        m.Regs.Rcx = 2;
        m.RunOk(0xF3, 0xAA); // rep stosb, downwards
        m.ExpectAccesses((true, Device + 24, 1, 0x08), (true, Device + 23, 1, 0x08));
        Assert.Equal(Device + 22, m.Regs.Rdi);

        m.Bus.Accesses.Clear();
        m.Cpu.Rip = CodeAt;
        m.RunOk(0xF3, 0xAB); // rcx = 0: nothing, RIP advances
        Assert.Empty(m.Bus.Accesses);

        m.Cpu.Rip = CodeAt;
        m.Cpu.Rflags &= ~MmioVcpuState.FlagDf;
        m.Regs.Rdi = Device;
        m.RunOk(0x66, 0xAB); // stosw without REP: once, rcx untouched
        Assert.Equal(Device + 2, m.Regs.Rdi);
        Assert.Equal(0UL, m.Regs.Rcx);
    }

    [Fact]
    public void RepMovsCopiesAndSixteenBitAddressSizeKeepsUpperBits()
    {
        var m = new Machine(CpuMode.Bits32);
        m.Regs.Rsi = Device;
        m.Regs.Rdi = 0x9000;
        m.Regs.Rcx = 2;
        m.RunOk(0xF3, 0xA5); // rep movsd
        Assert.Equal(4, m.Bus.Accesses.Count);
        Assert.Equal((false, Device, 4, m.Bus.ValueAt(Device, 4)), m.Bus.Accesses[0]);
        Assert.Equal((true, 0x9000UL, 4, m.Bus.ValueAt(Device, 4)), m.Bus.Accesses[1]);
        Assert.Equal(Device + 8, m.Regs.Rsi);

        m.Cpu.Rip = CodeAt;
        m.Regs.Rcx = 0x1_0002;
        m.Regs.Rdi = 0x7_FFFF;
        m.RunOk(0x67, 0xF3, 0xAA); // rep stosb with 16-bit addresses: cx counts, di wraps
        Assert.Equal(0x1_0000UL, m.Regs.Rcx);
        Assert.Equal(0x7_0001UL, m.Regs.Rdi);
        Assert.Equal(0xFFFFUL, m.Bus.Accesses[^2].Gpa); // the address is DI alone
        Assert.Equal(0x0UL, m.Bus.Accesses[^1].Gpa);
    }

    [Fact]
    public void LongRepIsPartialAndReexecutes()
    {
        var m = new Machine();
        m.Regs.Rdi = Device;
        m.Regs.Rcx = MmioEmulator.MaxRepIterations + 5;
        Assert.Equal(MmioStatus.Partial, m.Run(0xF3, 0xAA));
        Assert.Equal(CodeAt, m.Cpu.Rip);
        Assert.Equal(5UL, m.Regs.Rcx);
        m.RunOk(0xF3, 0xAA);
        Assert.Equal(0UL, m.Regs.Rcx);
        Assert.Equal(MmioEmulator.MaxRepIterations + 5, m.Bus.Accesses.Count);
    }

    [Fact]
    public void RipWrapsAtTheCodeSize()
    {
        var m = new Machine(CpuMode.Bits16);
        m.Cpu.CsBase = 0x1_0000;
        m.Cpu.Rip = 0xFFFE;
        m.Ram.Write(0x1_FFFE, new byte[] { 0x89, 0x07 }); // mov [bx], ax
        var bus = new FakeBus(m.Bus);
        var reader = new RamReader(m.Ram);
        Span<byte> bytes = stackalloc byte[15];
        Assert.Equal(MmioStatus.Done, MmioEmulator.Step(ref bus, ref reader, ref m.Regs, ref m.Cpu, bytes, out _, out _, out _, out _, out _));
        Assert.Equal(0UL, m.Cpu.Rip);
        Assert.Equal(2, m.Bus.Accesses[0].Size);
    }

    /// <summary>
    /// A load and a store across a page boundary (unassigned32 does this at the end of guest RAM):
    /// each page translated on its own, the bus used a byte at a time, low bytes first.
    /// </summary>
    [Fact]
    public void PageCrossingAccessGoesToBothPagesByteByByte()
    {
        var m = new Machine();
        m.Regs.Rax = Device + 0xFFE;
        m.RunOk(0x8B, 0x00);                                 // mov eax, [rax]
        ulong expected = 0;
        for (int i = 0; i < 4; i++)
            expected |= m.Bus.ValueAt(Device + 0xFFE + (ulong)i, 1) << (8 * i);
        Assert.Equal(expected, m.Regs.Rax);
        m.ExpectAccesses((false, Device + 0xFFE, 1, m.Bus.ValueAt(Device + 0xFFE, 1)), (false, Device + 0xFFF, 1, m.Bus.ValueAt(Device + 0xFFF, 1)),
            (false, Device + 0x1000, 1, m.Bus.ValueAt(Device + 0x1000, 1)), (false, Device + 0x1001, 1, m.Bus.ValueAt(Device + 0x1001, 1)));

        var w = new Machine();
        w.Regs.Rax = Device + 0xFFF;
        w.Regs.Rcx = 0x1122_3344;
        w.RunOk(0x89, 0x08);                                 // mov [rax], ecx
        w.ExpectAccesses((true, Device + 0xFFF, 1, 0x44), (true, Device + 0x1000, 1, 0x33), (true, Device + 0x1001, 1, 0x22), (true, Device + 0x1002, 1, 0x11));
    }

    [Fact]
    public void RefusalsLeaveRipAlone()
    {
        var m = new Machine();
        Assert.Equal(MmioStatus.Refused, m.Run(0x0F, 0x0B)); // ud2
        Assert.Equal(MmioDecodeStatus.UnsupportedOpcode, m.Decode);
        Assert.Equal(CodeAt, m.Cpu.Rip);

        m.Regs.Rdi = Device + 0xFFE;
        Assert.Equal(MmioStatus.SplitAccess, m.Run(0xAB)); // stosd: a string element across a page
        Assert.Equal(CodeAt, m.Cpu.Rip);

        m.Bus.Hole = Device;
        m.Regs.Rax = Device;
        Assert.Equal(MmioStatus.BusError, m.Run(0x89, 0x00));
        Assert.Equal(CodeAt, m.Cpu.Rip);
    }

    [Fact]
    public void PagedGuestTranslatesCodeAndData()
    {
        var m = new Machine();
        // 4-level tables: linear 0x40_0000 (code) → 0x2000; linear 0x7000_0000 (data) → the device page.
        m.Ram.Write64(0x10_0000, 0x10_1000 | 3);
        m.Ram.Write64(0x10_1000 + 1 * 8, 0x10_2000 | 3); // PDPT[1]: 0x4000_0000..0x7FFF_FFFF
        m.Ram.Write64(0x10_1000 + 0 * 8, 0x10_4000 | 3); // PDPT[0]
        m.Ram.Write64(0x10_4000 + 2 * 8, 0x10_5000 | 3); // PD[2]: 0x40_0000
        m.Ram.Write64(0x10_5000, 0x2000 | 3);
        m.Ram.Write64(0x10_2000 + (0x3000_0000 >> 21) * 8, 0x10_3000 | 3); // PD for 0x7000_0000
        m.Ram.Write64(0x10_3000, Device | 3);
        m.Cpu.Paging = new GuestPagingState
        {
            Cr0 = GuestPagingState.Cr0Pg | 1,
            Cr3 = 0x10_0000,
            Cr4 = GuestPagingState.Cr4Pae,
            Efer = GuestPagingState.EferLma,
        };
        m.Cpu.Rip = 0x40_0000;
        m.Ram.Write(0x2000, new byte[] { 0x89, 0x48, 0x04 }); // mov [rax+4], ecx
        m.Regs.Rax = 0x7000_0000;
        m.Regs.Rcx = 42;
        var bus = new FakeBus(m.Bus);
        var reader = new RamReader(m.Ram);
        Span<byte> bytes = stackalloc byte[15];
        Assert.Equal(MmioStatus.Done, MmioEmulator.Step(ref bus, ref reader, ref m.Regs, ref m.Cpu, bytes, out _, out _, out _, out _, out _));
        m.ExpectAccesses((true, Device + 4, 4, 42));
        Assert.Equal(0x40_0003UL, m.Cpu.Rip);

        m.Cpu.Rip = 0x40_0000;
        m.Regs.Rax = 0x7000_1000; // not mapped
        Assert.Equal(MmioStatus.AccessFault, MmioEmulator.Step(ref bus, ref reader, ref m.Regs, ref m.Cpu, bytes, out _, out _, out _,
            out GuestWalkStatus walk, out ulong faultLinear));
        Assert.Equal(GuestWalkStatus.NotPresent, walk);
        Assert.Equal(0x7000_1004UL, faultLinear);

        m.Cpu.Rip = 0x40_0000 + 0xFFE; // the instruction runs into the unmapped page 0x40_1000
        m.Ram.Write(0x2FFE, new byte[] { 0x89, 0x48 });
        Assert.Equal(MmioStatus.FetchFault, MmioEmulator.Step(ref bus, ref reader, ref m.Regs, ref m.Cpu, bytes, out int count, out _, out _,
            out walk, out faultLinear));
        Assert.Equal(2, count);
        Assert.Equal(0x40_1000UL, faultLinear);
        Assert.Equal(GuestWalkStatus.NotPresent, walk);
    }
}
