using System;
using System.Collections.Generic;
using Tandem.Kvm.Mmio;
using Tandem.Kvm.Vmx;
using Xunit;

namespace Tandem.Kvm.Tests.Mmio;

/// <summary>INS and OUTS (<see cref="MmioEmulator.PortString"/>): addresses, sizes, direction, REP slices, prefixes, faults.</summary>
public class PortStringTests
{
    private const ulong CodeAt = 0x1000;
    private const ushort Port = 0x60;

    /// <summary>Guest RAM as the memory bus: what INS writes lands there, what OUTS reads comes from there.</summary>
    private struct RamBus : IMmioBus
    {
        public GuestRam Ram;

        public bool Read(ulong gpa, int size, out ulong value)
        {
            Span<byte> b = stackalloc byte[8];
            b.Clear();
            value = 0;
            if (!Ram.Read(gpa, b.Slice(0, size)))
                return false;
            value = BitConverter.ToUInt64(b);
            return true;
        }

        public bool Write(ulong gpa, int size, ulong value)
        {
            Ram.Write(gpa, BitConverter.GetBytes(value).AsSpan(0, size));
            return true;
        }
    }

    private sealed class PortLog
    {
        public uint Next = 1;                      // each read returns Next++ (masked)
        public int Reads;
        public readonly List<(ushort Port, int Size, uint Value)> Writes = new();
        public int StopAfterWrites = int.MaxValue;
    }

    private struct Ports : IPortIo
    {
        public PortLog Log;

        public uint Read(ushort port, int size)
        {
            Log.Reads++;
            return Log.Next++;
        }

        public bool Write(ushort port, int size, uint value)
        {
            Log.Writes.Add((port, size, value));
            return Log.Writes.Count < Log.StopAfterWrites;
        }
    }

    private sealed class Machine
    {
        public readonly GuestRam Ram = new();
        public readonly PortLog Ports = new();
        public GuestRegisters Regs;
        public MmioVcpuState Cpu;
        public GuestWalkStatus Walk;
        public ulong FaultLinear;

        public Machine(CpuMode mode)
        {
            Cpu.Mode = mode;
            Cpu.Rip = CodeAt;
            Cpu.Rflags = 2;
            Cpu.Paging.Cr0 = mode == CpuMode.Bits16 ? 0UL : 1UL;
            if (mode == CpuMode.Bits64)
            {
                Cpu.Paging.Efer = GuestPagingState.EferLma;
                Cpu.Paging.Cr4 = GuestPagingState.Cr4Pae;
            }
        }

        public MmioStatus Run(bool input, int size, bool rep, params byte[] code)
        {
            Ram.Write(CodeAt, code);
            var ports = new Ports { Log = Ports };
            var bus = new RamBus { Ram = Ram };
            var reader = new RamReader(Ram);
            Span<byte> bytes = stackalloc byte[15];
            return MmioEmulator.PortString(ref ports, ref bus, ref reader, ref Regs, ref Cpu, input, Port, size, rep, bytes, out _, out Walk, out FaultLinear);
        }

        public byte[] Bytes(ulong gpa, int n)
        {
            var b = new byte[n];
            for (int i = 0; i < n; i++)
                b[i] = Ram.Page(gpa + (ulong)i)[(gpa + (ulong)i) & 0xFFF];
            return b;
        }
    }

