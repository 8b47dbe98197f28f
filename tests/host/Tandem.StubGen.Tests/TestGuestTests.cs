using System;
using System.Collections.Generic;
using System.Linq;
using Iced.Intel;
using Tandem.StubGen.Guests;
using Xunit;

namespace Tandem.StubGen.Tests;

/// <summary>
/// Every generated test guest: the 16-byte TGST header the flat loader reads ("TGST", mode 32 or 64,
/// entry offset inside the image, a zero word), unique names, and byte-identical images from two builds.
/// </summary>
public class TestGuestImageTests
{
    internal const uint LoadAddress = 0x10_0000;

    internal static uint U32(byte[] b, int offset) => BitConverter.ToUInt32(b, offset);

    [Fact]
    public void EveryGuestHasAValidHeader()
    {
        IReadOnlyList<(string Name, byte[] Image)> guests = TestGuests.All();
        Assert.Equal(guests.Count, guests.Select(g => g.Name).Distinct().Count());
        foreach ((string name, byte[] image) in guests)
        {
            // The fuzzer's kit is data for the composer, not a guest (FuzzKitTests checks it).
            if (name == "fuzzkit")
            {
                Assert.Null(Tandem.Kvm.Fuzz.FuzzProgram.CheckKit(image));
                continue;
            }
            Assert.True(image.Length > 16, name);
            Assert.True(image.AsSpan(0, 4).SequenceEqual("TGST"u8), name);
            Assert.Contains(U32(image, 4), new uint[] { 32, 64 });
            uint entry = U32(image, 8);
            Assert.True(entry >= 16 && entry < image.Length, $"{name}: entry offset 0x{entry:X} outside the image");
            Assert.Equal(0u, U32(image, 12));
        }
    }

    [Fact]
    public void GuestsAreByteIdenticalBetweenBuilds()
    {
        IReadOnlyList<(string Name, byte[] Image)> first = TestGuests.All(), second = TestGuests.All();
        Assert.Equal(first.Select(g => g.Name), second.Select(g => g.Name));
        for (int i = 0; i < first.Count; i++)
            Assert.True(first[i].Image.AsSpan().SequenceEqual(second[i].Image), first[i].Name);
    }

    [Theory]
    [InlineData("smp32")]
    [InlineData("smpspin32")]
    [InlineData("ipibench32")]
    [InlineData("yieldbench32")]
    [InlineData("tick32")]
    public void TheSmpGuestsAreListedAs32BitImages(string name)
    {
        byte[] image = TestGuests.All().Single(g => g.Name == name).Image;
        Assert.Equal(32u, U32(image, 4));
    }
}

/// <summary>
/// The SMP guests' AP trampoline, decoded with Iced as an AP runs it after a SIPI with vector
/// <see cref="TestGuests.SmpSipiVector"/>: 16-bit real-mode code at <see cref="TestGuests.SmpTrampoline"/>
/// that loads its own GDT and IDTR, sets CR0.PE and far-jumps (16:32) to the 32-bit AP entry in the image.
/// </summary>
public class SmpGuestTests
{
    private static byte[] Image(string name) => TestGuests.All().Single(g => g.Name == name).Image;

    /// <summary>Decodes <paramref name="length"/> bytes from <paramref name="offset"/> as code at <paramref name="ip"/>.</summary>
    private static List<Instruction> Decode(byte[] code, int offset, int length, int bitness, ulong ip)
    {
        var decoder = Decoder.Create(bitness, new ByteArrayCodeReader(code, offset, length), ip);
        var list = new List<Instruction>();
        while (decoder.IP < ip + (ulong)length)
            list.Add(decoder.Decode());
        return list;
    }

