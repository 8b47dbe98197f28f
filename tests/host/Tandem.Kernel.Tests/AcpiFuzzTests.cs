using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using CsCheck;
using Tandem.Kernel.Parsers;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kernel.Tests;

/// <summary>
/// <see cref="AcpiParser"/> on broken firmware tables: 100,000 cases. Each builds a fake physical
/// memory with an RSDT, an XSDT, a FACP and a MADT listing 0 to 90 processors (local APIC and
/// x2APIC entries, some disabled, some with the same id, more than Tandem's 64), then mutates the
/// tables (lengths, pointers, entry lengths, signatures) and the RSDP, and repairs the checksums
/// half of the time so that the mutations reach the MADT. The RSDP is also hidden at a random
/// 16-byte boundary of random bytes for <see cref="AcpiParser.FindRsdp"/>. Every read is of a
/// span, so a read outside what the memory gives throws. The parser must refuse with one of its
/// documented strings or return processors that a naive reading of the chosen MADT agrees with.
/// </summary>
public sealed class AcpiFuzzTests
{
    public const int Cases = 100_000;
    private readonly ITestOutputHelper _out;
    public AcpiFuzzTests(ITestOutputHelper output) { _out = output; }

    public sealed record Input(byte[] Memory, byte[] Rsdp, byte[] Area, int RsdpAt);

    public static Gen<Input> Inputs()
    {
        Gen<AcpiBuilder.Cpu> cpu = Gen.Select(Gen.Int[0, 4], Gen.UInt[0, 70], Gen.Frequency((6, Gen.Const(1u)), (1, Gen.UInt[0, 3])))
            .Select((kind, id, flags) => new AcpiBuilder.Cpu(kind == 0, kind == 1 ? id + 250 : id, flags));
        Gen<(int, int, ulong)[]> ops = Gen.Frequency((1, Gen.Const(Array.Empty<(int, int, ulong)>())), (4, Mutations.Operation.Array[1, 6]));
        return Gen.Select(cpu.Array[0, 90], Gen.Int[0, 2], ops, Gen.Select(Mutations.Operation.Array[0, 2], Gen.Bool, Gen.Int[0, 63], Gen.Byte.Array[1024]))
            .Select((cpus, rsdpKind, memoryOps, more) =>
            {
                var (rsdpOps, repair, rsdpSlot, area) = more;
                // Most ids distinct (the entry's index), some drawn from a small range (duplicates).
                cpus = cpus.Select((c, i) => c.Id % 100 < 60 ? c with { Id = (uint)i + (c.X2 ? 250u : 0) } : c with { Id = c.Id % 100 - 60 }).ToArray();
                byte[] m = AcpiBuilder.Memory(cpus);
                // Mutate the tables (the first 6 KiB of the fake memory), then maybe repair the checksums.
                byte[] window = Mutations.Apply(m.AsSpan(0, 0x1800).ToArray(), memoryOps);
                Array.Clear(m, 0, 0x1800);
                window.AsSpan(0, Math.Min(window.Length, 0x1800)).CopyTo(m);
                if (repair)
                    AcpiBuilder.FixAll(m);
                byte[] rsdp = AcpiBuilder.Rsdp(rsdpKind > 0, (uint)(AcpiBuilder.Base + AcpiBuilder.RsdtAt), rsdpKind == 2 ? AcpiBuilder.Base + AcpiBuilder.XsdtAt : 0);
                rsdp = Mutations.Apply(rsdp, rsdpOps);
                if (repair)
                    AcpiBuilder.FixRsdp(rsdp);
                int at = rsdpSlot * 16;
                rsdp.AsSpan(0, Math.Min(rsdp.Length, area.Length - at)).CopyTo(area.AsSpan(at));
                return new Input(m, rsdp, area, at);
            });
    }

    private static readonly string[] Refusals = { AcpiParser.BadRsdp, AcpiParser.NoMadt };

