using Tandem.Kvm.Ept;
using Tandem.Mm;
using Xunit;

namespace Tandem.Kvm.Tests;

/// <summary>EptMmu on the caching-TLB model: a missing or misplaced INVEPT shows up as a stale translation.</summary>
public class CachingTlbTests
{
    [Fact]
    public void FaultInThenHostUnmapMakesTheVcpuMissAndRefault()
    {
        using EptBed b = new EptBed();
        Pfn first = b.Touch(3, true, cpu: 0);
        Assert.Equal(EptTlbModel.Outcome.Hit, b.TryAccess(3, false, 0, out Pfn again));
        Assert.Equal(first, again);
        // The host unmaps the page on the same CPU the vCPU runs on: only the local INVEPT can save us.
        b.Space.Unmap(b.Hva(3), b.Hva(4));
        Assert.False(b.Leaf(3).IsPresent);
        Assert.Equal(EptTlbModel.Outcome.EptViolation, b.TryAccess(3, false, 0, out Pfn _));
        Pfn refaulted = b.Touch(3, false, cpu: 0);
        Assert.True(b.PrimaryFrame(3, out Pfn primary));
        Assert.Equal(primary, refaulted);
        Assert.Equal(0L, b.Machine.Tlb.Violations);
        Assert.Equal(0, b.Auditor!.Violations);
    }

    [Fact]
    public void ReclaimOnAnotherCpuShootsDownTheVcpusTranslation()
    {
        using EptBed b = new EptBed();
        Pfn f = b.Touch(5, true, cpu: 2);
        KvmMachine.ThreadCpu = 0;
        long remote = b.Machine.RemoteFlushCount;
        Assert.True(b.Mm.TryToUnmap(f));
        Assert.Equal(remote + 1, b.Machine.RemoteFlushCount);
        Assert.Equal(EptTlbModel.Outcome.EptViolation, b.TryAccess(5, false, 2, out Pfn _));
        Assert.Equal(0L, b.Machine.Tlb.Violations);
    }

    /// <summary>
    /// The mutation check, kept as a test: a platform that drops INVEPT and the remote flush lets
    /// the vCPU keep using a translation of a frame the host already freed and reused — the model
    /// must see it, or the tests above prove nothing.
    /// </summary>
    [Fact]
    public void WithoutInveptTheVcpuUsesAStaleTranslationAndTheModelSeesIt()
    {
        using EptBed b = new EptBed();
        Pfn f = b.Touch(3, true, cpu: 0);
        b.Machine.DropEptFlushes = true;
        Assert.True(b.Mm.TryToUnmap(f));
        // Reuse the freed frame for another guest page, which writes its own data into it.
        for (int i = 10; i < 40 && b.Machine.Tlb.Violations == 0; i++)
        {
            b.Touch(i, true, cpu: 1);
            b.TryAccess(3, false, 0, out Pfn _);
        }
        Assert.True(b.Machine.Tlb.Violations > 0, "a stale translation must be observed when INVEPT is missing");
    }

    [Fact]
    public void OneInveptPerInvalidatedRange()
    {
        using EptBed b = new EptBed(pages: 64);
        for (int i = 0; i < 64; i++)
            b.Touch(i, true, cpu: 1);
        long inv = b.Machine.InvEptCount;
        long remote = b.Machine.RemoteFlushCount;
        KvmMachine.ThreadCpu = 0;
        b.Space.Unmap(b.Hva(0), b.Hva(64));
        Assert.Equal(inv + 1, b.Machine.InvEptCount);
        Assert.Equal(remote + 1, b.Machine.RemoteFlushCount);
        for (int i = 0; i < 64; i++)
            Assert.False(b.Leaf(i).IsPresent);
        Assert.Equal(0, b.Machine.Tlb.CachedCount(1));
    }

    [Fact]
    public void WriteToReadOnlyPrimaryUpgradesInPlaceAndProtectRevokes()
    {
        using EptBed b = new EptBed();
        Pfn r = b.Touch(7, false);
        Assert.True(b.Leaf(7).IsPresent);
        Pfn w = b.Touch(7, true);
        Assert.Equal(r, w);
        Assert.True(b.Leaf(7).IsWritable && b.Leaf(7).IsDirty);
        b.Space.Protect(b.Hva(0), b.Hva(64), PageProt.User);
        Assert.False(b.Leaf(7).IsPresent);
        Assert.Equal(EptTlbModel.Outcome.EptViolation, b.TryAccess(7, true, 0, out Pfn _));
        // A read now maps the page read-only in EPT, as the primary does.
        Assert.Equal(w, b.Touch(7, false));
        Assert.True(b.Leaf(7).IsPresent);
        Assert.False(b.Leaf(7).IsWritable);
        Assert.Equal(0, b.Auditor!.Violations);
    }
}
