using Tandem.Kvm.Ept;
using Tandem.Mm;
using Xunit;

namespace Tandem.Kvm.Tests;

/// <summary>
/// The generational LRU (mm/Reclaim) with the EPT shadow as the secondary MMU: guest accesses set
/// EPT accessed bits that the primary never sees; the aging walk finds them with the EPT's
/// lockless fast-only call, and eviction's exact check (ClearFlushYoung through the EPT) keeps a
/// page the guest uses.
/// </summary>
public class LruEptTests
{
    private static int Gen(EptBed b, int page)
    {
        Assert.True(b.PrimaryFrame(page, out Pfn f));
        return b.Mm.Lru.GenerationOf(f);
    }

    [Fact]
    public void GuestTouchedPagesAgeYoungAndEvictionKeepsAPageTheGuestUses()
    {
        using EptBed b = new EptBed(pages: 64);
        KvmMachine.ThreadCpu = 0;
        for (int i = 0; i < 64; i++)
            b.Touch(i, i % 2 == 0, cpu: 1);
        Assert.Equal(64, b.Mm.Lru.PagesIn(0));
        // Old everywhere: the exact clear also flushes the vCPU's cached translations.
        Assert.True(b.Ept.ClearFlushYoung(b.Space, b.Hva(0), b.Hva(64)));
        for (int i = 0; i < 64; i++)
        {
            Assert.True(b.PrimaryFrame(i, out Pfn f));
            b.Mm.AgeFrame(f, exact: true);
        }
        // The guest's hot set, touched before each pass: EPT A bits only. The fast-only clear does
        // not flush, so a vCPU whose TLB still holds the translation sets no A bit (as hardware):
        // each round touches from another vCPU, whose TLB was flushed by the exact clear.
        for (int pass = 0; pass < 2; pass++)
        {
            for (int i = 0; i < 8; i++)
                b.Touch(i, false, cpu: 1 + pass);
            Assert.True(b.Mm.AgingPass()); // found through the fast-only call (per page: the EPT has no bitmap call)
        }
        for (int i = 0; i < 64; i++)
            Assert.Equal(i < 8 ? 1 : 0, Gen(b, i));
        Assert.Equal(16, b.Mm.Lru.Stats.PagesAged);
        b.Touch(40, true, cpu: 1);       // the guest uses a page of the oldest generation
        Assert.Equal(55, b.Mm.Evict(64));
        for (int i = 0; i < 64; i++)
        {
            bool kept = i < 8 || i == 40;
            Assert.Equal(kept, b.PrimaryFrame(i, out _));
            Assert.Equal(kept, b.Leaf(i).IsPresent);
        }
        Assert.Equal(b.Mm.Lru.MaxSeq, Gen(b, 40));
        Assert.Equal(1, b.Mm.Lru.Stats.EvictionsKeptYoung);
        Assert.Empty(b.Problems(strict: true));
        Assert.Equal(9, b.Mm.Lru.Validate());
        // The evicted pages fault back in through the EPT (refaults into the youngest generation).
        b.Touch(20, false, cpu: 1);
        Assert.Equal(1, b.Mm.Lru.Stats.Refaults);
        Assert.Equal(b.Mm.Lru.MaxSeq, Gen(b, 20));
    }
}
