using System;
using System.Collections.Generic;
using System.Threading;
using Tandem.Kvm.Ept;
using Tandem.Kvm.Tests;
using Tandem.Mm;

namespace Tandem.Kvm.Bench;

internal static unsafe class BenchBeds
{
    /// <summary>A VM with <paramref name="pages"/> guest pages, all faulted into the primary and the EPT.</summary>
    public static EptBed Filled(int pages, int extraPages = 0)
    {
        int total = pages + extraPages;
        EptBed b = new EptBed(pages: total, memory: ((ulong)total * 4096) + (64UL << 20), cpus: 4, audit: false, tablePages: 1024);
        for (int i = 0; i < total; i++)
        {
            if (b.Ept.HandleViolation(b.Gpa(i), true) != FaultStatus.Ok)
                throw new InvalidOperationException("fill");
        }
        return b;
    }

    /// <summary>Pointers to the live leaves of the first <paramref name="pages"/> pages, in order.</summary>
    public static ulong*[] LeafPointers(EptBed b, int pages = -1)
    {
        List<IntPtr> list = new List<IntPtr>();
        GuestPhysAddr end = pages < 0 ? b.Gpa(b.Pages) : b.Gpa(pages);
        foreach (EptSlot s in new EptWalker<EptHostPlatform>(b.Ept.Platform, b.Ept.Root, b.Gpa(0), end))
            list.Add((IntPtr)s.Pointer);
        ulong*[] result = new ulong*[list.Count];
        for (int i = 0; i < result.Length; i++)
            result[i] = (ulong*)list[i];
        return result;
    }

    /// <summary>Every <paramref name="every"/>-th leaf young (as a vCPU would leave it), the others old.</summary>
    public static void SetYoung(ulong*[] leaves, int every)
    {
        for (int i = 0; i < leaves.Length; i++)
        {
            if (i % every == 0)
                Interlocked.Or(ref *leaves[i], EptEntry.Accessed);
            else
                Interlocked.And(ref *leaves[i], ~EptEntry.Accessed);
        }
    }
}