    [Theory]
    [InlineData("smp32")]
    [InlineData("smpspin32")]
    [InlineData("ipibench32")]
    [InlineData("yieldbench32")]
    public void TrampolineIs16BitCodeThatFarJumpsToTheApEntry(string name)
    {
        byte[] blob = TestGuests.SmpTrampolineOf(name, out uint apEntry);
        Assert.Equal((int)TestGuests.SmpTrampolineSize, blob.Length);
        var decoder = Decoder.Create(16, new ByteArrayCodeReader(blob), TestGuests.SmpTrampoline);
        var code = new List<Instruction>();
        do
            code.Add(decoder.Decode());
        while (code[^1].Code != Code.Jmp_ptr1632 && code[^1].Code != Code.INVALID && decoder.IP < TestGuests.SmpTrampolineGdt);

        Assert.Equal(TestGuests.SmpTrampoline, code[0].IP);
        Assert.All(code, i => Assert.Equal(CodeSize.Code16, i.CodeSize));
        Assert.Equal(
            new[]
            {
                Mnemonic.Cli, Mnemonic.Cld, Mnemonic.Xor, Mnemonic.Mov, Mnemonic.Lgdt, Mnemonic.Lidt,
                Mnemonic.Mov, Mnemonic.And, Mnemonic.Or, Mnemonic.Mov, Mnemonic.Jmp,
            },
            code.Select(i => i.Mnemonic));
        Assert.Equal(Register.DS, code[3].Op0Register);                     // DS = 0 for the absolute operands
        Assert.Equal(TestGuests.SmpTrampolineGdtr, code[4].MemoryDisplacement32);
        Assert.Equal(TestGuests.SmpTrampolineIdtr, code[5].MemoryDisplacement32);
        Assert.Equal(Register.CR0, code[9].Op0Register);
        Instruction jump = code[^1];
        Assert.Equal(Code.Jmp_ptr1632, jump.Code);
        Assert.Equal(0x08, jump.FarBranchSelector);
        Assert.Equal(apEntry, jump.FarBranch32);
        Assert.True(decoder.IP <= TestGuests.SmpTrampolineGdt, "the code runs into the trampoline's GDT");

        // The AP entry is in the image, above 1 MiB, and starts by loading the data selectors.
        byte[] image = Image(name);
        Assert.InRange(apEntry, TestGuestImageTests.LoadAddress + TestGuestImageTests.U32(image, 8), TestGuestImageTests.LoadAddress + (uint)image.Length - 1);
        int offset = (int)(apEntry - TestGuestImageTests.LoadAddress);
        List<Instruction> entry = Decode(image, offset, 16, 32, apEntry);
        Assert.Equal("mov ax,10h", entry[0].ToString());
        Assert.Equal("mov ds,ax", entry[1].ToString());
    }

    [Theory]
    [InlineData("smp32")]
    [InlineData("smpspin32")]
    [InlineData("ipibench32")]
    [InlineData("yieldbench32")]
    public void TrampolineCarriesItsGdtAndPseudoDescriptors(string name)
    {
        byte[] blob = TestGuests.SmpTrampolineOf(name, out _);
        int gdt = (int)(TestGuests.SmpTrampolineGdt - TestGuests.SmpTrampoline);
        Assert.Equal(0UL, BitConverter.ToUInt64(blob, gdt));
        Assert.Equal(0x00CF_9A00_0000_FFFFUL, BitConverter.ToUInt64(blob, gdt + 8));    // 0x08: flat 32-bit code
        Assert.Equal(0x00CF_9200_0000_FFFFUL, BitConverter.ToUInt64(blob, gdt + 16));   // 0x10: flat data
        int gdtr = (int)(TestGuests.SmpTrampolineGdtr - TestGuests.SmpTrampoline);
        Assert.Equal(23, BitConverter.ToUInt16(blob, gdtr));
        Assert.Equal(TestGuests.SmpTrampolineGdt, BitConverter.ToUInt32(blob, gdtr + 2));
        int idtr = (int)(TestGuests.SmpTrampolineIdtr - TestGuests.SmpTrampoline);
        Assert.Equal(0x7FF, BitConverter.ToUInt16(blob, idtr));
        Assert.Equal(0u, BitConverter.ToUInt32(blob, idtr + 2));
    }

