using Tandem.Mm;
using Tandem.Testing;
using Xunit;

namespace Tandem.Mm.Tests;

/// <summary>
/// Without a swap device (the kernel's <c>swap=off</c>), an anonymous page has nowhere to keep its
/// contents, so reclaim never takes it: eviction and <c>TryReclaim</c> leave it mapped and every
/// byte stays. Before, both dropped it, and the guest found zeros where it had written.
/// </summary>
public unsafe class NoSwapKeepsAnonymousTests
{
    [Fact]
    public void EvictionAndTryReclaimNeverDropAnAnonymousPageWithoutSwap()
    {
        using TestBed b = new TestBed(windowPages: 64);
        b.Mm.DropAnonymousWithoutSwap = false;            // the kernel's setting (the beds drop)
        for (int i = 0; i < 32; i++)
            SwapTests.Write(b, i, 0x4444_0000UL + (ulong)i);
        int evicted = 0;
        for (int round = 0; round < 8; round++)
        {
            b.Mm.AgingPass();
            evicted += b.Mm.Evict(32);
        }
        int reclaimed = 0;
        for (int i = 0; i < 32; i++)
        {
            Assert.True(b.Space.TranslateFrame(b.Page(i), out Pfn f), "page " + i + " lost its mapping");
            b.Mm.AgeFrame(f, exact: true);              // old everywhere, so only the policy keeps it
            if (b.Mm.TryReclaim(f))
                reclaimed++;
        }
        Assert.Equal(0, evicted);
        Assert.Equal(0, reclaimed);
        for (int i = 0; i < 32; i++)
            Assert.Equal(0x4444_0000UL + (ulong)i, SwapTests.Read(b, i, out Pfn _));
        b.Space.Unmap(b.Page(0), b.Page(64));
    }

    /// <summary>The beds' model (dropping allowed) still drops: the same pages are evicted and come back as zero.</summary>
    [Fact]
    public void TheBedsDroppingModelStillEvicts()
    {
        using TestBed b = new TestBed(windowPages: 64);
        Assert.True(b.Mm.DropAnonymousWithoutSwap);
        for (int i = 0; i < 32; i++)
            SwapTests.Write(b, i, 0x5555_0000UL + (ulong)i);
        int evicted = 0;
        for (int round = 0; round < 8 && evicted == 0; round++)
        {
            b.Mm.AgingPass();
            evicted += b.Mm.Evict(32);
        }
        Assert.True(evicted > 0, "nothing was evicted");
        int zero = 0;
        for (int i = 0; i < 32; i++)
        {
            if (SwapTests.Read(b, i, out Pfn _) == 0)
                zero++;
        }
        Assert.Equal(evicted, zero);
        b.Space.Unmap(b.Page(0), b.Page(64));
    }
}
