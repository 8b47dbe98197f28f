using System;
using System.Collections.Generic;
using System.Linq;
using CsCheck;
using Tandem.Mm;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Mm.Tests;

/// <summary>
/// Model-based property test (CsCheck): random sequences of primary faults, secondary faults and
/// accesses, unmaps, TryToUnmap, protection changes, aging and CPU page-walker accesses, run
/// single-threaded against a model (the set of mapped pages), with a strict recording secondary
/// MMU checking every callback. After every sequence the page tables, the reverse map, the frame
/// counts and the secondary must agree with the model. A failing sequence is shrunk to the
/// shortest and simplest that still fails; CsCheck prints it with its seed, and TANDEM_SEED set to
/// that seed replays it.
/// </summary>
public class RmapModelTests
{
    private const int Pages = 48;

    private readonly ITestOutputHelper _out;
    public RmapModelTests(ITestOutputHelper output) { _out = output; }

    /// <summary>The system under test: a bed and its strict secondary.</summary>
    public sealed class Actual
    {
        public readonly TestBed Bed;
        public readonly RecordingSecondaryMmu Sec;
        public readonly List<string> Errors = new List<string>();

        public Actual()
        {
            Bed = new TestBed(windowPages: Pages, memory: 2UL << 20, cpus: 2);
            Sec = Bed.AddSecondary();
            Sec.StrictCallbackChecks = true;
        }

        public override string ToString() => "bed with " + Bed.Mm.Rmap.Used + " mappings";
    }

    /// <summary>The model: which pages of the window are mapped.</summary>
    public sealed class Model
    {
        public readonly SortedSet<int> Mapped = new SortedSet<int>();

        public override string ToString() => "mapped {" + string.Join(",", Mapped) + "}";
    }

    // CsCheck builds many actual states and never disposes them: the previous one is disposed when
    // the next is created (the sample runs on one thread).
    private static Actual? s_last;
    private static readonly object s_lastGate = new object();

    private static Actual NewActual()
    {
        lock (s_lastGate)
        {
            s_last?.Bed.Dispose();
            s_last = new Actual();
            return s_last;
        }
    }

    private static readonly Gen<int> Page = Gen.Int[0, Pages - 1];

    private static GenOperation<Actual, Model>[] Operations() => new[]
    {
        Gen.Select(Page, Gen.Bool).Operation<Actual, Model>(t => "fault(" + t.Item1 + (t.Item2 ? ",w)" : ")"),
            (a, t) => Expect(a, a.Bed.Space.HandleFault(a.Bed.Page(t.Item1), t.Item2) == FaultStatus.Ok, "primary fault failed"),
            (m, t) => m.Mapped.Add(t.Item1)),
        Gen.Select(Page, Gen.Bool).Operation<Actual, Model>(t => "secondaryFault(" + t.Item1 + (t.Item2 ? ",w)" : ")"),
            (a, t) => Expect(a, a.Sec.Fault(a.Bed.Page(t.Item1), t.Item2) == FaultStatus.Ok, "secondary fault failed"),
            (m, t) => m.Mapped.Add(t.Item1)),
        Gen.Select(Page, Gen.Bool).Operation<Actual, Model>(t => "access(" + t.Item1 + (t.Item2 ? ",w)" : ")"),
            (a, t) => a.Sec.Access(a.Bed.Page(t.Item1), t.Item2),
            (m, t) => m.Mapped.Add(t.Item1)),
        Gen.Select(Page, Gen.Int[1, 6]).Operation<Actual, Model>(t => "unmap(" + t.Item1 + "+" + t.Item2 + ")",
            (a, t) => a.Bed.Space.Unmap(a.Bed.Page(t.Item1), a.Bed.Page(Math.Min(Pages, t.Item1 + t.Item2))),
            (m, t) => m.Mapped.RemoveWhere(i => i >= t.Item1 && i < t.Item1 + t.Item2)),
        Page.Operation<Actual, Model>(i => "tryToUnmap(" + i + ")",
            (a, i) =>
            {
                if (a.Bed.Space.TranslateFrame(a.Bed.Page(i), out Pfn f))
                    Expect(a, a.Bed.Mm.TryToUnmap(f), "TryToUnmap left a mapping");
            },
            (m, i) => m.Mapped.Remove(i)),
        Gen.Select(Page, Gen.Bool).Operation<Actual, Model>(t => "protect(" + t.Item1 + "+3," + (t.Item2 ? "ro)" : "rw)"),
            (a, t) => a.Bed.Space.Protect(a.Bed.Page(t.Item1), a.Bed.Page(Math.Min(Pages, t.Item1 + 3)), t.Item2 ? PageProt.User : PageProt.User | PageProt.Write),
            (m, t) => { }),
        Gen.Select(Page, Gen.Bool).Operation<Actual, Model>(t => "age(" + t.Item1 + (t.Item2 ? ",exact)" : ")"),
            (a, t) =>
            {
                if (a.Bed.Space.TranslateFrame(a.Bed.Page(t.Item1), out Pfn f))
                    a.Bed.Mm.AgeFrame(f, t.Item2);
            },
            (m, t) => { }),
        Gen.Select(Page, Gen.Bool).Operation<Actual, Model>(t => "cpu(" + t.Item1 + (t.Item2 ? ",w)" : ")"),
            (a, t) => a.Bed.HardwareTouch(t.Item1, t.Item2, out Pfn _),
            (m, t) => { }),
    };