    /// <summary>
    /// The code from the entry to the trampoline's bytes is one run of valid 32-bit instructions, and the
    /// BSP copies exactly those bytes to <see cref="TestGuests.SmpTrampoline"/> (<c>mov esi, source;
    /// mov edi, 0x8000; mov ecx, size; rep movsb</c>).
    /// </summary>
    [Theory]
    [InlineData("smp32")]
    [InlineData("smpspin32")]
    [InlineData("ipibench32")]
    [InlineData("yieldbench32")]
    public void TheBspCopiesTheTrampolineFromTheImage(string name)
    {
        byte[] image = Image(name);
        byte[] blob = TestGuests.SmpTrampolineOf(name, out _);
        uint entry = TestGuestImageTests.U32(image, 8);
        List<Instruction> code = Decode(image, (int)entry, image.Length - (int)entry, 32, TestGuestImageTests.LoadAddress + entry);
        int copy = code.FindIndex(i => i.Code == Code.Movsb_m8_m8 && i.HasRepPrefix);
        Assert.True(copy >= 3, "no rep movsb");
        Assert.Equal("mov ecx,68h", code[copy - 1].ToString());
        Assert.Equal("mov edi,8000h", code[copy - 2].ToString());
        Assert.Equal(Register.ESI, code[copy - 3].Op0Register);
        uint source = code[copy - 3].Immediate32;
        int offset = (int)(source - TestGuestImageTests.LoadAddress);
        Assert.True(image.AsSpan(offset, blob.Length).SequenceEqual(blob));
        Assert.Equal(image.Length, offset + blob.Length);                       // the trampoline closes the image

        List<Instruction> all = Decode(image, (int)entry, offset - (int)entry, 32, TestGuestImageTests.LoadAddress + entry);
        Assert.DoesNotContain(all, i => i.Code == Code.INVALID);
        Assert.Equal(source, (uint)all[^1].NextIP);                             // instruction boundaries meet it
    }

    [Fact]
    public void MemoryLayoutFitsBelowTheLegacyHoleWithoutOverlaps()
    {
        const uint maxCpus = TestGuests.SmpMaxCpus;
        var ranges = new (string Name, uint Start, uint End)[]
        {
            ("GDT and IDT at 0", 0, 0x800),
            ("tables", TestGuests.SmpTables, TestGuests.SmpTables + TestGuests.SmpTablesSize),
            ("trampoline", TestGuests.SmpTrampoline, TestGuests.SmpTrampoline + TestGuests.SmpTrampolineSize),
            ("stacks", TestGuests.SmpStacks, TestGuests.SmpStacks + maxCpus * TestGuests.SmpStackSize),
        };
        foreach (var r in ranges)
            Assert.True(r.End <= 0xA_0000, r.Name);
        for (int i = 0; i < ranges.Length; i++)
            for (int j = i + 1; j < ranges.Length; j++)
                Assert.True(ranges[i].End <= ranges[j].Start || ranges[j].End <= ranges[i].Start, $"{ranges[i].Name} overlaps {ranges[j].Name}");
        Assert.Equal(TestGuests.SmpTrampoline, TestGuests.SmpSipiVector << 12);

        foreach (uint table in new[] { TestGuests.SmpTicks, TestGuests.SmpIpis, TestGuests.SmpAlive, TestGuests.SmpStarts, TestGuests.SpinProgress, TestGuests.SpinChecksum, TestGuests.SpinDone })
            Assert.InRange(table, TestGuests.SmpTables, TestGuests.SmpTables + TestGuests.SmpTablesSize - 4 * maxCpus);
        foreach (uint value in new[] { TestGuests.SmpCpuCount, TestGuests.SmpBooting, TestGuests.SmpBadApicId, TestGuests.SmpGo })
            Assert.InRange(value, TestGuests.SmpTables, TestGuests.SmpTables + TestGuests.SmpTablesSize - 4);

        // The spin data sits above the images (loaded at 1 MiB), 64 KiB per vCPU.
        uint imagesEnd = TestGuestImageTests.LoadAddress + (uint)TestGuests.All().Max(g => g.Image.Length);
        Assert.True(TestGuests.SpinData >= imagesEnd);
        Assert.Equal(0x1_0000u, TestGuests.SpinPages * 4096);
    }
}

/// <summary>
/// The SMP benchmark guests (ipibench32, yieldbench32) and tick32: their tables beside the SMP
/// guests', the code the host's bench relies on (the yield sequence whose ESI:EDI carry the guest's
/// TSC, the ICR write between two RDTSC, the EOI between two RDTSC in the IPI handler).
/// </summary>
public class SmpBenchGuestTests
{
    private static byte[] Image(string name) => TestGuests.All().Single(g => g.Name == name).Image;

    /// <summary>The image's code from its entry, decoded as 32-bit instructions up to the trampoline's bytes.</summary>
    private static List<Instruction> Code(string name)
    {
        byte[] image = Image(name);
        uint entry = TestGuestImageTests.U32(image, 8);
        int end = image.Length - (int)TestGuests.SmpTrampolineSize;
        var decoder = Decoder.Create(32, new ByteArrayCodeReader(image, (int)entry, end - (int)entry), TestGuestImageTests.LoadAddress + entry);
        var list = new List<Instruction>();
        while (decoder.IP < TestGuestImageTests.LoadAddress + (ulong)end)
            list.Add(decoder.Decode());
        return list;
    }

