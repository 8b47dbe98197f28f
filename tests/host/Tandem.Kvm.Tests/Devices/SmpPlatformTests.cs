using System;
using System.Collections.Generic;
using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

/// <summary>
/// Records every kick, and checks the two rules of a kick: the VM's device lock is held, and the
/// state the kicked vCPU will look for is already there.
/// </summary>
public sealed class RecordingKicker : IVcpuKick
{
    public readonly List<int> Kicks = new();
    public DeviceLock? Lock;
    public PcPlatform? Platform;
    public int KicksWithoutLock;
    public int KicksBeforeState;

    public void Kick(int vcpu)
    {
        if (Lock != null && !Lock.IsHeld)
            KicksWithoutLock++;
        if (Platform != null && !HasSomething(Platform, vcpu))
            KicksBeforeState++;
        Kicks.Add(vcpu);
    }

    /// <summary>Anything at all for the vCPU: a bit in its IRR (deliverable or not), an NMI, INIT or start-up, or (vCPU 0) the PIC's output.</summary>
    private static bool HasSomething(PcPlatform p, int vcpu)
    {
        LocalApic a = p.Lapics[vcpu];
        if (a.HasNmiInitOrStartUp || (vcpu == 0 && p.Pic.HasInterrupt))
            return true;
        for (int i = 0; i < 8; i++)
        {
            ulong word;
            if (a.X2ApicMode)
                Assert.True(a.ReadMsr((uint)(0x820 + i), out word));
            else
                word = a.Read((ulong)(0x200 + 0x10 * i), 4);
            if (word != 0)
                return true;
        }
        return false;
    }

    /// <summary>The kicks so far, cleared; every one of them followed the rules.</summary>
    public int[] Take()
    {
        Assert.Equal(0, KicksWithoutLock);
        Assert.Equal(0, KicksBeforeState);
        int[] k = Kicks.ToArray();
        Kicks.Clear();
        return k;
    }
}

/// <summary>
/// One VM's platform with several vCPUs (docs/devices.md, "Several vCPUs"): the local APICs on
/// the <see cref="ApicBus"/>, IPI and IOAPIC routing, INIT and start-up, kicks, per-vCPU queries
/// and xAPIC pages. Every access is made the way a vCPU's run loop makes it, under the lock.
/// </summary>
public class SmpPlatformTests
{
    private const ulong ApicPage = 0xFEE0_0000;
    private const int Id = 0x20, Tpr = 0x80, Eoi = 0xB0, Ldr = 0xD0, Dfr = 0xE0, Spiv = 0xF0, Irr = 0x200, Esr = 0x280;
    private const int IcrLow = 0x300, IcrHigh = 0x310, LvtTimer = 0x320, LvtLint0 = 0x350, InitialCount = 0x380;

    // ICR low bits.
    private const uint Logical = 1u << 11, Assert_ = 1u << 14, LevelTrig = 1u << 15;
    private const uint ModeLowest = 1u << 8, ModeNmi = 4u << 8, ModeInit = 5u << 8, ModeStartUp = 6u << 8, ModeExtInt = 7u << 8;
    private const uint ToSelf = 1u << 18, ToAllIncludingSelf = 2u << 18, ToAllExcludingSelf = 3u << 18;

    private sealed class Vm
    {
        public readonly PcPlatform P;
        public readonly ManualClock Clock = new ManualClock { NowNs = 5_000_000_000, WallSecondsAtZero = 1_000_000_000 };
        public readonly RecordingKicker Kicker = new RecordingKicker();

        public Vm(ushort cpus, bool enable = true)
        {
            P = new PcPlatform(Clock, new RecordingSerialSink(), 64 << 20, cpus, 2_000_000_000);
            P.Kicker = Kicker;
            Kicker.Lock = P.Lock;
            Kicker.Platform = P;
            P.Lock.Enter();
            if (enable)
            {
                for (int i = 0; i < cpus; i++)
                    W(i, Spiv, 0x1FF);
            }
        }

        public uint R(int cpu, int reg)
        {
            IMmioDevice? d = P.FindMmio(cpu, ApicPage + (ulong)reg, 4, out ulong offset);
            Assert.NotNull(d);
            return (uint)d!.Read(offset, 4);
        }

