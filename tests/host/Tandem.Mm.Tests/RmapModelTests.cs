using System;
using System.Collections.Generic;
using Tandem.Mm;
using Xunit;

namespace Tandem.Mm.Tests;

/// <summary>Random operation sequences against a simple model (va → frame), single-threaded,
/// with a strict recording secondary MMU checking every callback.</summary>
public class RmapModelTests
{
    private const int Pages = 48;

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void ReverseMapMatchesTheModelAfterRandomOperations(int seed)
    {
        using TestBed b = new TestBed(windowPages: Pages);
        RecordingSecondaryMmu sec = b.AddSecondary();
        sec.StrictCallbackChecks = true;
        Random rng = new Random(seed);
        Dictionary<int, Pfn> model = new Dictionary<int, Pfn>();
        for (int op = 0; op < 3000; op++)
        {
            int i = rng.Next(Pages);
            switch (rng.Next(7))
            {
                case 0:
                    Assert.Equal(FaultStatus.Ok, b.Space.HandleFault(b.Page(i), rng.Next(2) == 0));
                    if (!model.ContainsKey(i))
                    {
                        Assert.True(b.Space.TranslateFrame(b.Page(i), out Pfn f));
                        Assert.DoesNotContain(f, model.Values);
                        model[i] = f;
                    }
                    break;
                case 1:
                    Assert.Equal(FaultStatus.Ok, sec.Fault(b.Page(i), rng.Next(2) == 0));
                    if (!model.ContainsKey(i))
                    {
                        b.Space.TranslateFrame(b.Page(i), out Pfn f);
                        model[i] = f;
                    }
                    break;
                case 2:
                    {
                        int n = 1 + rng.Next(6);
                        b.Space.Unmap(b.Page(i), b.Page(Math.Min(Pages, i + n)));
                        for (int k = i; k < Math.Min(Pages, i + n); k++)
                            model.Remove(k);
                        break;
                    }
                case 3:
                    if (model.TryGetValue(i, out Pfn victim))
                    {
                        Assert.True(b.Mm.TryToUnmap(victim));
                        model.Remove(i);
                    }
                    break;
                case 4:
                    b.Space.Protect(b.Page(i), b.Page(Math.Min(Pages, i + 3)), rng.Next(2) == 0 ? PageProt.User : PageProt.User | PageProt.Write);
                    break;
                case 5:
                    if (model.TryGetValue(i, out Pfn aged))
                        b.Mm.AgeFrame(aged, rng.Next(2) == 0);
                    break;
                case 6:
                    sec.Access(b.Page(i), rng.Next(2) == 0);
                    if (!model.ContainsKey(i))
                    {
                        b.Space.TranslateFrame(b.Page(i), out Pfn f);
                        model[i] = f;
                    }
                    break;
            }
            CheckAgainstModel(b, model);
        }
        sec.CheckQuiescent("end");
        Assert.True(sec.Violations == 0, string.Join("\n", sec.Messages));
    }

    private static void CheckAgainstModel(TestBed b, Dictionary<int, Pfn> model)
    {
        for (int i = 0; i < Pages; i++)
        {
            bool mapped = b.Space.TranslateFrame(b.Page(i), out Pfn f);
            Assert.Equal(model.ContainsKey(i), mapped);
            if (!mapped)
                continue;
            Assert.Equal(model[i], f);
            Assert.True(b.Mm.Rmap.Contains(f, b.Space, b.Page(i)));
            Assert.Equal(1, b.Mm.Frames.MapCountOf(f));
            Assert.Equal(1, b.Mm.Frames.RefCountOf(f));
        }
        Assert.Equal(model.Count, b.Mm.Rmap.Used);
    }
}