    [Fact]
    public void BrokenTablesAreRefusedOrReadSanely()
    {
        string? seed = TestSeed.FromEnvironment();
        long accepted = 0, refused = 0, many = 0;
        var clock = Stopwatch.StartNew();
        Inputs().Sample(input =>
        {
            int cpus = Check(input);
            if (cpus < 0)
                Interlocked.Increment(ref refused);
            else
            {
                Interlocked.Increment(ref accepted);
                if (cpus > AcpiInfo.MaxApics)
                    Interlocked.Increment(ref many);
            }
        }, seed: seed!, iter: Cases, writeLine: _out.WriteLine, print: i => $"rsdp {Convert.ToHexString(i.Rsdp)} tables {Convert.ToHexString(i.Memory.AsSpan(0, 0x1800))}");
        _out.WriteLine($"{Cases} cases in {clock.Elapsed.TotalSeconds:F1} s: {accepted} accepted ({many} listing more than {AcpiInfo.MaxApics} CPUs), {refused} refused");
        Assert.Equal(Cases, accepted + refused);
        Assert.True(accepted > Cases / 5, "the mutations rarely reach the MADT: " + accepted);
        Assert.True(many > Cases / 100, "few MADTs with too many CPUs: " + many);
    }

    /// <summary>Parses one input and checks the result; the CPUs the MADT listed, or -1 when refused.</summary>
    public static int Check(Input input)
    {
        int found = AcpiParser.FindRsdp(input.Area);
        if (found >= 0)
        {
            Assert.True(found % 16 == 0 && found + 20 <= input.Area.Length && AcpiBuilder.Sum(input.Area.AsSpan(found, 20)) == 0, "FindRsdp: not an RSDP");
            Assert.True(found <= input.RsdpAt || AcpiBuilder.Sum(input.Rsdp.AsSpan(0, Math.Min(20, input.Rsdp.Length))) != 0 || input.Rsdp.Length < 20
                || BinaryPrimitives.ReadUInt64LittleEndian(input.Rsdp) != 0x2052545020445352UL, "FindRsdp skipped the valid RSDP");
        }

        var memory = new FakeMemory(input.Memory);
        var info = new AcpiInfo();
        string? problem = AcpiParser.Parse(ref memory, input.Rsdp, ref info);
        Assert.True(memory.Reads <= 2 * (2 * AcpiParser.MaxRootEntries + 3), "too many reads: " + memory.Reads);
        if (problem != null)
        {
            Assert.Contains(problem, Refusals);
            return -1;
        }
        ReadOnlySpan<byte> madt = memory.Read(info.MadtAddress, 36);
        Assert.True(madt.Length == 36 && madt[0] == 'A' && madt[1] == 'P' && madt[2] == 'I' && madt[3] == 'C', "the MADT is not one");
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(madt.Slice(4));
        madt = memory.Read(info.MadtAddress, (int)length);
        Assert.True(madt.Length == length && AcpiBuilder.Sum(madt) == 0, "the MADT's checksum is wrong");

        // The naive reading of the MADT.
        var ids = new List<uint>();
        int listed = 0, duplicates = 0, dropped = 0;
        bool truncated = false;
        for (int off = 44; off + 2 <= madt.Length;)
        {
            int type = madt[off], len = madt[off + 1];
            if (len < 2 || off + len > madt.Length)
            {
                truncated = true;
                break;
            }
            uint? id = null;
            if (type == 0 && len >= 8 && (BinaryPrimitives.ReadUInt32LittleEndian(madt.Slice(off + 4)) & 3) != 0)
                id = madt[off + 3];
            if (type == 9 && len >= 16 && (BinaryPrimitives.ReadUInt32LittleEndian(madt.Slice(off + 8)) & 3) != 0)
                id = BinaryPrimitives.ReadUInt32LittleEndian(madt.Slice(off + 4));
            if (id != null)
            {
                listed++;
                if (ids.Contains(id.Value))
                    duplicates++;
                else if (ids.Count >= AcpiInfo.MaxApics)
                    dropped++;
                else
                    ids.Add(id.Value);
            }
            off += len;
        }
        Assert.Equal(truncated, info.MadtTruncated);
        Assert.Equal(listed, info.ListedCpus);
        Assert.Equal(ids.Count, info.ApicCount);
        Assert.Equal(dropped, info.DroppedCpus);
        Assert.Equal(duplicates, info.DuplicateIds);
        for (int i = 0; i < info.ApicCount; i++)
            Assert.Equal(ids[i], info.ApicId(i));
        return ids.Count + dropped;
    }
}
