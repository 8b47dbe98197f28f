using System;
using CsCheck;
using Iced.Intel;
using Tandem.Kvm.Fuzz;
using Tandem.StubGen.Guests;
using Xunit;

namespace Tandem.StubGen.Tests;

/// <summary>
/// The guest fuzzer's kit (tools/StubGen/Guests/FuzzKit.cs) with the composer the kernel runs
/// (kvm/Fuzz/FuzzProgram.cs): the kit is well formed, a seed always gives the same guest, every
/// composed guest decodes as the steps it is made of, and a damaged kit is refused, never read
/// out of bounds.
/// </summary>
public class FuzzKitTests
{
    private static readonly byte[] Kit = FuzzKit.Build();
    private const uint Ram = 16u << 20;

    private static byte[] Compose(ulong seed, int steps, int[]? kinds = null)
    {
        var output = new byte[FuzzProgram.MaxLength(Kit, steps)];
        int length = FuzzProgram.Compose(Kit, seed, steps, Ram, output, kinds ?? []);
        return output.AsSpan(0, length).ToArray();
    }

    [Fact]
    public void TheKitIsWellFormed()
    {
        Assert.Null(FuzzProgram.CheckKit(Kit));
    }

    [Fact]
    public void ASeedAlwaysGivesTheSameGuest()
    {
        Assert.Equal(Compose(42, 500), Compose(42, 500));
        Assert.NotEqual(Compose(42, 500), Compose(43, 500));
    }

    /// <summary>
    /// For 300 seeds: the guest decodes, step after step, as a prologue (the step number, the
    /// address of the next step, the stack) and a fragment whose last instruction ends exactly where
    /// the next prologue begins, with no invalid instruction (a patch written over an opcode, or a
    /// length the composer got wrong, would break one of these); every kind of fragment is used.
    /// </summary>
    [Fact]
    public void EveryComposedGuestDecodesStepByStep()
    {
        uint runtimeLength = BitConverter.ToUInt32(Kit, 12);
        var kinds = new int[FuzzProgram.KindCount];
        for (ulong seed = 1; seed <= 300; seed++)
        {
            const int steps = 200;
            byte[] guest = Compose(seed, steps, kinds);
            var decoder = Decoder.Create(32, new ByteArrayCodeReader(guest, (int)runtimeLength, guest.Length - (int)runtimeLength), FuzzProgram.ImageBase + runtimeLength);
            for (int step = 0; step <= steps; step++)
            {
                Instruction record = decoder.Decode();
                Assert.True(record.Code == Code.Mov_rm32_imm32 && record.MemoryDisplacement32 == 0x8000 && record.Immediate32 == (uint)step, $"seed {seed} step {step}: no step record at 0x{record.IP:x}: {record}");
                if (step == steps)
                    break;
                Instruction resume = decoder.Decode();
                Assert.True(resume.Code == Code.Mov_rm32_imm32 && resume.MemoryDisplacement32 == 0x8004, $"seed {seed} step {step}: no resume address: {resume}");
                Instruction stack = decoder.Decode();
                Assert.Equal(Code.Mov_r32_imm32, stack.Code);
                ulong next = resume.Immediate32;
                while (decoder.IP < next)
                {
                    Instruction i = decoder.Decode();
                    Assert.True(i.Code != Code.INVALID, $"seed {seed} step {step}: an invalid instruction at 0x{i.IP:x}");
                }
                Assert.True(decoder.IP == next, $"seed {seed} step {step}: the fragment's last instruction ends at 0x{decoder.IP:x}, past the next step at 0x{next:x}");
            }
        }
        for (int k = 0; k < FuzzProgram.KindCount; k++)
            Assert.True(kinds[k] > 0, $"no fragment of kind {FuzzProgram.KindName(k)} in 300 guests");
    }

    /// <summary>
    /// 10^5 damaged kits (bytes of the header, the table and the patch list changed, or the module
    /// cut short): <see cref="FuzzProgram.CheckKit"/> refuses or accepts without throwing, and a
    /// kit it accepts composes a guest within <see cref="FuzzProgram.MaxLength"/> without throwing.
    /// The kernel reads the kit from a boot module, so this is a parser of outside input.
    /// </summary>
    [Fact]
    public void DamagedKitsAreRefusedOrComposeSafely()
    {
        uint table = BitConverter.ToUInt32(Kit, 20);
        uint count = BitConverter.ToUInt32(Kit, 16);
        int metadata = (int)(table + count * FuzzProgram.EntrySize) + 64;
        Gen<(int At, byte Value)> change = Gen.Select(Gen.Int[0, metadata - 1], Gen.Byte, (at, value) => (at, value));
        Gen<(byte[] Kit, ulong Seed)> cases = Gen.Select(change.Array[1, 6], Gen.Int[0, 3], Gen.ULong, (changes, cut, seed) =>
        {
            byte[] kit = (byte[])Kit.Clone();
            foreach (var (at, value) in changes)
                kit[at] = value;
            if (cut == 0)
                kit = kit.AsSpan(0, kit.Length / 2).ToArray();
            return (kit, seed);
        });
        int accepted = 0;
        cases.Sample(c =>
        {
            if (FuzzProgram.CheckKit(c.Kit) != null)
                return;
            accepted++;
            var output = new byte[FuzzProgram.MaxLength(c.Kit, 8)];
            int length = FuzzProgram.Compose(c.Kit, c.Seed, 8, Ram, output, []);
            Assert.InRange(length, 1, output.Length);
        }, iter: 100_000);
        Assert.True(accepted > 0, "no damaged kit was accepted: the compose half of the test never ran");
    }
}
