using System;
using Tandem.Kvm.Mmio;
using Tandem.Kvm.Vmx;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests.Mmio;

/// <summary>
/// <see cref="AluFlags"/> against a reference written differently: the flags from their
/// definitions (CF: the exact sum does not fit the width; OF: the exact signed result does not
/// fit; AF: the low nibbles carry or borrow; PF: an even count of ones in the low byte), computed
/// with 128-bit integers. Also drives the ALU forms end to end through the emulator.
/// </summary>
public class AluFlagsTests
{
    private static readonly MmioOperation[] s_ops =
    {
        MmioOperation.Add, MmioOperation.Adc, MmioOperation.Sub, MmioOperation.Sbb, MmioOperation.Cmp,
        MmioOperation.And, MmioOperation.Or, MmioOperation.Xor, MmioOperation.Test,
    };

    private readonly ITestOutputHelper _output;

    public AluFlagsTests(ITestOutputHelper output) { _output = output; }

    private static Int128 Signed(ulong v, int size) => size switch
    {
        1 => (sbyte)v,
        2 => (short)v,
        4 => (int)v,
        _ => (long)v,
    };

    /// <summary>The reference: result and the six status flags from their definitions.</summary>
    private static (ulong result, ulong flags) Reference(MmioOperation op, int size, ulong a, ulong b, bool carry)
    {
        int bits = 8 * size;
        UInt128 modulus = UInt128.One << bits;
        ulong mask = (ulong)(modulus - 1);
        a &= mask;
        b &= mask;
        int c = carry && (op == MmioOperation.Adc || op == MmioOperation.Sbb) ? 1 : 0;
        ulong result;
        bool cf = false, of = false, af = false;
        switch (op)
        {
            case MmioOperation.Add:
            case MmioOperation.Adc:
                {
                    UInt128 exact = (UInt128)a + b + (uint)c;
                    result = (ulong)(exact % modulus);
                    cf = exact >= modulus;
                    Int128 signedExact = Signed(a, size) + Signed(b, size) + c;
                    of = signedExact != Signed(result, size);
                    af = (a & 0xF) + (b & 0xF) + (ulong)c > 0xF;
                    break;
                }
            case MmioOperation.Sub:
            case MmioOperation.Sbb:
            case MmioOperation.Cmp:
                {
                    Int128 exact = (Int128)a - b - c;
                    result = (ulong)((exact % (Int128)modulus + (Int128)modulus) % (Int128)modulus);
                    cf = exact < 0;
                    Int128 signedExact = Signed(a, size) - Signed(b, size) - c;
                    of = signedExact != Signed(result, size);
                    af = (long)(a & 0xF) - (long)(b & 0xF) - c < 0;
                    break;
                }
            case MmioOperation.Or: result = a | b; break;
            case MmioOperation.Xor: result = a ^ b; break;
            default: result = a & b; break;
        }
        int ones = 0;
        for (int i = 0; i < 8; i++)
            ones += (int)((result >> i) & 1);
        ulong flags = 0;
        if (cf) flags |= MmioVcpuState.FlagCf;
        if (ones % 2 == 0) flags |= MmioVcpuState.FlagPf;
        if (af) flags |= MmioVcpuState.FlagAf;
        if (result == 0) flags |= MmioVcpuState.FlagZf;
        if (Signed(result, size) < 0) flags |= MmioVcpuState.FlagSf;
        if (of) flags |= MmioVcpuState.FlagOf;
        return (result, flags);
    }

