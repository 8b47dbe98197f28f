using System;
using System.Collections.Generic;
using System.Diagnostics;
using StringBuilder = System.Text.StringBuilder;
using Iced.Intel;
using Tandem.Kvm.Mmio;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests.Mmio;

/// <summary>
/// <see cref="MmioDecoder"/> against Iced's decoder over random and mutated byte strings: whatever
/// we accept, Iced decodes the same way (length, operation, sizes, register, immediate, memory
/// operand); whatever Iced decodes as an accepted form with a memory operand, we accept.
/// </summary>
public class DecoderDifferentialTests
{
    private static readonly byte[] s_legacyPrefixes = { 0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65 };
    private const int BufferSize = 20;

    private readonly ITestOutputHelper _output;

    public DecoderDifferentialTests(ITestOutputHelper output) { _output = output; }

    private sealed class BufferWriter : CodeWriter
    {
        public readonly byte[] Bytes = new byte[32];
        public int Length;

        public override void WriteByte(byte value) { if (Length < Bytes.Length) Bytes[Length++] = value; }
    }

    /// <summary>Everything one mode's run needs: its Iced encoder and decoder, and the accepted codes.</summary>
    private sealed class ModeBench
    {
        public readonly int Bitness;
        public readonly CpuMode Mode;
        public readonly Code[] Codes;
        public readonly IcedOracle Oracle;
        public readonly BufferWriter Writer = new();
        public readonly Encoder Encoder;

        public ModeBench(int bitness)
        {
            Bitness = bitness;
            Mode = bitness == 64 ? CpuMode.Bits64 : bitness == 32 ? CpuMode.Bits32 : CpuMode.Bits16;
            Codes = AcceptedCodes(bitness);
            Oracle = new IcedOracle(bitness);
            Encoder = Encoder.Create(bitness, Writer);
        }
    }

    /// <summary>Iced's codes for the accepted forms that exist in <paramref name="bitness"/>-bit code.</summary>
    private static Code[] AcceptedCodes(int bitness)
    {
        var list = new List<Code>();
        foreach (Code code in Enum.GetValues<Code>())
        {
            OpCodeInfo info = code.ToOpCode();
            if (info.Encoding != EncodingKind.Legacy || code == Code.INVALID)
                continue;
            if ((bitness == 64 && !info.Mode64) || (bitness == 32 && !info.Mode32) || (bitness == 16 && !info.Mode16))
                continue;
            bool memory = false, sreg = false;
            for (int n = 0; n < info.OpCount; n++)
            {
                OpCodeOperandKind k = info.GetOpKind(n);
                if (k == OpCodeOperandKind.r8_or_mem || k == OpCodeOperandKind.r16_or_mem || k == OpCodeOperandKind.r32_or_mem ||
                    k == OpCodeOperandKind.r64_or_mem || k == OpCodeOperandKind.mem_offs || k == OpCodeOperandKind.es_rDI)
                    memory = true;
                if (k == OpCodeOperandKind.seg_reg)
                    sreg = true;
            }
            if (!memory || sreg)
                continue;
            Mnemonic m = code.Mnemonic();
            if (m is Mnemonic.Mov or Mnemonic.Movzx or Mnemonic.Movsx or Mnemonic.Movsxd or Mnemonic.Add or Mnemonic.Or
                or Mnemonic.Adc or Mnemonic.Sbb or Mnemonic.And or Mnemonic.Sub or Mnemonic.Xor or Mnemonic.Cmp
                or Mnemonic.Test or Mnemonic.Xchg or Mnemonic.Stosb or Mnemonic.Stosw or Mnemonic.Stosd or Mnemonic.Stosq
                or Mnemonic.Movsb or Mnemonic.Movsw or Mnemonic.Movsd or Mnemonic.Movsq)
                list.Add(code);
        }
        return list.ToArray();
    }

