using System;
using System.Threading;
using Tandem.Kvm.Devices;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests.Devices;

/// <summary>
/// Three real threads act as the three vCPUs of one VM, as the kernel's vCPU threads will: each
/// touches the platform only under its <see cref="PcPlatform.Lock"/>, acknowledges and EOIs what
/// its local APIC holds, passes each IPI on to another vCPU through its own ICR, and sleeps until
/// kicked when it has nothing to do. A lost kick leaves a vCPU asleep with an IPI pending (the
/// run stalls), a lost or doubled delivery changes the counts, a race on the APIC state loses a
/// token.
/// </summary>
public class SmpThreadsTests
{
    private const int Cpus = 3;
    private const int Tokens = 6;           // vectors 0x40-0x45: one instance of each exists at any time
    private const int Hops = 3000;          // per token
    private const int FirstVector = 0x40;
    private const ulong ApicPage = 0xFEE0_0000;
    private static readonly TimeSpan StallTimeout = TimeSpan.FromSeconds(10);

    private readonly ITestOutputHelper _out;

    public SmpThreadsTests(ITestOutputHelper output) => _out = output;

    /// <summary>The kernel's side of a kick, on the host: a sticky wake-up per vCPU, counted.</summary>
    private sealed class EventKicker : IVcpuKick
    {
        public readonly AutoResetEvent[] Wake = new AutoResetEvent[Cpus];
        public readonly int[] Kicks = new int[Cpus];
        public DeviceLock? Lock;
        public int KicksWithoutLock;

        public EventKicker()
        {
            for (int i = 0; i < Cpus; i++)
                Wake[i] = new AutoResetEvent(false);
        }

        public void Kick(int vcpu)
        {
            if (Lock != null && !Lock.IsHeld)
                Interlocked.Increment(ref KicksWithoutLock);
            Interlocked.Increment(ref Kicks[vcpu]);
            Wake[vcpu].Set();
        }
    }

    private sealed class Run
    {
        public readonly PcPlatform P;
        public readonly EventKicker Kicker = new EventKicker();
        public readonly int[] Received = new int[Cpus];     // IPIs taken by vCPU i (under the lock)
        public readonly int[] SentTo = new int[Cpus];       // IPIs sent to vCPU i (under the lock)
        public readonly int[] TokenHops = new int[Tokens];
        public int Retired;
        public volatile bool Done;
        public volatile string? Failure;

        public Run()
        {
            P = new PcPlatform(new ManualClock { NowNs = 1_000_000_000 }, new RecordingSerialSink(), 64 << 20, Cpus, 1_000_000_000);
            P.Kicker = Kicker;
            Kicker.Lock = P.Lock;
        }

        public void W(int cpu, int reg, uint value)
        {
            IMmioDevice d = P.FindMmio(cpu, ApicPage + (ulong)reg, 4, out ulong offset)!;
            d.Write(offset, 4, value);
        }

        /// <summary>vCPU <paramref name="from"/> sends token <paramref name="token"/> to <paramref name="to"/> (lock held): physical, logical flat, or lowest priority to a one-APIC logical set.</summary>
        public void Send(int from, int to, int token, int hop)
        {
            int vector = FirstVector + token;
            switch (hop % 3)
            {
                case 0:
                    W(from, 0x310, (uint)to << 24);
                    W(from, 0x300, (uint)vector);
                    break;
                case 1:
                    W(from, 0x310, 1u << (24 + to));
                    W(from, 0x300, (1u << 11) | (uint)vector);
                    break;
                default:
                    W(from, 0x310, 1u << (24 + to));
                    W(from, 0x300, (1u << 11) | (1u << 8) | (uint)vector);
                    break;
            }
            SentTo[to]++;
        }

        /// <summary>
        /// vCPU <paramref name="cpu"/> rewrites its own masked IOAPIC entry (pin 16 + cpu) and
        /// reads it back: IOREGSEL then IOWIN is a two-step access, so without the lock another
        /// vCPU's select in between makes the read-back differ.
        /// </summary>
        public bool ProbeIoApic(int cpu, int round)
        {
            IMmioDevice io = P.FindMmio(cpu, IoApic.DefaultBase, 4, out _)!;
            uint reg = (uint)(0x10 + 2 * (16 + cpu));
            uint value = (1u << 16) | ((uint)cpu << 8) | (uint)(round & 0xFF);
            io.Write(0x00, 4, reg);
            io.Write(0x10, 4, value);
            io.Write(0x00, 4, reg);
            return (uint)io.Read(0x10, 4) == value;
        }
    }