    private static void Expect(Actual a, bool ok, string what)
    {
        if (!ok)
            a.Errors.Add(what);
    }

    /// <summary>Actual and model agree: same mapped pages, each with one rmap entry, map count and reference; distinct frames; no secondary violation.</summary>
    private static bool Agree(Actual a, Model m)
    {
        TestBed b = a.Bed;
        a.Sec.CheckQuiescent("end");
        if (a.Errors.Count > 0 || a.Sec.Violations > 0 || b.Machine.FreedWatch.Failures > 0)
            return false;
        HashSet<Pfn> frames = new HashSet<Pfn>();
        for (int i = 0; i < Pages; i++)
        {
            bool mapped = b.Space.TranslateFrame(b.Page(i), out Pfn f);
            if (mapped != m.Mapped.Contains(i))
                return false;
            if (!mapped)
                continue;
            if (!frames.Add(f) || !b.Mm.Rmap.Contains(f, b.Space, b.Page(i)) || b.Mm.Frames.MapCountOf(f) != 1 || b.Mm.Frames.RefCountOf(f) != 1)
                return false;
        }
        return b.Mm.Rmap.Used == m.Mapped.Count;
    }

    private static string Describe(Actual a) =>
        a.ToString() + (a.Errors.Count > 0 ? "; errors: " + string.Join("; ", a.Errors) : "") +
        (a.Sec.Violations > 0 ? "; secondary: " + string.Join("; ", a.Sec.Messages) : "") +
        (a.Bed.Machine.FreedWatch.Failures > 0 ? "; freed access: " + a.Bed.Machine.FreedWatch.FirstFailure : "");

    [Fact]
    public void ReverseMapMatchesTheModelAfterRandomOperations()
    {
        string? seed = TestSeed.FromEnvironment();
        _out.WriteLine(seed != null
            ? "seed " + seed + " (from " + TestSeed.Variable + ")"
            : "seed: a fresh one (CsCheck prints it with the shrunk sequence on failure; replay with " + TestSeed.Variable + "=<seed> dotnet test --filter " + nameof(ReverseMapMatchesTheModelAfterRandomOperations) + ")");
        try
        {
            Gen.Const(0).Select(_ => (NewActual(), new Model()))
                .SampleModelBased(Operations(), Agree, seed: seed!, iter: 1000, threads: 1, printActual: Describe, writeLine: _out.WriteLine);
        }
        finally
        {
            lock (s_lastGate)
            {
                s_last?.Bed.Dispose();
                s_last = null;
            }
        }
    }
}