    [Fact]
    public void AgreesWithIcedOnRandomAndMutatedBytes()
    {
        int seed = TestSeed.Pick(_output.WriteLine, nameof(AgreesWithIcedOnRandomAndMutatedBytes));
        var rng = new Random(seed);
        var sw = Stopwatch.StartNew();
        var failures = new List<string>();
        long cases = 0, weAccepted = 0, icedAccepted = 0, weRefusedWrongly = 0, disagreed = 0;
        var buffer = new byte[BufferSize];
        (int bitness, int count)[] plan = { (64, 560_000), (32, 400_000), (16, 80_000) };
        foreach ((int bitness, int count) in plan)
        {
            var bench = new ModeBench(bitness);
            Assert.True(bench.Codes.Length > 40, $"only {bench.Codes.Length} accepted codes in {bitness}-bit mode");
            for (int n = 0; n < count; n++)
            {
                int length = MakeCase(bench, rng, buffer);
                cases++;
                MmioDecodeStatus status = MmioDecoder.Decode(new ReadOnlySpan<byte>(buffer, 0, length), bench.Mode, out MmioInstruction ours);
                Instruction iced = bench.Oracle.Decode(buffer, length);
                bool icedWants = IcedOracle.InAcceptedSet(iced);
                if (icedWants)
                    icedAccepted++;
                if (status == MmioDecodeStatus.Ok)
                {
                    weAccepted++;
                    string? diff = IcedOracle.Compare(ours, iced);
                    if (diff != null)
                    {
                        disagreed++;
                        if (failures.Count < 12)
                            failures.Add($"{bitness}-bit {Hex(buffer, length)}: accepted as {ours.Operation}, but {diff} (Iced: {iced})");
                    }
                }
                else if (icedWants)
                {
                    weRefusedWrongly++;
                    if (failures.Count < 12)
                        failures.Add($"{bitness}-bit {Hex(buffer, length)}: refused ({status}) but Iced decodes {iced} ({iced.Code})");
                }
            }
        }
        sw.Stop();
        _output.WriteLine($"{cases} byte strings in {sw.Elapsed.TotalSeconds:F1} s (seed {seed}): we accepted {weAccepted}, Iced found {icedAccepted} accepted forms; {disagreed} accepted but different, {weRefusedWrongly} wrongly refused");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.True(cases >= 1_000_000);
        Assert.True(weAccepted > cases / 5, $"only {weAccepted} of {cases} strings were accepted forms: the generator lost its aim");
    }