    private static ulong Operand(Random rng, int size)
    {
        // Mix edge values (0, 1, sign bit, all ones, nibble edges) with uniform ones.
        ulong top = 1UL << (8 * size - 1);
        return rng.Next(6) switch
        {
            0 => 0,
            1 => top,
            2 => top - 1,
            3 => ulong.MaxValue,
            4 => (ulong)rng.Next(0, 32),
            _ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40),
        };
    }

    [Fact]
    public void FlagsMatchTheirDefinitionsOverRandomOperands()
    {
        int seed = TestSeed.Pick(_output.WriteLine, nameof(FlagsMatchTheirDefinitionsOverRandomOperands));
        var rng = new Random(seed);
        int checkedCount = 0;
        foreach (MmioOperation op in s_ops)
        {
            foreach (int size in new[] { 1, 2, 4, 8 })
            {
                for (int n = 0; n < 20_000; n++)
                {
                    ulong a = Operand(rng, size), b = Operand(rng, size);
                    bool carry = rng.Next(2) == 0;
                    ulong rflags = 0x202 | (carry ? MmioVcpuState.FlagCf : 0) | MmioVcpuState.FlagDf;
                    ulong result = AluFlags.Compute(op, size, a, b, ref rflags);
                    (ulong want, ulong wantFlags) = Reference(op, size, a, b, carry);
                    if (result != want || (rflags & MmioVcpuState.StatusFlags) != wantFlags || (rflags & ~MmioVcpuState.StatusFlags) != (0x202 | MmioVcpuState.FlagDf))
                        Assert.Fail($"{op} size {size} a={a:X} b={b:X} cf={carry}: got {result:X} flags {rflags:X}, want {want:X} flags {wantFlags:X} (seed {seed})");
                    checkedCount++;
                }
            }
        }
        _output.WriteLine($"{checkedCount} operand pairs checked");
    }

    [Fact]
    public void EveryAluFormThroughTheEmulator()
    {
        var rng = new Random(7);
        // ModRM 0x08: [rax] with register ecx/cx/cl; group 1 with /n selects the operation.
        Span<byte> bytes = stackalloc byte[15];
        for (int n = 0; n < 2000; n++)
        {
            int family = rng.Next(8);
            var ops = new[] { MmioOperation.Add, MmioOperation.Or, MmioOperation.Adc, MmioOperation.Sbb, MmioOperation.And, MmioOperation.Sub, MmioOperation.Xor, MmioOperation.Cmp };
            MmioOperation op = ops[family];
            int form = rng.Next(5); // 0: op [rax], reg  1: op reg, [rax]  2: 83 /n imm8  3: 81 /n imm32  4: 80 /n imm8
            bool wide = form == 4 ? false : rng.Next(2) == 0;
            int size = form == 4 ? 1 : wide ? 8 : rng.Next(2) == 0 ? 4 : 1;
            if ((form == 2 || form == 3) && size == 1)
                size = 4;
            ulong memValue = Operand(rng, size), regValue = Operand(rng, size);
            sbyte imm8 = (sbyte)rng.Next(-128, 128);
            int imm32 = rng.Next(int.MinValue, int.MaxValue);
            byte rex = size == 8 ? (byte)0x48 : (byte)0;
            byte[] code = form switch
            {
                0 => new byte[] { (byte)(family * 8 + (size == 1 ? 0 : 1)), 0x08 },
                1 => new byte[] { (byte)(family * 8 + (size == 1 ? 2 : 3)), 0x08 },
                2 => new byte[] { 0x83, (byte)(family << 3), (byte)imm8 },
                3 => new byte[] { 0x81, (byte)(family << 3), (byte)imm32, (byte)(imm32 >> 8), (byte)(imm32 >> 16), (byte)(imm32 >> 24) },
                _ => new byte[] { 0x80, (byte)(family << 3), (byte)imm8 },
            };
            if (rex != 0)
                code = [rex, .. code];
            ulong source = form == 0 || form == 1 ? regValue : form == 3 ? (ulong)(long)imm32 : (ulong)(long)imm8;
            bool carry = rng.Next(2) == 0;

            var ram = new GuestRam();
            ram.Write(0x1000, code);
            var record = new BusRecord();
            record.Registers[0xFEE0_0000] = memValue & (size == 8 ? ulong.MaxValue : (1UL << (8 * size)) - 1);
            var regs = new GuestRegisters { Rax = 0xFEE0_0000, Rcx = regValue };
            var cpu = new MmioVcpuState { Mode = CpuMode.Bits64, Rip = 0x1000, Rflags = 2 | (carry ? 1UL : 0), Paging = new GuestPagingState { Cr0 = 1 } };
            var bus = new FakeBus(record);
            var reader = new RamReader(ram);
            Assert.Equal(MmioStatus.Done, MmioEmulator.Step(ref bus, ref reader, ref regs, ref cpu, bytes, out _, out MmioInstruction insn, out _, out _, out _));
            Assert.Equal(op, insn.Operation);

            ulong a = form == 1 ? regValue : memValue;
            ulong b = form == 1 ? memValue : source;
            (ulong want, ulong wantFlags) = Reference(op, size, a, b, carry);
            Assert.Equal(wantFlags, cpu.Rflags & MmioVcpuState.StatusFlags);
            Assert.Equal(0x1000UL + (ulong)code.Length, cpu.Rip);
            int writes = record.Accesses.FindAll(x => x.Write).Count;
            if (op == MmioOperation.Cmp)
            {
                Assert.Equal(0, writes);
                Assert.Equal(regValue, regs.Rcx);
            }
            else if (form == 1)
            {
                Assert.Equal(0, writes);
                ulong expected = size == 8 ? want : size == 4 ? want : (regValue & ~0xFFUL) | want;
                Assert.Equal(expected, regs.Rcx);
            }
            else
            {
                Assert.Equal(1, writes);
                Assert.Equal(want, record.Registers[0xFEE0_0000]);
            }
        }
    }
}