        public void W(int cpu, int reg, uint value)
        {
            IMmioDevice? d = P.FindMmio(cpu, ApicPage + (ulong)reg, 4, out ulong offset);
            Assert.NotNull(d);
            d!.Write(offset, 4, value);
        }

        /// <summary>vCPU <paramref name="cpu"/> writes its ICR (xAPIC: high half, then low half).</summary>
        public void Ipi(int cpu, uint destination, uint low)
        {
            W(cpu, IcrHigh, destination << 24);
            W(cpu, IcrLow, low);
        }

        public bool IrrBit(int cpu, int vector) => (R(cpu, Irr + (vector >> 5) * 0x10) & (1u << (vector & 31))) != 0;

        /// <summary>The vCPUs with <paramref name="vector"/> in IRR.</summary>
        public int[] WithIrr(int vector)
        {
            List<int> l = new();
            for (int i = 0; i < P.CpuCount; i++)
            {
                if (IrrBit(i, vector))
                    l.Add(i);
            }
            return l.ToArray();
        }

        /// <summary>Programs IOAPIC entry <paramref name="pin"/> (destination first, as Linux does).</summary>
        public void Route(int pin, uint low, byte destination)
        {
            IMmioDevice io = P.FindMmio(0, IoApic.DefaultBase, 4, out _)!;
            io.Write(0, 4, (uint)(0x11 + 2 * pin));
            io.Write(0x10, 4, (uint)destination << 24);
            io.Write(0, 4, (uint)(0x10 + 2 * pin));
            io.Write(0x10, 4, low);
        }
    }

    // ---- the vCPUs' APICs, fw_cfg and ACPI ----