    private static string Hex(byte[] b, int length)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < length; i++)
            sb.Append(b[i].ToString("X2")).Append(i + 1 < length ? " " : "");
        return sb.ToString();
    }

    /// <summary>Fills <paramref name="buffer"/> with one test string and returns its length.</summary>
    private static int MakeCase(ModeBench bench, Random rng, byte[] buffer)
    {
        rng.NextBytes(buffer);
        int kind = rng.Next(10);
        if (kind == 0)
            return BufferSize; // plain random bytes
        int length = Encode(bench, rng, buffer);
        if (length == 0)
            return BufferSize;
        if (kind <= 3)
            return BufferSize; // the valid encoding, random bytes after it
        int mutations = 1 + rng.Next(2);
        for (int m = 0; m < mutations; m++)
            length = Mutate(bench, rng, buffer, length);
        return rng.Next(8) == 0 ? Math.Max(1, rng.Next(length + 1)) : BufferSize; // sometimes truncated
    }

    private static bool IsPrefix(int bitness, byte b) =>
        Array.IndexOf(s_legacyPrefixes, b) >= 0 || (bitness == 64 && (b & 0xF0) == 0x40);

    private static int Mutate(ModeBench bench, Random rng, byte[] buffer, int length)
    {
        switch (rng.Next(7))
        {
            case 0: // prefixes added in front
                {
                    int add = 1 + rng.Next(3);
                    if (length + add > BufferSize)
                        return length;
                    Array.Copy(buffer, 0, buffer, add, BufferSize - add);
                    for (int i = 0; i < add; i++)
                        buffer[i] = bench.Bitness == 64 && rng.Next(3) == 0 ? (byte)(0x40 + rng.Next(16)) : s_legacyPrefixes[rng.Next(s_legacyPrefixes.Length)];
                    return length + add;
                }
            case 1: // a REX or legacy prefix inserted right before the opcode
                {
                    int at = 0;
                    while (at < length && IsPrefix(bench.Bitness, buffer[at]))
                        at++;
                    if (length + 1 > BufferSize)
                        return length;
                    Array.Copy(buffer, at, buffer, at + 1, BufferSize - at - 1);
                    buffer[at] = bench.Bitness == 64 && rng.Next(2) == 0 ? (byte)(0x40 + rng.Next(16)) : s_legacyPrefixes[rng.Next(s_legacyPrefixes.Length)];
                    return length + 1;
                }
            case 2: // a prefix removed
                {
                    if (!IsPrefix(bench.Bitness, buffer[0]))
                        return length;
                    Array.Copy(buffer, 1, buffer, 0, BufferSize - 1);
                    buffer[BufferSize - 1] = (byte)rng.Next(256);
                    return length - 1;
                }
            case 3: // one bit flipped (ModRM, SIB, displacement, opcode ...)
                buffer[rng.Next(length)] ^= (byte)(1 << rng.Next(8));
                return length;
            case 4: // one byte replaced
                buffer[rng.Next(length)] = (byte)rng.Next(256);
                return length;
            case 5: // the byte after the opcode (ModRM) replaced: all addressing forms
                {
                    int at = 0;
                    while (at < length - 1 && IsPrefix(bench.Bitness, buffer[at]))
                        at++;
                    if (buffer[at] == 0x0F)
                        at++;
                    if (at + 1 < BufferSize)
                        buffer[at + 1] = (byte)rng.Next(256);
                    return length;
                }
            default: // a byte dropped from the middle
                {
                    if (length < 2)
                        return length;
                    int at = rng.Next(length);
                    Array.Copy(buffer, at + 1, buffer, at, BufferSize - at - 1);
                    return length - 1;
                }
        }
    }

    /// <summary>Encodes a random instance of a random accepted code at the start of <paramref name="buffer"/>; 0 if Iced refuses it.</summary>
    private static int Encode(ModeBench bench, Random rng, byte[] buffer)
    {
        Code code = bench.Codes[rng.Next(bench.Codes.Length)];
        Instruction insn;
        if (!TryBuild(bench, rng, code, out insn))
            return 0;
        if (rng.Next(12) == 0)
            insn.HasLockPrefix = true;
        bench.Writer.Length = 0;
        if (!bench.Encoder.TryEncode(insn, 0, out uint length, out _) || length > BufferSize)
            return 0;
        Array.Copy(bench.Writer.Bytes, buffer, (int)length);
        return (int)length;
    }

    private static Register RandomSegment(Random rng) =>
        rng.Next(3) == 0 ? Register.ES + rng.Next(6) : Register.None;

    private static bool TryBuild(ModeBench bench, Random rng, Code code, out Instruction insn)
    {
        insn = default;
        int bitness = bench.Bitness;
        Mnemonic mnemonic = code.Mnemonic();
        int addressSize = bitness == 64 ? (rng.Next(4) == 0 ? 32 : 64) : rng.Next(4) == 0 ? 48 - bitness : bitness;
        var rep = (RepPrefixKind)rng.Next(3);
        switch (mnemonic)
        {
            case Mnemonic.Stosb: insn = Instruction.CreateStosb(addressSize, rep); return true;
            case Mnemonic.Stosw: insn = Instruction.CreateStosw(addressSize, rep); return true;
            case Mnemonic.Stosd: insn = Instruction.CreateStosd(addressSize, rep); return true;
            case Mnemonic.Stosq: insn = Instruction.CreateStosq(addressSize, rep); return true;
            case Mnemonic.Movsb: insn = Instruction.CreateMovsb(addressSize, RandomSegment(rng), rep); return true;
            case Mnemonic.Movsw: insn = Instruction.CreateMovsw(addressSize, RandomSegment(rng), rep); return true;
            case Mnemonic.Movsd: insn = Instruction.CreateMovsd(addressSize, RandomSegment(rng), rep); return true;
            case Mnemonic.Movsq: insn = Instruction.CreateMovsq(addressSize, RandomSegment(rng), rep); return true;
        }

        OpCodeInfo info = code.ToOpCode();
        OpCodeOperandKind k0 = info.GetOpKind(0), k1 = info.GetOpKind(1);
        bool memFirst = k0 is OpCodeOperandKind.r8_or_mem or OpCodeOperandKind.r16_or_mem or OpCodeOperandKind.r32_or_mem
            or OpCodeOperandKind.r64_or_mem or OpCodeOperandKind.mem_offs;
        OpCodeOperandKind memKind = memFirst ? k0 : k1;
        OpCodeOperandKind otherKind = memFirst ? k1 : k0;
        MemoryOperand mem = memKind == OpCodeOperandKind.mem_offs
            ? new MemoryOperand(Register.None, Register.None, 1, addressSize == 64 ? (long)RandomU64(rng) : rng.Next() & (addressSize == 16 ? 0xFFFF : int.MaxValue),
                addressSize / 8, false, RandomSegment(rng))
            : RandomMemory(rng, bitness, addressSize);

        switch (otherKind)
        {
            case OpCodeOperandKind.imm8:
                insn = Instruction.Create(code, mem, rng.Next(256));
                return true;
            case OpCodeOperandKind.imm8sex16:
            case OpCodeOperandKind.imm8sex32:
            case OpCodeOperandKind.imm8sex64:
                insn = Instruction.Create(code, mem, rng.Next(-128, 128));
                return true;
            case OpCodeOperandKind.imm16:
                insn = Instruction.Create(code, mem, rng.Next(65536));
                return true;
            case OpCodeOperandKind.imm32:
            case OpCodeOperandKind.imm32sex64:
                insn = Instruction.Create(code, mem, rng.Next(int.MinValue, int.MaxValue));
                return true;
        }

        Register reg = otherKind switch
        {
            OpCodeOperandKind.al => Register.AL,
            OpCodeOperandKind.ax => Register.AX,
            OpCodeOperandKind.eax => Register.EAX,
            OpCodeOperandKind.rax => Register.RAX,
            OpCodeOperandKind.r8_reg => bitness == 64 ? (rng.Next(2) == 0 ? Register.AL + rng.Next(8) : Register.SPL + rng.Next(12)) : Register.AL + rng.Next(8),
            OpCodeOperandKind.r16_reg => Register.AX + rng.Next(bitness == 64 ? 16 : 8),
            OpCodeOperandKind.r32_reg => Register.EAX + rng.Next(bitness == 64 ? 16 : 8),
            OpCodeOperandKind.r64_reg => Register.RAX + rng.Next(16),
            _ => Register.None,
        };
        if (reg == Register.None)
            return false;
        insn = memFirst ? Instruction.Create(code, mem, reg) : Instruction.Create(code, reg, mem);
        return true;
    }

    private static ulong RandomU64(Random rng) => ((ulong)(uint)rng.Next() << 33) ^ ((ulong)(uint)rng.Next() << 11) ^ (uint)rng.Next();

    private static long RandomDisplacement(Random rng, int addressSize) => rng.Next(4) switch
    {
        0 => 0,
        1 => rng.Next(-128, 128),
        2 => addressSize == 16 ? rng.Next(-32768, 32768) : rng.Next(int.MinValue, int.MaxValue),
        _ => rng.Next(-1024, 1024),
    };

    private static MemoryOperand RandomMemory(Random rng, int bitness, int addressSize)
    {
        Register segment = RandomSegment(rng);
        long disp = RandomDisplacement(rng, addressSize);
        int displSize = disp == 0 && rng.Next(2) == 0 ? 0 : disp >= -128 && disp < 128 && rng.Next(2) == 0 ? 1 : addressSize == 16 ? 2 : 4;
        if (addressSize == 16)
        {
            (Register b, Register x) = rng.Next(9) switch
            {
                0 => (Register.BX, Register.SI),
                1 => (Register.BX, Register.DI),
                2 => (Register.BP, Register.SI),
                3 => (Register.BP, Register.DI),
                4 => (Register.SI, Register.None),
                5 => (Register.DI, Register.None),
                6 => (Register.BP, Register.None),
                7 => (Register.BX, Register.None),
                _ => (Register.None, Register.None),
            };
            return new MemoryOperand(b, x, 1, disp & 0xFFFF, b == Register.None ? 2 : displSize, false, segment);
        }
        int count = bitness == 64 ? 16 : 8;
        Register first = addressSize == 64 ? Register.RAX : Register.EAX;
        int pick = rng.Next(count + 2);
        Register baseReg = pick < count ? first + pick : pick == count && bitness == 64 ? (addressSize == 64 ? Register.RIP : Register.EIP) : Register.None;
        Register index = Register.None;
        if (baseReg != Register.RIP && baseReg != Register.EIP && rng.Next(2) == 0)
        {
            int i = rng.Next(count);
            if (i != 4)
                index = first + i;
        }
        int scale = 1 << rng.Next(4);
        if (baseReg == Register.RIP || baseReg == Register.EIP)
            return new MemoryOperand(baseReg, Register.None, 1, disp, 8, false, segment);
        if (baseReg == Register.None)
            displSize = 4;
        return new MemoryOperand(baseReg, index, scale, disp, displSize, false, segment);
    }
}
