using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using Tandem.Kvm.Ept;
using Tandem.Mm;
using Tandem.Testing;

namespace Tandem.Kvm.Tests;

/// <summary>
/// A model of the CPUs' EPT TLBs. A vCPU access on CPU c uses c's cached translation of the guest
/// frame if there is one; otherwise it walks the EPT like the hardware (setting A in every entry
/// it uses and D in the leaf on a write, with Interlocked), caches the result, and uses it. A
/// cached translation stays until INVEPT on that CPU or a remote flush naming it. The walk-fill
/// and the data access run under the CPU's lock, as does the flush: a flush can never overtake an
/// access that was already using a translation (the IPI waits for the VM exit).
/// </summary>
/// <remarks>
/// Every access checks the frame it used: it must not be free (reference count 0), and the page
/// data tag (word 0 = gfn + 1, written by vCPU writes) must be 0 or the accessed gfn's tag: a tag of
/// another guest frame means the vCPU reached a frame that was freed and reused behind its back.
/// </remarks>
public sealed unsafe class EptTlbModel
{
    public enum Outcome { Hit, Walked, EptViolation }

    private struct Cached
    {
        public Pfn Frame;
        public bool Writable;
        public bool Dirty;
    }

    private sealed class CpuTlb
    {
        // A test lock, not a Monitor: a vCPU may be parked by the explorer in the middle of a walk
        // while a flusher waits for this lock.
        public readonly TestSpinLock Lock = new TestSpinLock();
        public readonly Dictionary<ulong, Cached> Map = new Dictionary<ulong, Cached>();
    }

    private readonly KvmMachine _machine;
    private readonly CpuTlb[] _cpus;
    public Func<Pfn, bool>? FrameLive;
    public long Hits, Walks, Faults, Violations;
    public readonly ConcurrentQueue<string> Messages = new ConcurrentQueue<string>();

    public EptTlbModel(KvmMachine machine, int cpus)
    {
        _machine = machine;
        _cpus = new CpuTlb[cpus];
        for (int i = 0; i < cpus; i++)
            _cpus[i] = new CpuTlb();
    }

    public void FlushCpu(int cpu)
    {
        CpuTlb t = _cpus[cpu];
        using (t.Lock.Hold())
            t.Map.Clear();
    }

    public int CachedCount(int cpu)
    {
        CpuTlb t = _cpus[cpu];
        using (t.Lock.Hold())
            return t.Map.Count;
    }

    /// <summary>One guest access through CPU <paramref name="cpu"/>'s TLB. EptViolation means "exit and fault".</summary>
    public Outcome Access(EptMmu<EptHostPlatform> ept, int cpu, GuestPhysAddr gpa, bool write, out Pfn frame)
    {
        ept.Activate(cpu); // before "VM entry" on this CPU
        CpuTlb t = _cpus[cpu];
        ulong gfn = gpa.Value >> 12;
        using (t.Lock.Hold())
        {
            Outcome outcome;
            if (t.Map.TryGetValue(gfn, out Cached c) && (!write || (c.Writable && c.Dirty)))
            {
                frame = c.Frame;
                Interlocked.Increment(ref Hits);
                outcome = Outcome.Hit;
            }
            else
            {
                t.Map.Remove(gfn);
                if (!Walk(ept, gpa, write, out frame, out bool writable, out bool dirty))
                {
                    Interlocked.Increment(ref Faults);
                    return Outcome.EptViolation;
                }
                t.Map[gfn] = new Cached { Frame = frame, Writable = writable, Dirty = dirty };
                Interlocked.Increment(ref Walks);
                outcome = Outcome.Walked;
            }
            UseFrame(frame, gfn, write);
            return outcome;
        }
    }

    private void UseFrame(Pfn frame, ulong gfn, bool write)
    {
        if (FrameLive != null && !FrameLive(frame))
            Violation("vCPU used freed frame " + frame.Value + " for gfn " + gfn);
        ulong* word = (ulong*)_machine.FrameBytes(frame);
        if (write)
        {
            Volatile.Write(ref *word, gfn + 1);
            return;
        }
        ulong tag = Volatile.Read(ref *word);
        if (tag != 0 && tag != gfn + 1)
            Violation("vCPU read gfn " + gfn + " from frame " + frame.Value + " holding gfn " + (tag - 1) + "'s data");
    }

    /// <summary>
    /// The hardware page walk (SDM Vol. 3C, 29.3.2), setting A/D as in 29.3.5: A in every entry it
    /// uses (non-leaf and leaf), D in the leaf on a write. Each update is a locked RMW that the CPU
    /// makes only while the entry is still the present entry it read (a compare-exchange here; a
    /// zap that won leaves the entry alone and the walk starts that level again). Every read and
    /// update is an explorer step (<see cref="SharedAccessKind.HardwareWalk"/>) and is checked
    /// against freed table pages.
    /// </summary>
    public static bool Walk(EptMmu<EptHostPlatform> ept, GuestPhysAddr gpa, bool write, out Pfn frame, out bool writable, out bool dirty)
    {
        frame = default;
        writable = dirty = false;
        EptHostPlatform p = ept.Platform;
        PhysAddr table = ept.Root;
        for (int level = 4; level >= 1; level--)
        {
            ulong* slot = p.TableAt(table) + gpa.TableIndex(level);
            while (true)
            {
                AccessMonitor.Step(SharedAccessKind.HardwareWalk, (ulong)slot);
                EptEntry e = new EptEntry(Volatile.Read(ref *slot));
                if (!e.IsPresent)
                    return false;
                bool leaf = e.IsLeaf(level);
                if (leaf && write && !e.IsWritable)
                    return false;
                ulong n = e.Value | EptEntry.Accessed | (leaf && write ? EptEntry.Dirty : 0);
                if (n != e.Value)
                {
                    AccessMonitor.Step(SharedAccessKind.HardwareWalk, (ulong)slot);
                    // The CPU's locked A/D update; pairs with EptOps.Exchange (zap) and
                    // EptOps.CompareExchange (aging): whoever comes second sees the other's change.
                    if (Interlocked.CompareExchange(ref *slot, n, e.Value) != e.Value)
                        continue;
                }
                if (!leaf)
                {
                    table = e.TableAddress;
                    break;
                }
                ulong size = PageSizes.ForLevel(level);
                frame = new PhysAddr(e.LeafAddress(level).Value + (gpa.Value & (size - 1))).Pfn;
                writable = e.IsWritable;
                dirty = (n & EptEntry.Dirty) != 0;
                return true;
            }
        }
        return false;
    }

    private void Violation(string message)
    {
        Interlocked.Increment(ref Violations);
        if (Messages.Count < 20)
            Messages.Enqueue(message);
    }
}