    [Fact]
    public void EachVcpuHasItsOwnApicWithItsIdAndTheFirmwareSaysHowMany()
    {
        Vm vm = new Vm(4, enable: false);
        PcPlatform p = vm.P;
        Assert.Equal(4, p.CpuCount);
        Assert.Equal(4, p.Lapics.Length);
        Assert.Same(p.Lapics[0], p.Lapic);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal((uint)i, p.Lapics[i].Id);
            Assert.Equal((uint)i << 24, vm.R(i, Id));
            Assert.Equal(i == 0, (p.Lapics[i].ApicBase & LocalApic.BaseBsp) != 0);
            Assert.Same(p.Lapics[i], p.ApicBus[i]);
            Assert.Equal(i, p.ApicBus.IndexOf((uint)i));
        }
        Assert.Equal(4, p.ApicBus.Count);
        Assert.Equal(4, p.AcpiConfig.CpuCount);
        Assert.Equal(4, FwCfgU16(p, FwCfg.KeyCpuCount));
        Assert.Equal(4, FwCfgU16(p, FwCfg.KeyMaxCpus));
        Assert.Throws<ArgumentException>(() => new PcPlatform(vm.Clock, new RecordingSerialSink(), 64 << 20, 0, 1_000_000_000));
        Assert.Throws<ArgumentException>(() => new PcPlatform(vm.Clock, new RecordingSerialSink(), 64 << 20, 256, 1_000_000_000));
        Assert.Equal(255, new PcPlatform(vm.Clock, new RecordingSerialSink(), 64 << 20, 255, 1_000_000_000).CpuCount);
    }

    private static int FwCfgU16(PcPlatform p, ushort key)
    {
        p.Ports.Write(FwCfg.SelectorPort, 2, key);
        uint lo = p.Ports.Read(FwCfg.DataPort, 1), hi = p.Ports.Read(FwCfg.DataPort, 1);
        return (int)(lo | (hi << 8));
    }

    // ---- fixed IPIs: destinations and shorthands ----

    [Fact]
    public void AFixedIpiReachesItsPhysicalDestinationOnlyAndKicksIt()
    {
        Vm vm = new Vm(4);
        vm.Ipi(0, 2, 0x41);
        Assert.Equal(new[] { 2 }, vm.WithIrr(0x41));
        Assert.Equal(new[] { 2 }, vm.Kicker.Take());
        Assert.True(vm.P.HasInterruptFor(2));
        Assert.False(vm.P.HasInterruptFor(0));
        Assert.Equal(0x41, vm.P.AcknowledgeInterrupt(2));
        Assert.Equal(-1, vm.P.AcknowledgeInterrupt(2));
        vm.Ipi(3, 1, 0x42);
        Assert.Equal(new[] { 1 }, vm.WithIrr(0x42));
        Assert.Equal(new[] { 1 }, vm.Kicker.Take());
        vm.Ipi(3, 7, 0x43);                                          // nobody has ID 7
        Assert.Empty(vm.WithIrr(0x43));
        Assert.Empty(vm.Kicker.Take());
        vm.Ipi(1, 1, 0x44);                                          // its own ID: its own share, no kick
        Assert.Equal(new[] { 1 }, vm.WithIrr(0x44));
        Assert.Empty(vm.Kicker.Take());
        Assert.Equal(0, vm.Kicker.KicksWithoutLock);
    }

    [Fact]
    public void BroadcastAndTheShorthandsReachTheRightApicsAndKickAllButTheSender()
    {
        Vm vm = new Vm(4);
        vm.Ipi(1, 0xFF, 0x50);                                       // physical broadcast
        Assert.Equal(new[] { 0, 1, 2, 3 }, vm.WithIrr(0x50));
        Assert.Equal(new[] { 0, 2, 3 }, vm.Kicker.Take());
        vm.Ipi(1, 0, ToAllIncludingSelf | 0x51);
        Assert.Equal(new[] { 0, 1, 2, 3 }, vm.WithIrr(0x51));
        Assert.Equal(new[] { 0, 2, 3 }, vm.Kicker.Take());
        vm.Ipi(1, 0, ToAllExcludingSelf | 0x52);
        Assert.Equal(new[] { 0, 2, 3 }, vm.WithIrr(0x52));
        Assert.Equal(new[] { 0, 2, 3 }, vm.Kicker.Take());
        vm.Ipi(2, 0, ToSelf | 0x53);
        Assert.Equal(new[] { 2 }, vm.WithIrr(0x53));
        Assert.Empty(vm.Kicker.Take());
    }

    [Fact]
    public void AHardwareDisabledApicTakesNothing()
    {
        Vm vm = new Vm(3);
        Assert.True(vm.P.Lapics[2].WriteMsr(LocalApic.MsrApicBase, LocalApic.DefaultBase));
        vm.Ipi(0, 0xFF, 0x50);
        vm.Ipi(0, 2, ModeNmi);
        Assert.Equal(new[] { 0, 1 }, vm.WithIrr(0x50));
        Assert.False(vm.P.Lapics[2].NmiPending);
        Assert.Equal(new[] { 1 }, vm.Kicker.Take());
    }

    [Fact]
    public void LogicalDestinationsInTheFlatAndClusterModels()
    {
        Vm vm = new Vm(4);
        for (int i = 0; i < 4; i++)
            vm.W(i, Ldr, 1u << (24 + i));                            // flat: vCPU i is bit i
        vm.Ipi(3, 0x05, Logical | 0x60);
        Assert.Equal(new[] { 0, 2 }, vm.WithIrr(0x60));
        Assert.Equal(new[] { 0, 2 }, vm.Kicker.Take());
        vm.Ipi(0, 0xFF, Logical | 0x61);                             // logical broadcast
        Assert.Equal(new[] { 0, 1, 2, 3 }, vm.WithIrr(0x61));
        Assert.Equal(new[] { 1, 2, 3 }, vm.Kicker.Take());
        // Cluster model: vCPUs 0, 1 in cluster 1 (members 1, 2), vCPUs 2, 3 in cluster 2 (members 1, 2).
        for (int i = 0; i < 4; i++)
        {
            vm.W(i, Dfr, 0x0FFF_FFFF);
            vm.W(i, Ldr, (uint)((((i >> 1) + 1) << 4) | (1 << (i & 1))) << 24);
        }
        vm.Ipi(0, 0x22, Logical | 0x62);                             // cluster 2, member bit 1
        Assert.Equal(new[] { 3 }, vm.WithIrr(0x62));
        vm.Ipi(0, 0x13, Logical | 0x63);                             // cluster 1, both members
        Assert.Equal(new[] { 0, 1 }, vm.WithIrr(0x63));
        Assert.Equal(new[] { 3, 1 }, vm.Kicker.Take());
    }

    [Fact]
    public void X2ApicPhysicalLogicalClusterAndBroadcastDestinations()
    {
        Vm vm = new Vm(4);
        foreach (LocalApic a in vm.P.Lapics)
            Assert.True(a.WriteMsr(LocalApic.MsrApicBase, LocalApic.DefaultBase | LocalApic.BaseEnable | LocalApic.BaseExtd | (a.ApicBase & LocalApic.BaseBsp)));
        LocalApic bsp = vm.P.Lapics[0];
        Assert.True(bsp.WriteMsr(0x830, (3UL << 32) | 0x70));        // physical 3
        Assert.Equal(new[] { 3 }, vm.Kicker.Take());
        Assert.Equal(0x70, vm.P.Lapics[3].PendingVector);
        Assert.True(bsp.WriteMsr(0x830, (0x0000_0006UL << 32) | Logical | 0x71));   // cluster 0, members 1 and 2
        Assert.Equal(new[] { 1, 2 }, vm.Kicker.Take());
        Assert.True(bsp.WriteMsr(0x830, (0xFFFF_FFFFUL << 32) | 0x72));             // broadcast
        Assert.Equal(new[] { 1, 2, 3 }, vm.Kicker.Take());
        Assert.Equal(0x72, bsp.PendingVector);
        Assert.True(bsp.WriteMsr(0x830, (0xFFUL << 32) | 0x73));                    // 0xFF is an ID here, not everyone
        Assert.Empty(vm.Kicker.Take());
        Assert.Equal(0x72, vm.P.Lapics[1].PendingVector);
    }

    // ---- lowest priority ----

    [Fact]
    public void LowestPriorityPicksTheLowestPprTiesToTheLowestIdAndKicksOnlyIt()
    {
        Vm vm = new Vm(4);
        for (int i = 0; i < 4; i++)
            vm.W(i, Ldr, 1u << (24 + i));
        vm.W(0, Tpr, 0x30);
        vm.W(1, Tpr, 0x20);
        vm.W(2, Tpr, 0x10);
        vm.W(3, Tpr, 0x10);
        vm.Ipi(0, 0x0F, Logical | ModeLowest | 0x80);                 // all four are candidates
        Assert.Equal(new[] { 2 }, vm.WithIrr(0x80));
        Assert.Equal(new[] { 2 }, vm.Kicker.Take());
        vm.Ipi(0, 0x0A, Logical | ModeLowest | 0x81);                 // vCPUs 1 and 3
        Assert.Equal(new[] { 3 }, vm.WithIrr(0x81));
        Assert.Equal(new[] { 3 }, vm.Kicker.Take());
        // The sender is a candidate too, and then nobody is kicked.
        vm.W(0, Tpr, 0x00);
        vm.Ipi(0, 0x0F, Logical | ModeLowest | 0x82);
        Assert.Equal(new[] { 0 }, vm.WithIrr(0x82));
        Assert.Empty(vm.Kicker.Take());
        // A software-disabled APIC would not accept it: it is no candidate, however low its PPR.
        vm.W(0, Tpr, 0x30);
        vm.W(2, Spiv, 0xFF);
        vm.Ipi(0, 0x0F, Logical | ModeLowest | 0x83);
        Assert.Equal(new[] { 3 }, vm.WithIrr(0x83));
        // The in-service vector's class counts in PPR, not only TPR: vCPU 3 serves 0x83 (class 8).
        Assert.Equal(0x83, vm.P.AcknowledgeInterrupt(3));
        vm.W(1, Tpr, 0x40);
        vm.Kicker.Take();
        vm.Ipi(0, 0x0F, Logical | ModeLowest | 0x84);
        Assert.Equal(new[] { 0 }, vm.WithIrr(0x84));                  // PPRs: 0x30, 0x40, -, 0x80
        // The IOAPIC's lowest-priority messages arbitrate the same way (logical, everyone).
        InitPic(vm.P, 0xFF);
        vm.W(0, Tpr, 0x50);
        vm.Route(5, (1u << 11) | ModeLowest | 0x85, 0xFF);
        vm.P.SetIrq(5, true);
        Assert.Equal(new[] { 1 }, vm.WithIrr(0x85));
        Assert.Equal(new[] { 1 }, vm.Kicker.Take());
    }

    [Fact]
    public void LowestPriorityIsLeftToTheSinkWhenThereIsOne()
    {
        ManualClock clock = new ManualClock();
        LocalApic alone = new LocalApic(0, true, clock, 1_000_000_000, 1_000_000_000, null);
        alone.Write(Spiv, 4, 0x1FF);
        alone.Write(IcrHigh, 4, 0u);
        alone.Write(IcrLow, 4, ModeLowest | 0x40);
        Assert.Equal(0x40, alone.PendingVector);                     // the only candidate
        RecordingIpiSink sink = new RecordingIpiSink();
        LocalApic onBus = new LocalApic(0, true, clock, 1_000_000_000, 1_000_000_000, sink);
        onBus.Write(Spiv, 4, 0x1FF);
        onBus.Write(IcrHigh, 4, 0u);
        onBus.Write(IcrLow, 4, ModeLowest | 0x40);
        Assert.Equal(-1, onBus.PendingVector);
        Assert.Single(sink.Sent);
        onBus.Write(IcrLow, 4, 0x41);                                // a fixed one still takes its share
        Assert.Equal(0x41, onBus.PendingVector);
    }

    // ---- NMI, INIT and start-up ----

    [Fact]
    public void AnNmiIpiIsRecordedForItsTargetsAndKicksThem()
    {
        Vm vm = new Vm(3);
        vm.Ipi(0, 2, ModeNmi);
        Assert.False(vm.P.Lapics[1].NmiPending);
        Assert.True(vm.P.Lapics[2].NmiPending);
        Assert.Equal(new[] { 2 }, vm.Kicker.Take());
        Assert.True(vm.P.HasEvent(2));
        Assert.False(vm.P.HasInterruptFor(2));
        Assert.False(vm.P.IsQuiet(2));
        Assert.True(vm.P.Lapics[2].TakeNmi());
        Assert.True(vm.P.IsQuiet(2));
        vm.Ipi(2, 0, ToAllExcludingSelf | ModeNmi);
        Assert.True(vm.P.Lapics[0].NmiPending && vm.P.Lapics[1].NmiPending);
        Assert.False(vm.P.Lapics[2].NmiPending);
        Assert.Equal(new[] { 0, 1 }, vm.Kicker.Take());
    }

    [Fact]
    public void InitThenStartUpStartsAnApOnceAndAStartUpWithoutInitIsIgnored()
    {
        Vm vm = new Vm(3);
        LocalApic ap = vm.P.Lapics[1];
        vm.Ipi(0, 1, ModeStartUp | Assert_ | 0x9A);                  // no INIT yet
        Assert.Equal(-1, ap.StartUpVector);
        Assert.Empty(vm.Kicker.Take());
        Assert.True(vm.P.IsQuiet(1));
        vm.Ipi(0, 1, ModeInit | Assert_ | LevelTrig);                 // INIT assert
        Assert.True(ap.InitPending);
        Assert.True(ap.WaitingForSipi);
        Assert.Equal(new[] { 1 }, vm.Kicker.Take());
        Assert.True(vm.P.HasEvent(1));
        Assert.False(vm.P.IsQuiet(1));
        vm.Ipi(0, 1, ModeInit | LevelTrig);                          // INIT level de-assert: nothing
        Assert.Empty(vm.Kicker.Take());
        Assert.True(ap.TakeInit());                                  // the AP's loop resets the vCPU
        Assert.True(ap.WaitingForSipi);
        Assert.False(ap.InitPending);
        vm.Ipi(0, 1, ModeStartUp | Assert_ | 0x9A);
        Assert.Equal(0x9A, ap.StartUpVector);
        Assert.False(ap.WaitingForSipi);
        Assert.Equal(new[] { 1 }, vm.Kicker.Take());
        vm.Ipi(0, 1, ModeStartUp | Assert_ | 0x9B);                  // the second SIPI: ignored
        Assert.Equal(0x9A, ap.StartUpVector);
        Assert.Empty(vm.Kicker.Take());
        Assert.Equal(0x9A, ap.TakeStartUp());
        Assert.Equal(-1, ap.TakeStartUp());
        Assert.False(vm.P.HasEvent(1));
        vm.Ipi(0, 2, ModeStartUp | Assert_ | 0x9C);                  // vCPU 2 never had an INIT
        Assert.Equal(-1, vm.P.Lapics[2].StartUpVector);
        Assert.Empty(vm.Kicker.Take());
    }

    [Fact]
    public void TheBspIgnoresInitAndABroadcastInitReachesEveryAp()
    {
        Vm vm = new Vm(4);
        vm.Ipi(2, 0, ModeInit | Assert_ | LevelTrig);                 // INIT to the BSP
        Assert.False(vm.P.Lapics[0].InitPending);
        Assert.True(vm.P.Lapics[0].SoftwareEnabled);
        Assert.Empty(vm.Kicker.Take());
        vm.Ipi(0, 0, ToAllExcludingSelf | ModeInit | Assert_ | LevelTrig);
        Assert.Equal(new[] { 1, 2, 3 }, vm.Kicker.Take());
        for (int i = 1; i < 4; i++)
        {
            Assert.True(vm.P.Lapics[i].InitPending);
            Assert.False(vm.P.Lapics[i].SoftwareEnabled);            // INIT reset the AP's APIC
        }
        vm.Ipi(0, 0, ToAllExcludingSelf | ModeStartUp | Assert_ | 0x10);
        Assert.Equal(new[] { 1, 2, 3 }, vm.Kicker.Take());
        for (int i = 1; i < 4; i++)
            Assert.Equal(0x10, vm.P.Lapics[i].TakeStartUp());
        Assert.Equal(-1, vm.P.Lapics[0].StartUpVector);
    }

    // ---- the IOAPIC, the PIC and the timers ----

    [Fact]
    public void TheIoApicDeliversToVcpu2AndKicksIt()
    {
        Vm vm = new Vm(3);
        InitPic(vm.P, 0xFF);                                         // the 8259As masked (or vCPU 0 would hear IRQ 4 too)
        vm.Route(4, 0x31, 2);                                        // COM1's IRQ 4: edge, physical 2
        vm.P.SetIrq(4, true);
        Assert.Equal(new[] { 2 }, vm.WithIrr(0x31));
        Assert.Equal(new[] { 2 }, vm.Kicker.Take());
        Assert.True(vm.P.HasInterruptFor(2));
        Assert.False(vm.P.HasInterruptFor(1));
        vm.P.SetIrq(4, false);
        // Level-triggered: the remote IRR holds it until vCPU 2's EOI, which delivers again while asserted.
        vm.Route(9, LevelTrig | 0x39, 2);
        vm.P.SetIrq(9, true);
        Assert.Equal(new[] { 2 }, vm.Kicker.Take());
        Assert.Equal(0x39, vm.P.AcknowledgeInterrupt(2));
        vm.W(2, Eoi, 0);                                             // 0x39: redelivered, the pin is still high
        Assert.Equal(new[] { 2 }, vm.Kicker.Take());
        Assert.Equal(0x39, vm.P.AcknowledgeInterrupt(2));
        vm.P.SetIrq(9, false);
        vm.W(2, Eoi, 0);                                             // the pin is low now: nothing more
        Assert.Empty(vm.Kicker.Take());
        Assert.Equal(0x31, vm.P.AcknowledgeInterrupt(2));
        vm.W(2, Eoi, 0);
        Assert.Equal(-1, vm.P.Lapics[2].PendingVector);
        // Broadcast 0xFF reaches everyone, x2APIC ones too.
        Assert.True(vm.P.Lapics[1].WriteMsr(LocalApic.MsrApicBase, LocalApic.DefaultBase | LocalApic.BaseEnable | LocalApic.BaseExtd));
        vm.Route(10, 0x3A, 0xFF);
        vm.P.SetIrq(10, true);
        for (int i = 0; i < 3; i++)
            Assert.Equal(0x3A, vm.P.Lapics[i].PendingVector);
        Assert.Equal(new[] { 0, 1, 2 }, vm.Kicker.Take());
        // An IOAPIC NMI to vCPU 1.
        vm.Route(11, ModeNmi, 1);
        vm.P.SetIrq(11, true);
        Assert.True(vm.P.Lapics[1].NmiPending);
        Assert.Equal(new[] { 1 }, vm.Kicker.Take());
        Assert.Equal(0, vm.Kicker.KicksWithoutLock);
    }

    private static void StartPit(PcPlatform p, ushort count)
    {
        p.Ports.Write(0x43, 1, 0x34);                                // channel 0, lo/hi, rate generator
        p.Ports.Write(0x40, 1, (uint)(count & 0xFF));
        p.Ports.Write(0x40, 1, (uint)(count >> 8));
    }

    private static void InitPic(PcPlatform p, byte masterMask)
    {
        p.Ports.Write(0x20, 1, 0x11);
        p.Ports.Write(0x21, 1, 0x20);
        p.Ports.Write(0x21, 1, 0x04);
        p.Ports.Write(0x21, 1, 0x01);
        p.Ports.Write(0xA0, 1, 0x11);
        p.Ports.Write(0xA1, 1, 0x28);
        p.Ports.Write(0xA1, 1, 0x02);
        p.Ports.Write(0xA1, 1, 0x01);
        p.Ports.Write(0x21, 1, masterMask);
        p.Ports.Write(0xA1, 1, 0xFF);
    }

    [Fact]
    public void APitTickPolledByVcpu1ThroughTheIoApicKicksVcpu0()
    {
        Vm vm = new Vm(2);
        InitPic(vm.P, 0xFF);                                         // the 8259As masked
        vm.Route(2, 0x30, 0);                                        // IRQ 0 on pin 2, to vCPU 0
        StartPit(vm.P, 11932);
        ulong due = vm.P.NextEventNsFor(1);
        Assert.Equal(due, vm.P.NextEventNsFor(0));                   // the PIT is everyone's event
        Assert.False(vm.P.IsQuiet(1));
        vm.Kicker.Take();
        vm.Clock.NowNs = due;
        vm.P.Poll(1);
        Assert.Equal(new[] { 0 }, vm.Kicker.Take());
        Assert.True(vm.P.HasInterruptFor(0));
        Assert.False(vm.P.HasInterruptFor(1));
        Assert.Equal(0x30, vm.P.AcknowledgeInterrupt(0));
    }

    [Fact]
    public void ThePicReachesOnlyVcpu0AndKicksItWhenItsOutputRises()
    {
        Vm vm = new Vm(3);
        InitPic(vm.P, 0xFD);                                         // only IRQ 1 unmasked
        vm.Kicker.Take();
        vm.P.SetIrq(1, true);
        Assert.Equal(new[] { 0 }, vm.Kicker.Take());                 // the IOAPIC entry is masked
        Assert.True(vm.P.HasInterruptFor(0));
        Assert.False(vm.P.HasInterruptFor(1));
        Assert.False(vm.P.HasInterruptFor(2));
        Assert.Equal(-1, vm.P.AcknowledgeInterrupt(1));
        // Not even an AP that would pass INTR through (LINT0 ExtINT, or its APIC hardware-disabled).
        vm.W(1, LvtLint0, 0x700);
        Assert.True(vm.P.Lapics[2].WriteMsr(LocalApic.MsrApicBase, LocalApic.DefaultBase));
        Assert.True(vm.P.Lapics[1].AcceptsPicInterrupts && vm.P.Lapics[2].AcceptsPicInterrupts);
        Assert.False(vm.P.HasInterruptFor(1));
        Assert.False(vm.P.HasInterruptFor(2));
        Assert.Equal(-1, vm.P.AcknowledgeInterrupt(1));
        Assert.Equal(-1, vm.P.AcknowledgeInterrupt(2));
        Assert.Equal(0x21, vm.P.AcknowledgeInterrupt(0));
        vm.P.SetIrq(1, false);
        vm.P.Ports.Write(0x20, 1, 0x20);                             // EOI
        // A masked IRQ unmasked by vCPU 2's port write: the PIC's output rises, vCPU 0 is kicked.
        vm.P.SetIrq(3, true);
        Assert.Empty(vm.Kicker.Take());
        vm.P.Ports.Write(0x21, 1, 0xF5);
        Assert.Equal(new[] { 0 }, vm.Kicker.Take());
        Assert.Equal(0x23, vm.P.AcknowledgeInterrupt(0));
        vm.P.Ports.Write(0x20, 1, 0x20);
        vm.P.SetIrq(3, false);
        // LINT0 masked: the PIC's interrupts do not reach vCPU 0, and nobody is kicked.
        vm.W(0, LvtLint0, 1u << 16);
        vm.P.SetIrq(1, true);
        Assert.False(vm.P.HasInterruptFor(0));
        Assert.Empty(vm.Kicker.Take());
        Assert.Equal(-1, vm.P.AcknowledgeInterrupt(0));
        // An ExtINT message from the IOAPIC is for vCPU 0 alone, and only while it hears the PIC.
        vm.W(0, LvtLint0, 0x700);
        vm.Kicker.Take();
        Assert.False(vm.P.ApicBus.Deliver(1, false, IpiRequest.ExtInt, 0, false));
        Assert.True(vm.P.ApicBus.Deliver(0xFF, false, IpiRequest.ExtInt, 0, false));
        Assert.Equal(new[] { 0 }, vm.Kicker.Take());
    }

    [Fact]
    public void EachVcpuPollsAndWaitsForItsOwnApicTimer()
    {
        Vm vm = new Vm(2);
        vm.W(1, LvtTimer, 0x40);                                     // one-shot, vector 0x40
        vm.W(1, InitialCount, 500);                                  // divide by 2: 1000 ns
        ulong due = vm.Clock.NowNs + 1000;
        Assert.Equal(due, vm.P.NextEventNsFor(1));
        Assert.Equal(ulong.MaxValue, vm.P.NextEventNsFor(0));
        Assert.Equal(ulong.MaxValue, vm.P.NextEventNs);
        Assert.True(vm.P.IsQuiet(0));
        Assert.True(vm.P.Quiet);
        Assert.False(vm.P.IsQuiet(1));
        vm.Clock.NowNs = due;
        vm.P.Poll(0);
        Assert.False(vm.P.HasInterruptFor(1));                       // vCPU 0 does not poll vCPU 1's timer
        vm.P.Poll(1);
        Assert.True(vm.P.HasInterruptFor(1));
        Assert.Empty(vm.Kicker.Take());                              // its own timer: no kick
        Assert.Equal(0x40, vm.P.AcknowledgeInterrupt(1));
    }

    // ---- the xAPIC page ----

    [Fact]
    public void EveryVcpuReachesItsOwnApicPage()
    {
        Vm vm = new Vm(3);
        PcPlatform p = vm.P;
        Assert.Null(p.Mmio.Find(ApicPage, 4, out _));               // not in the shared map
        for (int i = 0; i < 3; i++)
        {
            Assert.Same(p.Lapics[i], p.FindMmio(i, ApicPage + Id, 4, out ulong offset));
            Assert.Equal((ulong)Id, offset);
            Assert.Same(p.IoApic, p.FindMmio(i, IoApic.DefaultBase + 0x10, 4, out offset));
            Assert.Equal(0x10UL, offset);
        }
        vm.W(1, Tpr, 0x70);
        Assert.Equal(0x70u, vm.R(1, Tpr));
        Assert.Equal(0u, vm.R(0, Tpr));
        Assert.Equal(0u, vm.R(2, Tpr));
        Assert.Null(p.FindMmio(0, ApicPage + 0xFFC, 8, out _));     // straddles the page's end
        // vCPU 1 moves its page: only its accesses follow it.
        Assert.True(p.Lapics[1].WriteMsr(LocalApic.MsrApicBase, 0xFED0_0000 | LocalApic.BaseEnable));
        Assert.Same(p.Lapics[1], p.FindMmio(1, 0xFED0_0080, 4, out ulong moved));
        Assert.Equal(0x80UL, moved);
        Assert.Null(p.FindMmio(1, ApicPage + Tpr, 4, out _));
        Assert.Null(p.FindMmio(0, 0xFED0_0080, 4, out _));
        Assert.Same(p.Lapics[0], p.FindMmio(0, ApicPage + Tpr, 4, out _));
        // In x2APIC mode the page is a hole that reads 0.
        Assert.True(p.Lapics[2].WriteMsr(LocalApic.MsrApicBase, LocalApic.DefaultBase | LocalApic.BaseEnable | LocalApic.BaseExtd));
        Assert.Equal(0u, vm.R(2, Id));
    }

    // ---- the device lock ----

    [Fact]
    public void TheDeviceLockExcludesAndRefusesAReleaseWhileFree()
    {
        DeviceLock l = new DeviceLock();
        Assert.False(l.IsHeld);
        Assert.True(l.TryEnter());
        Assert.True(l.IsHeld);
        Assert.False(l.TryEnter());
        l.Exit();
        Assert.False(l.IsHeld);
        Assert.Throws<InvalidOperationException>(() => l.Exit());
        l.Enter();
        Assert.False(l.TryEnter());
        l.Exit();
        Assert.Equal(0UL, l.ContendedAcquisitions);
    }
}