    [Fact]
    public void RepInsbFillsMemoryUpwardAndEndsPastTheInstruction()
    {
        var m = new Machine(CpuMode.Bits64);
        m.Regs.Rcx = 5;
        m.Regs.Rdi = 0x3000;
        Assert.Equal(MmioStatus.Done, m.Run(true, 1, true, 0xF3, 0x6C));   // rep insb
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5 }, m.Bytes(0x3000, 5));
        Assert.Equal((0x3005UL, 0UL, CodeAt + 2), (m.Regs.Rdi, m.Regs.Rcx, m.Cpu.Rip));
    }

    [Fact]
    public void RepOutswCountsDownWithDirectionFlag()
    {
        var m = new Machine(CpuMode.Bits32);
        m.Ram.Write(0x4002, new byte[] { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66 });   // words at 0x4002, 0x4004, 0x4006
        m.Cpu.Rflags |= MmioVcpuState.FlagDf;
        m.Regs.Rcx = 3;
        m.Regs.Rsi = 0x4006;
        Assert.Equal(MmioStatus.Done, m.Run(false, 2, true, 0x66, 0xF3, 0x6F));   // rep outsw
        Assert.Equal(new[] { (Port, 2, 0x6655u), (Port, 2, 0x4433u), (Port, 2, 0x2211u) }, m.Ports.Writes.ToArray());
        Assert.Equal((0x4000UL, 0UL, CodeAt + 3), (m.Regs.Rsi, m.Regs.Rcx, m.Cpu.Rip));
    }

    [Fact]
    public void OutsTakesASegmentOverride()
    {
        var m = new Machine(CpuMode.Bits32);
        m.Cpu.FsBase = 0x10000;
        m.Cpu.DsBase = 0;
        m.Ram.Write(0x10020, new byte[] { 0x7E });
        m.Regs.Rsi = 0x20;
        Assert.Equal(MmioStatus.Done, m.Run(false, 1, false, 0x64, 0x6E));   // outsb fs:[esi]
        Assert.Equal((Port, 1, 0x7Eu), m.Ports.Writes[0]);
        Assert.Equal(0x21UL, m.Regs.Rsi);
    }

    [Fact]
    public void SixteenBitAddressesWrapAndKeepTheHighBits()
    {
        var m = new Machine(CpuMode.Bits16);
        m.Cpu.EsBase = 0x20000;
        m.Regs.Rdi = 0xAAAA_0000_0000_FFFF;
        m.Regs.Rcx = 0x5555_0000_0000_0002;
        Assert.Equal(MmioStatus.Done, m.Run(true, 1, true, 0xF3, 0x6C));
        Assert.Equal(new byte[] { 1 }, m.Bytes(0x2FFFF, 1));
        Assert.Equal(new byte[] { 2 }, m.Bytes(0x20000, 1));
        Assert.Equal((0xAAAA_0000_0000_0001UL, 0x5555_0000_0000_0000UL), (m.Regs.Rdi, m.Regs.Rcx));
    }

    [Fact]
    public void AddressSizePrefixIn64BitCodeUses32BitRegisters()
    {
        var m = new Machine(CpuMode.Bits64);
        m.Regs.Rdi = 0xFFFF_FFFF_0000_3000;
        Assert.Equal(MmioStatus.Done, m.Run(true, 4, false, 0x67, 0x6D));   // insd es:[edi]
        Assert.Equal(new byte[] { 1, 0, 0, 0 }, m.Bytes(0x3000, 4));
        Assert.Equal(0x3004UL, m.Regs.Rdi);                                   // zero-extended
        Assert.Equal(CodeAt + 2, m.Cpu.Rip);
    }

    [Fact]
    public void LongRepRunsInSlicesAndStaysOnTheInstruction()
    {
        var m = new Machine(CpuMode.Bits64);
        m.Regs.Rcx = MmioEmulator.MaxRepIterations + 10;
        m.Regs.Rdi = 0x10000;
        Assert.Equal(MmioStatus.Partial, m.Run(true, 1, true, 0xF3, 0x6C));
        Assert.Equal((10UL, CodeAt), (m.Regs.Rcx, m.Cpu.Rip));
        Assert.Equal(MmioStatus.Done, m.Run(true, 1, true, 0xF3, 0x6C));
        Assert.Equal((0UL, CodeAt + 2, MmioEmulator.MaxRepIterations + 10), (m.Regs.Rcx, m.Cpu.Rip, m.Ports.Reads));
    }

    [Theory]
    [InlineData(true, 1, 0x6E)]     // the exit says INS, the bytes say OUTS
    [InlineData(false, 2, 0x6E)]    // the exit says 2 bytes, the bytes say OUTSB
    [InlineData(true, 1, 0x90)]     // not a string port instruction at all
    public void BytesThatDisagreeWithTheExitAreRefused(bool input, int size, byte opcode)
    {
        var m = new Machine(CpuMode.Bits64);
        Assert.Equal(MmioStatus.Refused, m.Run(input, size, false, opcode));
        Assert.Equal((0, 0), (m.Ports.Reads, m.Ports.Writes.Count));
    }

    [Fact]
    public void AFaultingDestinationIsReportedBeforeThePortIsRead()
    {
        // 32-bit paging: the code page is mapped, the destination page is not.
        var m = new Machine(CpuMode.Bits32);
        m.Cpu.Paging.Cr0 = GuestPagingState.Cr0Pg | 1;
        m.Cpu.Paging.Cr3 = 0x9000;
        m.Ram.Write32(0x9000, 0xA000 | 3);           // PDE 0 → page table at 0xA000
        m.Ram.Write32(0xA000 + 1 * 4, 0x1000 | 3);   // PTE 1 → the code page
        m.Ram.Page(0xA000);
        m.Regs.Rdi = 0x3000;
        Assert.Equal(MmioStatus.AccessFault, m.Run(true, 1, false, 0x6C));
        Assert.Equal((0x3000UL, 0), (m.FaultLinear, m.Ports.Reads));
        Assert.Equal(CodeAt, m.Cpu.Rip);
    }

    [Fact]
    public void AWriteThatStopsTheVmEndsTheInstruction()
    {
        var m = new Machine(CpuMode.Bits64);
        m.Ports.StopAfterWrites = 1;
        m.Regs.Rcx = 10;
        m.Regs.Rsi = 0x5000;
        m.Ram.Write(0x5000, new byte[10]);
        m.Run(false, 1, true, 0xF3, 0x6E);
        Assert.Single(m.Ports.Writes);
        Assert.Equal(9UL, m.Regs.Rcx);
    }
}