    private static void Vcpu(Run run, int cpu)
    {
        PcPlatform p = run.P;
        try
        {
            while (!run.Done)
            {
                bool retiredLast = false;
                p.Lock.Enter();
                if (!run.ProbeIoApic(cpu, run.Received[cpu]))
                    run.Failure = $"vCPU {cpu} read back another vCPU's IOAPIC register (no exclusion)";
                while (p.HasInterruptFor(cpu))
                {
                    int vector = p.AcknowledgeInterrupt(cpu);
                    run.W(cpu, 0xB0, 0);                                 // EOI
                    if (!run.ProbeIoApic(cpu, vector))
                        run.Failure = $"vCPU {cpu} read back another vCPU's IOAPIC register (no exclusion)";
                    run.Received[cpu]++;
                    int token = vector - FirstVector;
                    if ((uint)token >= Tokens)
                    {
                        run.Failure = $"vCPU {cpu} took vector {vector:X}";
                        break;
                    }
                    int hop = ++run.TokenHops[token];
                    if (hop < Hops)
                        run.Send(cpu, (cpu + 1 + (hop & 1)) % Cpus, token, hop);
                    else if (++run.Retired == Tokens)
                        retiredLast = true;
                }
                p.Lock.Exit();
                if (retiredLast || run.Failure != null)
                {
                    run.Done = true;
                    for (int i = 0; i < Cpus; i++)
                        run.Kicker.Wake[i].Set();                        // not a device kick: not counted
                    break;
                }
                if (run.Done)
                    break;
                // Nothing left for this vCPU: sleep until kicked (a kick after the look above is
                // not lost: the event stays set).
                if (!run.Kicker.Wake[cpu].WaitOne(StallTimeout) && !run.Done)
                {
                    run.Failure = $"vCPU {cpu} slept {StallTimeout.TotalSeconds} s unkicked (a lost kick?)";
                    run.Done = true;
                    for (int i = 0; i < Cpus; i++)
                        run.Kicker.Wake[i].Set();
                }
            }
        }
        catch (Exception e)
        {
            run.Failure = $"vCPU {cpu}: {e.GetType().Name}: {e.Message}";
            run.Done = true;
            for (int i = 0; i < Cpus; i++)
                run.Kicker.Wake[i].Set();
        }
    }

    [Fact]
    public void TheDeviceLockExcludesThreeThreadsHammeringSharedDeviceState()
    {
        const int Rounds = 1_000_000;
        Run run = new Run();
        PcPlatform p = run.P;
        long shared = 0;                    // a plain (non-atomic) counter, protected by the lock only
        string? failure = null;
        int ready = 0;
        Thread[] threads = new Thread[Cpus];
        for (int i = 0; i < Cpus; i++)
        {
            int cpu = i;
            threads[i] = new Thread(() =>
            {
                try
                {
                    // Start together, so that the rounds overlap.
                    Interlocked.Increment(ref ready);
                    while (Volatile.Read(ref ready) < Cpus)
                        Thread.SpinWait(10);
                    for (int r = 0; r < Rounds; r++)
                    {
                        p.Lock.Enter();
                        shared++;
                        if (!run.ProbeIoApic(cpu, r))
                            failure = $"vCPU {cpu}: another thread's IOAPIC select got in (round {r})";
                        p.Lock.Exit();
                    }
                }
                catch (Exception e)
                {
                    failure = $"vCPU {cpu}: {e.GetType().Name}: {e.Message}";
                }
            })
            { IsBackground = true };
        }
        foreach (Thread t in threads)
            t.Start();
        foreach (Thread t in threads)
            Assert.True(t.Join(TimeSpan.FromMinutes(2)), "a thread never finished (the lock was never released?)");
        _out.WriteLine($"contended lock acquisitions {p.Lock.ContendedAcquisitions}");
        Assert.Null(failure);
        Assert.Equal((long)Cpus * Rounds, shared);
        Assert.False(p.Lock.IsHeld);
    }

    [Fact]
    public void ThreeVcpuThreadsPassIpisUnderTheLockAndNoneIsLostDoubledOrUnkicked()
    {
        Run run = new Run();
        PcPlatform p = run.P;
        p.Lock.Enter();
        for (int i = 0; i < Cpus; i++)
        {
            run.W(i, 0xF0, 0x1FF);                                       // software-enabled
            run.W(i, 0xD0, 1u << (24 + i));                              // flat logical ID: bit i
        }
        // The tokens start out from the vCPUs themselves (the main thread acts for them, under the lock).
        for (int t = 0; t < Tokens; t++)
            run.Send(t % Cpus, (t + 1) % Cpus, t, t);
        p.Lock.Exit();

        Thread[] threads = new Thread[Cpus];
        for (int i = 0; i < Cpus; i++)
        {
            int cpu = i;
            threads[i] = new Thread(() => Vcpu(run, cpu)) { IsBackground = true, Name = $"vcpu{cpu}" };
        }
        foreach (Thread t in threads)
            t.Start();
        foreach (Thread t in threads)
            Assert.True(t.Join(TimeSpan.FromMinutes(2)), "a vCPU thread never finished");

        _out.WriteLine($"received {string.Join(", ", run.Received)}; kicks {string.Join(", ", run.Kicker.Kicks)}; contended lock acquisitions {p.Lock.ContendedAcquisitions}");
        Assert.Null(run.Failure);
        Assert.Equal(0, run.Kicker.KicksWithoutLock);
        for (int t = 0; t < Tokens; t++)
            Assert.Equal(Hops, run.TokenHops[t]);
        Assert.Equal(Tokens * Hops, run.Received[0] + run.Received[1] + run.Received[2]);
        for (int i = 0; i < Cpus; i++)
        {
            Assert.Equal(run.SentTo[i], run.Received[i]);
            Assert.Equal(run.SentTo[i], run.Kicker.Kicks[i]);         // one kick per IPI to another vCPU, never one more
            Assert.Equal(-1, p.Lapics[i].PendingVector);
            Assert.Equal(0u, (uint)p.Lapics[i].Ppr);
        }
        Assert.False(p.Lock.IsHeld);
    }
}