    [Fact]
    public void BenchTablesFitBesideTheSmpTablesAndAboveTheImages()
    {
        Assert.True(TestGuests.BenchVars >= TestGuests.SmpTables + TestGuests.SmpTablesSize);
        Assert.True(TestGuests.BenchVars + TestGuests.BenchVarsSize <= TestGuests.SmpTrampoline);
        foreach (uint v in new[] { TestGuests.BenchIpiCount, TestGuests.BenchApDone, TestGuests.BenchStart, TestGuests.BenchEnd })
            Assert.InRange(v, TestGuests.BenchVars, TestGuests.BenchVars + TestGuests.BenchVarsSize - 4);
        Assert.Equal(0u, TestGuests.BenchStart % 8);
        Assert.Equal(0u, TestGuests.BenchEnd % 8);
        Assert.True(TestGuests.IpiBenchTotalRounds <= TestGuests.BenchMaxRounds);
        Assert.Equal(0u, TestGuests.BenchMaxRounds & (TestGuests.BenchMaxRounds - 1));      // the handler masks its index
        uint imagesEnd = TestGuestImageTests.LoadAddress + (uint)TestGuests.All().Max(g => g.Image.Length);
        Assert.True(TestGuests.BenchStamps >= imagesEnd);
        Assert.Equal(TestGuests.BenchStamps + TestGuests.BenchStampsSize, TestGuests.IpiSeen + TestGuests.BenchTableSize);
        Assert.True(TestGuests.BenchStamps + TestGuests.BenchStampsSize <= 16u << 20, "the stamps fit the bench's 16 MiB of guest RAM");
        Assert.InRange(TestGuests.TickCount, 0x800u, 0xA_0000u - 4);                         // above tick32's GDT and IDT
    }

    [Fact]
    public void EveryYieldPassesTheTscInEsiEdiAndCallsHypercallOne()
    {
        List<Instruction> code = Code("yieldbench32");
        var vmcalls = Enumerable.Range(0, code.Count).Where(i => code[i].Mnemonic == Mnemonic.Vmcall).ToList();
        Assert.Equal(5, vmcalls.Count);          // the BSP's loop and its wait, vCPU 1's wait and loop, the park loop
        foreach (int i in vmcalls)
        {
            Assert.Equal("rdtsc", code[i - 4].ToString());
            Assert.Equal("mov esi,eax", code[i - 3].ToString());
            Assert.Equal("mov edi,edx", code[i - 2].ToString());
            Assert.Equal("mov eax,1", code[i - 1].ToString());
        }
        Assert.Equal(1u, TestGuests.HypercallYield);
    }

    [Fact]
    public void TheIpiIsSentAndEoiedBetweenTwoRdtsc()
    {
        List<Instruction> code = Code("ipibench32");
        // The bring-up writes the ICR too (INIT, SIPI); the rounds write a fixed IPI of the bench's vector.
        int icr = code.FindIndex(i => i.Mnemonic == Mnemonic.Mov && i.Op0Kind == OpKind.Memory && i.MemoryDisplacement32 == 0xFEE0_0300
            && i.Op1Kind == OpKind.Immediate32 && i.Immediate32 == (0x4000u | TestGuests.IpiBenchVector));
        Assert.True(icr > 0, "no ICR write of the fixed IPI");
        Assert.Equal("rdtsc", code[icr - 3].ToString());
        Assert.Equal("rdtsc", code[icr + 1].ToString());
        // The IPI handler: RDTSC, its EOI write (the other handlers EOI without one), RDTSC, then IRET.
        int eoi = Enumerable.Range(0, code.Count - 1).FirstOrDefault(k => code[k].Mnemonic == Mnemonic.Mov && code[k].Op0Kind == OpKind.Memory
            && code[k].MemoryDisplacement32 == 0xFEE0_00B0 && code[k + 1].Mnemonic == Mnemonic.Rdtsc, -1);
        Assert.True(eoi > 0, "no EOI write followed by RDTSC");
        int iret = code.FindIndex(eoi, i => i.Mnemonic == Mnemonic.Iretd);
        int entry = code.FindLastIndex(eoi, i => i.Mnemonic == Mnemonic.Iretd) + 1;
        Assert.Contains(code.Skip(entry).Take(eoi - entry), i => i.Mnemonic == Mnemonic.Rdtsc);
        Assert.True(iret > eoi + 1, "the handler does not return");
    }
}
