using System.Collections.Generic;
using Tandem.Kvm.Devices;
using Xunit;

namespace Tandem.Kvm.Tests.Devices;

/// <summary>Records the IPIs a local APIC sends.</summary>
public sealed class RecordingIpiSink : IIpiSink
{
    public readonly List<IpiRequest> Sent = new();

    public void SendIpi(IpiRequest request) => Sent.Add(request);
}

/// <summary>Records the level-triggered EOIs a local APIC reports.</summary>
public sealed class RecordingEoiListener : IEoiListener
{
    public readonly List<int> Vectors = new();

    public void Eoi(int vector) => Vectors.Add(vector);
}

public class LocalApicTests
{
    private const ulong TimerHz = 1_000_000_000;     // 1 ns per count before the divider
    private const ulong TscHz = 2_000_000_000;       // 2 TSC ticks per ns

    private const int Id = 0x20, Version = 0x30, Tpr = 0x80, Apr = 0x90, Ppr = 0xA0, Eoi = 0xB0, Ldr = 0xD0, Dfr = 0xE0;
    private const int Spiv = 0xF0, Isr = 0x100, Tmr = 0x180, Irr = 0x200, Esr = 0x280, IcrLow = 0x300, IcrHigh = 0x310;
    private const int LvtTimer = 0x320, LvtLint0 = 0x350, LvtLint1 = 0x360, LvtError = 0x370;
    private const int InitialCount = 0x380, CurrentCount = 0x390, Divide = 0x3E0;

    private const uint Masked = 1u << 16;
    private const uint Periodic = 1u << 17;
    private const uint TscDeadline = 2u << 17;

    private static (LocalApic Apic, ManualClock Clock, RecordingIpiSink Ipis) Make(uint id = 0, bool bsp = true, bool enable = true)
    {
        ManualClock clock = new ManualClock { NowNs = 5_000_000_000 };
        RecordingIpiSink ipis = new RecordingIpiSink();
        LocalApic apic = new LocalApic(id, bsp, clock, TimerHz, TscHz, ipis);
        if (enable)
            W(apic, Spiv, 0x1FF);
        return (apic, clock, ipis);
    }

    private static uint R(LocalApic apic, int reg) => (uint)apic.Read((ulong)reg, 4);

    private static void W(LocalApic apic, int reg, uint value) => apic.Write((ulong)reg, 4, value);

    private static bool IrrBit(LocalApic apic, int vector) => (R(apic, Irr + (vector >> 5) * 0x10) & (1u << (vector & 31))) != 0;

    private static bool IsrBit(LocalApic apic, int vector) => (R(apic, Isr + (vector >> 5) * 0x10) & (1u << (vector & 31))) != 0;

    private static void EnterX2Apic(LocalApic apic)
    {
        Assert.True(apic.WriteMsr(LocalApic.MsrApicBase, LocalApic.DefaultBase | LocalApic.BaseEnable | LocalApic.BaseExtd));
        Assert.True(apic.X2ApicMode);
    }

    private static ulong Msr(LocalApic apic, uint msr)
    {
        Assert.True(apic.ReadMsr(msr, out ulong value));
        return value;
    }

    // ---- registers ----

    [Fact]
    public void PowerOnStateOfTheBspAndAnAp()
    {
        (LocalApic bsp, _, _) = Make(0, true, false);
        Assert.Equal(0xFEE0_0900UL, bsp.ApicBase);
        Assert.Equal(0u, R(bsp, Id));
        Assert.Equal(0x0005_0014u, R(bsp, Version));
        Assert.Equal(0xFFu, R(bsp, Spiv));
        Assert.False(bsp.SoftwareEnabled);
        Assert.Equal(0xFFFF_FFFFu, R(bsp, Dfr));
        Assert.Equal(Masked, R(bsp, LvtTimer));
        Assert.Equal(0x700u, R(bsp, LvtLint0));              // virtual wire, as KVM resets the BSP
        Assert.Equal(Masked, R(bsp, LvtLint1));
        Assert.Equal(Masked, R(bsp, LvtError));
        Assert.True(bsp.AcceptsPicInterrupts);

        (LocalApic ap, _, _) = Make(3, false, false);
        Assert.Equal(0xFEE0_0800UL, ap.ApicBase);
        Assert.Equal(3u << 24, R(ap, Id));
        Assert.Equal(Masked, R(ap, LvtLint0));
        Assert.False(ap.AcceptsPicInterrupts);
    }

    [Fact]
    public void MmioAccessesOfTheWrongWidthOrAlignmentAreIgnoredAndCounted()
    {
        (LocalApic apic, _, _) = Make();
        W(apic, Tpr, 0x20);
        Assert.Equal(0UL, apic.Read(Tpr, 1));
        Assert.Equal(0UL, apic.Read(Tpr + 4, 4));
        apic.Write(Tpr, 2, 0x30);
        apic.Write(Tpr + 8, 4, 0x30);
        apic.Write(Tpr, 8, 0x30);
        Assert.Equal(0UL, apic.Read(0x1000, 4));
        Assert.Equal(6UL, apic.BadMmioAccesses);
        Assert.Equal(0x20u, R(apic, Tpr));
    }

    [Fact]
    public void XApicRegistersKeepOnlyTheirWritableBits()
    {
        (LocalApic apic, _, _) = Make();
        W(apic, Id, 0xFFFF_FFFF);
        Assert.Equal(0xFF00_0000u, R(apic, Id));
        W(apic, Version, 0);
        Assert.Equal(0x0005_0014u, R(apic, Version));
        W(apic, Tpr, 0xFFFF_FFFF);
        Assert.Equal(0xFFu, R(apic, Tpr));
        W(apic, Ldr, 0xFFFF_FFFF);
        Assert.Equal(0xFF00_0000u, R(apic, Ldr));
        W(apic, Dfr, 0);
        Assert.Equal(0x0FFF_FFFFu, R(apic, Dfr));
        W(apic, Spiv, 0xFFFF_FFFF);
        Assert.Equal(0x3FFu, R(apic, Spiv));
        W(apic, LvtLint0, 0xFFFF_FFFF);
        Assert.Equal(0x0001_A7FFu, R(apic, LvtLint0));
        W(apic, LvtError, 0xFFFF_FFFF);
        Assert.Equal(0x0001_00FFu, R(apic, LvtError));
        W(apic, LvtTimer, 0x0002_00EF);
        Assert.Equal(0x0002_00EFu, R(apic, LvtTimer));
        W(apic, Divide, 0xFFFF_FFFF);
        Assert.Equal(0xBu, R(apic, Divide));
        W(apic, Tpr, 0);
        W(apic, Ppr, 0xFF);
        Assert.Equal(0u, R(apic, Ppr));
        Assert.Equal(0u, R(apic, Eoi));
        Assert.Equal(0u, R(apic, 0x3F0));                   // SELF IPI does not exist on the page
        Assert.Equal(0u, R(apic, 0x2F0));                   // no CMCI LVT (max LVT 5)
    }

    [Fact]
    public void XApicIcrHighHoldsTheDestinationInBits31To24()
    {
        (LocalApic apic, _, RecordingIpiSink ipis) = Make();
        W(apic, IcrHigh, 0xFFFF_FFFF);
        Assert.Equal(0xFF00_0000u, R(apic, IcrHigh));
        W(apic, IcrHigh, 0x0500_0000);
        Assert.Empty(ipis.Sent);                             // writing the high half sends nothing
        W(apic, IcrLow, 0x0000_4030);                        // fixed, vector 0x30, physical
        IpiRequest ipi = Assert.Single(ipis.Sent);
        Assert.Equal(5u, ipi.Destination);
        Assert.Equal(0x30, ipi.Vector);
        Assert.Equal(0x0500_0000u, R(apic, IcrHigh));
        Assert.Equal(0x0000_4030u, R(apic, IcrLow));
    }

    [Fact]
    public void X2ApicRegistersAsMsrs()
    {
        (LocalApic apic, _, _) = Make(0x123, false);
        Assert.Equal(0x23u << 24, R(apic, Id));             // xAPIC: the low 8 bits
        W(apic, Tpr, 0x40);
        EnterX2Apic(apic);
        Assert.False(apic.MmioEnabled);
        Assert.Equal(0u, R(apic, Tpr));                     // the page is gone
        Assert.Equal(0x123UL, Msr(apic, 0x802));
        Assert.Equal(0x0005_0014UL, Msr(apic, 0x803));
        Assert.Equal(0x40UL, Msr(apic, 0x808));             // TPR kept across the switch
        Assert.Equal(0x0012_0008UL, Msr(apic, 0x80D));      // cluster 0x12, member bit 3
        Assert.Equal(0x1FFUL, Msr(apic, 0x80F));
        Assert.True(apic.WriteMsr(0x808, 0x55));
        Assert.Equal(0x55UL, Msr(apic, 0x808));
        Assert.Equal(0x55UL, Msr(apic, 0x80A));             // PPR = TPR with nothing in service

        // #GP: reserved, write-only, xAPIC-only and read-only registers, reserved bits.
        Assert.False(apic.ReadMsr(0x809, out _));           // APR does not exist in x2APIC mode
        Assert.False(apic.ReadMsr(0x80B, out _));           // EOI is write-only
        Assert.False(apic.ReadMsr(0x80C, out _));           // RRD
        Assert.False(apic.ReadMsr(0x80E, out _));           // DFR
        Assert.False(apic.ReadMsr(0x831, out _));           // ICR high is part of 0x830
        Assert.False(apic.ReadMsr(0x83F, out _));           // SELF IPI is write-only
        Assert.False(apic.ReadMsr(0x82F, out _));           // no CMCI
        Assert.False(apic.ReadMsr(0x800, out _));
        Assert.False(apic.ReadMsr(0x8FF, out _));
        Assert.False(apic.WriteMsr(0x802, 7));
        Assert.False(apic.WriteMsr(0x803, 0));
        Assert.False(apic.WriteMsr(0x80A, 0));
        Assert.False(apic.WriteMsr(0x80D, 0));
        Assert.False(apic.WriteMsr(0x80E, 0));
        Assert.False(apic.WriteMsr(0x810, 0));
        Assert.False(apic.WriteMsr(0x839, 0));
        Assert.False(apic.WriteMsr(0x808, 1UL << 32));
        Assert.False(apic.WriteMsr(0x80B, 1));              // EOI takes only 0
        Assert.False(apic.WriteMsr(0x828, 1));              // ESR takes only 0
        Assert.True(apic.WriteMsr(0x80B, 0));
        Assert.True(apic.WriteMsr(0x828, 0));
        Assert.False(apic.ReadMsr(0x1000, out _));          // not an APIC MSR
        Assert.False(apic.WriteMsr(0x1000, 0));
        Assert.True(LocalApic.Handles(0x1B) && LocalApic.Handles(0x6E0) && LocalApic.Handles(0x800) && LocalApic.Handles(0x8FF));
        Assert.False(LocalApic.Handles(0x7FF) || LocalApic.Handles(0x900));
    }

    [Fact]
    public void X2ApicMsrsRaiseGpInXApicMode()
    {
        (LocalApic apic, _, _) = Make();
        Assert.False(apic.ReadMsr(0x802, out _));
        Assert.False(apic.WriteMsr(0x808, 0));
        Assert.False(apic.WriteMsr(0x830, 0x4030));
        Assert.Equal(0xFEE0_0900UL, Msr(apic, LocalApic.MsrApicBase));
        Assert.Equal(0UL, Msr(apic, LocalApic.MsrTscDeadline));
    }

    [Fact]
    public void X2ApicIcrIsOne64BitMsr()
    {
        (LocalApic apic, _, RecordingIpiSink ipis) = Make(1, false);
        EnterX2Apic(apic);
        Assert.True(apic.WriteMsr(0x830, (0x1234UL << 32) | 0x4608));
        IpiRequest ipi = Assert.Single(ipis.Sent);
        Assert.Equal(0x1234u, ipi.Destination);
        Assert.Equal(IpiRequest.StartUp, ipi.DeliveryMode);
        Assert.Equal(8, ipi.Vector);
        Assert.Equal(1u, ipi.Source);
        Assert.Equal((0x1234UL << 32) | 0x4608, Msr(apic, 0x830));
    }

    // ---- IA32_APIC_BASE ----

    [Fact]
    public void ApicBaseLegalTransitions()
    {
        (LocalApic apic, _, _) = Make();
        const ulong b = LocalApic.DefaultBase, en = LocalApic.BaseEnable, x2 = LocalApic.BaseExtd;
        Assert.True(apic.WriteMsr(0x1B, b | en));                    // xAPIC -> xAPIC
        Assert.True(apic.WriteMsr(0x1B, b | en | x2));               // xAPIC -> x2APIC
        Assert.True(apic.WriteMsr(0x1B, b | en | x2));               // x2APIC -> x2APIC
        Assert.True(apic.WriteMsr(0x1B, b));                         // x2APIC -> disabled
        Assert.False(apic.HardwareEnabled);
        Assert.False(apic.X2ApicMode);
        Assert.True(apic.WriteMsr(0x1B, b));                         // disabled -> disabled
        Assert.True(apic.WriteMsr(0x1B, 0xFED0_0000UL | en));        // disabled -> xAPIC, moved
        Assert.Equal(0xFED0_0000UL, apic.BaseAddress);
        Assert.True(apic.MmioEnabled);
        Assert.Equal(0xFED0_0900UL, Msr(apic, 0x1B));               // the BSP bit stays
        Assert.True(apic.WriteMsr(0x1B, b));                         // xAPIC -> disabled
    }

    [Fact]
    public void ApicBaseIllegalTransitionsAndReservedBitsRaiseGp()
    {
        (LocalApic apic, _, _) = Make();
        const ulong b = LocalApic.DefaultBase, en = LocalApic.BaseEnable, x2 = LocalApic.BaseExtd;
        Assert.False(apic.WriteMsr(0x1B, b | x2));                   // the invalid state (EN 0, EXTD 1)
        Assert.False(apic.WriteMsr(0x1B, b | en | 1));               // bits 7:0 reserved
        Assert.False(apic.WriteMsr(0x1B, b | en | (1UL << 9)));      // bit 9 reserved
        Assert.False(apic.WriteMsr(0x1B, b | en | (1UL << 39)));     // above MAXPHYADDR (39)
        apic.PhysAddrBits = 46;
        Assert.True(apic.WriteMsr(0x1B, b | en | (1UL << 39)));
        Assert.True(apic.WriteMsr(0x1B, b | en | x2));
        Assert.False(apic.WriteMsr(0x1B, b | en));                   // x2APIC -> xAPIC
        Assert.True(apic.X2ApicMode);
        Assert.True(apic.WriteMsr(0x1B, b));
        Assert.False(apic.WriteMsr(0x1B, b | en | x2));              // disabled -> x2APIC
        Assert.False(apic.HardwareEnabled);
    }

    [Fact]
    public void DisablingTheApicResetsItsRegisters()
    {
        (LocalApic apic, _, _) = Make(4, false);
        W(apic, Id, 9u << 24);
        W(apic, Tpr, 0x30);
        W(apic, LvtTimer, 0x40);
        Assert.True(apic.Accept(0x50, false));
        Assert.True(apic.WriteMsr(0x1B, LocalApic.DefaultBase));
        Assert.Equal(-1, apic.PendingVector);
        Assert.False(apic.Accept(0x50, false));                       // a disabled APIC takes nothing
        Assert.True(apic.WriteMsr(0x1B, LocalApic.DefaultBase | LocalApic.BaseEnable));
        Assert.Equal(4u << 24, R(apic, Id));
        Assert.Equal(0u, R(apic, Tpr));
        Assert.Equal(0xFFu, R(apic, Spiv));
        Assert.Equal(Masked, R(apic, LvtTimer));
        Assert.False(IrrBit(apic, 0x50));
        Assert.True(apic.AcceptsPicInterrupts == false);
    }

    // ---- acceptance and priority ----

    [Fact]
    public void ASoftwareDisabledApicAcceptsNothingAndMasksItsLvts()
    {
        (LocalApic apic, _, _) = Make(0, true, false);
        Assert.False(apic.Accept(0x40, false));
        Assert.Equal(-1, apic.PendingVector);
        W(apic, LvtTimer, 0x30);
        Assert.Equal(Masked | 0x30, R(apic, LvtTimer));               // the mask cannot be cleared
        W(apic, Spiv, 0x1FF);
        W(apic, LvtTimer, 0x30);
        Assert.Equal(0x30u, R(apic, LvtTimer));
        Assert.True(apic.Accept(0x40, false));
        W(apic, Spiv, 0xFF);                                         // software disable again
        Assert.Equal(Masked | 0x30, R(apic, LvtTimer));
        Assert.Equal(Masked | 0x700, R(apic, LvtLint0));
        Assert.False(apic.AcceptsPicInterrupts);
        Assert.Equal(0x40, apic.PendingVector);                      // what was pending stays
        Assert.False(apic.Accept(0x41, false));
    }

    [Fact]
    public void IllegalVectorsSetTheErrorRegisterAfterAnEsrWriteAndRaiseTheErrorLvt()
    {
        (LocalApic apic, _, _) = Make();
        W(apic, LvtError, 0xE0);
        Assert.False(apic.Accept(5, false));
        Assert.Equal(0u, R(apic, Esr));                              // latched only by an ESR write
        W(apic, Esr, 0);
        Assert.Equal(0x40u, R(apic, Esr));                           // received illegal vector
        Assert.Equal(0xE0, apic.PendingVector);
        W(apic, IcrLow, (1u << 18) | 3);                             // self-IPI, illegal vector 3
        W(apic, Esr, 0);
        Assert.Equal(0x20u, R(apic, Esr));                           // send illegal vector
        W(apic, Esr, 0);
        Assert.Equal(0u, R(apic, Esr));
    }

    [Fact]
    public void TprMasksInterruptsOfItsClassAndBelow()
    {
        (LocalApic apic, _, _) = Make();
        Assert.True(apic.Accept(0x45, false));
        W(apic, Tpr, 0x40);
        Assert.Equal(-1, apic.PendingVector);
        Assert.Equal(-1, apic.Acknowledge());
        Assert.Equal(0x40u, R(apic, Ppr));
        W(apic, Tpr, 0x3F);
        Assert.Equal(0x45, apic.PendingVector);
        W(apic, Tpr, 0x4F);
        Assert.Equal(-1, apic.PendingVector);
        W(apic, Tpr, 0);
        Assert.Equal(0x45, apic.Acknowledge());
        Assert.False(IrrBit(apic, 0x45));
        Assert.True(IsrBit(apic, 0x45));
    }

    [Fact]
    public void PprComesFromTheHighestInServiceVectorsClass()
    {
        (LocalApic apic, _, _) = Make();
        apic.Accept(0x31, false);
        Assert.Equal(0x31, apic.Acknowledge());
        Assert.Equal(0x30u, R(apic, Ppr));
        apic.Accept(0x35, false);
        Assert.Equal(-1, apic.PendingVector);                        // same class as in service
        apic.Accept(0x81, false);
        Assert.Equal(0x81, apic.Acknowledge());                      // nests above 0x31
        Assert.Equal(0x80u, R(apic, Ppr));                           // not 0x20 (two bits), not 0x30
        apic.Accept(0x71, false);
        Assert.Equal(-1, apic.PendingVector);
        W(apic, Tpr, 0x92);
        Assert.Equal(0x92u, R(apic, Ppr));                           // TPR above the ISR class: TPR whole
        W(apic, Tpr, 0x85);
        Assert.Equal(0x85u, R(apic, Ppr));                           // same class: TPR, sub-class kept
        W(apic, Tpr, 0x10);
        Assert.Equal(0x80u, R(apic, Ppr));

        // EOI retires the highest in-service vector first.
        W(apic, Eoi, 0);
        Assert.False(IsrBit(apic, 0x81));
        Assert.True(IsrBit(apic, 0x31));
        Assert.Equal(0x30u, R(apic, Ppr));
        Assert.Equal(0x71, apic.Acknowledge());
        Assert.Equal(0x70u, R(apic, Ppr));
        W(apic, Eoi, 0);
        Assert.Equal(0x30u, R(apic, Ppr));
        Assert.Equal(-1, apic.PendingVector);                        // 0x35 still waits behind 0x31
        W(apic, Eoi, 0);
        Assert.Equal(0x10u, R(apic, Ppr));
        Assert.Equal(0x35, apic.Acknowledge());
        Assert.Equal(0x35, apic.EndOfInterrupt());
        Assert.Equal(-1, apic.EndOfInterrupt());
    }

    [Fact]
    public void AprFollowsTheSdmRule()
    {
        (LocalApic apic, _, _) = Make();
        W(apic, Tpr, 0x20);
        apic.Accept(0x55, false);
        Assert.Equal(0x50u, R(apic, Apr));                           // the IRR class wins
        W(apic, Tpr, 0x63);
        Assert.Equal(0x63u, R(apic, Apr));                           // TPR above both
        W(apic, Tpr, 0);
        Assert.Equal(0x55, apic.Acknowledge());
        apic.Accept(0x31, false);
        Assert.Equal(0x50u, R(apic, Apr));                           // the ISR class
    }

    [Fact]
    public void LevelTriggeredEoiIsReportedAndEdgeEoiIsNot()
    {
        (LocalApic apic, _, _) = Make();
        RecordingEoiListener eoi = new RecordingEoiListener();
        apic.EoiListener = eoi;
        apic.Accept(0x61, true);
        apic.Accept(0x62, false);
        Assert.Equal(1u << 1, R(apic, Tmr + 0x30));                  // TMR bit of 0x61 only
        Assert.Equal(0x62, apic.Acknowledge());
        W(apic, Eoi, 0);
        Assert.Empty(eoi.Vectors);
        Assert.Equal(0x61, apic.Acknowledge());
        W(apic, Eoi, 0);
        Assert.Equal(new[] { 0x61 }, eoi.Vectors);
        Assert.Equal(0x61, apic.LastLevelEoi);
        apic.Accept(0x61, false);                                    // accepted as edge now: TMR cleared
        Assert.Equal(0u, R(apic, Tmr + 0x30));
    }

    [Fact]
    public void ARequestedVectorCoalesces()
    {
        (LocalApic apic, _, _) = Make();
        Assert.True(apic.Accept(0x40, false));
        Assert.True(apic.Accept(0x40, false));
        Assert.Equal(0x40, apic.Acknowledge());
        Assert.Equal(-1, apic.PendingVector);
        Assert.True(apic.Accept(0x40, false));                       // while in service: requested again
        Assert.Equal(-1, apic.PendingVector);                        // same class as in service
        W(apic, Eoi, 0);
        Assert.Equal(0x40, apic.PendingVector);
    }

    // ---- the timer ----

    [Theory]
    [InlineData(0x0u, 1)]
    [InlineData(0x1u, 2)]
    [InlineData(0x2u, 3)]
    [InlineData(0x3u, 4)]
    [InlineData(0x8u, 5)]
    [InlineData(0x9u, 6)]
    [InlineData(0xAu, 7)]
    [InlineData(0xBu, 0)]
    public void TheDivideRegisterEncoding(uint divide, int shift)
    {
        Assert.Equal(shift, LocalApic.DivideShift(divide));
        (LocalApic apic, ManualClock clock, _) = Make();
        W(apic, Divide, divide);
        W(apic, LvtTimer, 0x30);
        W(apic, InitialCount, 10);
        Assert.Equal(clock.NowNs + (10UL << shift), apic.NextEventNs);
    }

    [Fact]
    public void OneShotCountsDownThroughTheDividerAndFiresOnce()
    {
        (LocalApic apic, ManualClock clock, _) = Make();
        ulong start = clock.NowNs;
        W(apic, Divide, 0x3);                                        // divide by 16
        W(apic, LvtTimer, 0x30);
        W(apic, InitialCount, 1000);
        Assert.Equal(1000u, R(apic, InitialCount));
        Assert.Equal(1000u, R(apic, CurrentCount));
        Assert.Equal(start + 16_000, apic.NextEventNs);
        clock.NowNs = start + 8_000;
        Assert.Equal(500u, R(apic, CurrentCount));
        clock.NowNs = start + 8_015;
        Assert.Equal(500u, R(apic, CurrentCount));                   // whole counts only
        clock.NowNs = start + 15_999;
        apic.Poll();
        Assert.Equal(-1, apic.PendingVector);
        Assert.Equal(1u, R(apic, CurrentCount));
        clock.NowNs = start + 16_000;
        apic.Poll();
        Assert.Equal(0x30, apic.PendingVector);
        Assert.Equal(1UL, apic.TimerInterrupts);
        Assert.Equal(0u, R(apic, CurrentCount));
        Assert.Equal(ulong.MaxValue, apic.NextEventNs);
        apic.Acknowledge();
        W(apic, Eoi, 0);
        clock.NowNs = start + 1_000_000;
        apic.Poll();
        Assert.Equal(-1, apic.PendingVector);
        Assert.Equal(1UL, apic.TimerInterrupts);
        W(apic, InitialCount, 0);                                    // 0 stops the timer
        Assert.Equal(ulong.MaxValue, apic.NextEventNs);
    }

    [Fact]
    public void PeriodicReloadsAndCoalescesMissedPeriods()
    {
        (LocalApic apic, ManualClock clock, _) = Make();
        ulong start = clock.NowNs;
        W(apic, Divide, 0xB);                                        // divide by 1
        W(apic, LvtTimer, Periodic | 0x31);
        W(apic, InitialCount, 1000);
        Assert.Equal(start + 1000, apic.NextEventNs);
        clock.NowNs = start + 3_500;
        Assert.Equal(500u, R(apic, CurrentCount));
        apic.Poll();
        Assert.Equal(1UL, apic.TimerInterrupts);                     // three periods, one interrupt
        Assert.Equal(start + 4_000, apic.NextEventNs);
        apic.Poll();
        Assert.Equal(1UL, apic.TimerInterrupts);
        Assert.Equal(0x31, apic.Acknowledge());
        W(apic, Eoi, 0);
        clock.NowNs = start + 4_000;
        Assert.Equal(1000u, R(apic, CurrentCount));                  // reloaded
        apic.Poll();
        Assert.Equal(2UL, apic.TimerInterrupts);
        Assert.Equal(0x31, apic.PendingVector);
        Assert.Equal(start + 5_000, apic.NextEventNs);
    }

    [Fact]
    public void ADivideChangeMidCountKeepsTheCountsGoneAndChangesTheRate()
    {
        (LocalApic apic, ManualClock clock, _) = Make();
        W(apic, Divide, 0xB);
        W(apic, LvtTimer, 0x30);
        W(apic, InitialCount, 1000);
        clock.Advance(400);
        W(apic, Divide, 0x0);                                        // divide by 2
        Assert.Equal(600u, R(apic, CurrentCount));
        Assert.Equal(clock.NowNs + 1200, apic.NextEventNs);
        clock.Advance(600);
        Assert.Equal(300u, R(apic, CurrentCount));
    }

    [Fact]
    public void AMaskedTimerCountsButInterruptsNobodyAndDropsTheMissedPeriods()
    {
        (LocalApic apic, ManualClock clock, _) = Make();
        ulong start = clock.NowNs;
        W(apic, Divide, 0xB);
        W(apic, LvtTimer, Masked | Periodic | 0x32);
        W(apic, InitialCount, 1000);
        Assert.Equal(ulong.MaxValue, apic.NextEventNs);
        clock.NowNs = start + 2_500;
        apic.Poll();
        Assert.Equal(-1, apic.PendingVector);
        Assert.Equal(0UL, apic.TimerInterrupts);
        Assert.Equal(500u, R(apic, CurrentCount));
        clock.NowNs = start + 4_200;                                 // unmasked after more periods, unpolled
        W(apic, LvtTimer, Periodic | 0x32);
        Assert.Equal(start + 5_000, apic.NextEventNs);
        apic.Poll();
        Assert.Equal(-1, apic.PendingVector);
        clock.NowNs = start + 5_000;
        apic.Poll();
        Assert.Equal(0x32, apic.PendingVector);
    }

    [Fact]
    public void TscDeadlineFiresOnceAtTheDeadlineAndClearsTheMsr()
    {
        (LocalApic apic, ManualClock clock, _) = Make();
        apic.TscAtZero = 1_000_000;
        Assert.Equal(1_000_000 + clock.NowNs * 2, apic.GuestTsc);
        W(apic, LvtTimer, TscDeadline | 0x33);
        W(apic, InitialCount, 500);                                  // ignored in this mode
        Assert.Equal(0u, R(apic, InitialCount));
        Assert.Equal(0u, R(apic, CurrentCount));
        Assert.Equal(ulong.MaxValue, apic.NextEventNs);
        ulong now = clock.NowNs;
        ulong deadline = apic.GuestTsc + 2_000;                      // 1 us at 2 GHz
        Assert.True(apic.WriteMsr(LocalApic.MsrTscDeadline, deadline));
        Assert.Equal(deadline, Msr(apic, LocalApic.MsrTscDeadline));
        Assert.Equal(now + 1_000, apic.NextEventNs);
        clock.NowNs = now + 999;
        apic.Poll();
        Assert.Equal(-1, apic.PendingVector);
        clock.NowNs = now + 1_000;
        apic.Poll();
        Assert.Equal(0x33, apic.PendingVector);
        Assert.Equal(0UL, Msr(apic, LocalApic.MsrTscDeadline));
        Assert.Equal(ulong.MaxValue, apic.NextEventNs);
        Assert.Equal(1UL, apic.TimerInterrupts);

        // A deadline already past fires at the write; 0 disarms.
        apic.Acknowledge();
        W(apic, Eoi, 0);
        Assert.True(apic.WriteMsr(LocalApic.MsrTscDeadline, 1));
        Assert.Equal(0x33, apic.PendingVector);
        Assert.True(apic.WriteMsr(LocalApic.MsrTscDeadline, apic.GuestTsc + 10));
        Assert.True(apic.WriteMsr(LocalApic.MsrTscDeadline, 0));
        Assert.Equal(ulong.MaxValue, apic.NextEventNs);
    }

    [Fact]
    public void TscDeadlineMsrIsIgnoredInTheOtherModesAndLeavingTheModeDisarms()
    {
        (LocalApic apic, ManualClock clock, _) = Make();
        W(apic, LvtTimer, 0x34);
        Assert.True(apic.WriteMsr(LocalApic.MsrTscDeadline, apic.GuestTsc + 100));
        Assert.Equal(0UL, Msr(apic, LocalApic.MsrTscDeadline));
        Assert.Equal(ulong.MaxValue, apic.NextEventNs);
        W(apic, InitialCount, 100);
        W(apic, LvtTimer, TscDeadline | 0x34);                       // entering the mode disarms the count
        Assert.Equal(0u, R(apic, InitialCount));
        Assert.True(apic.WriteMsr(LocalApic.MsrTscDeadline, apic.GuestTsc + 100));
        W(apic, LvtTimer, 0x34);                                     // leaving it clears the deadline
        W(apic, LvtTimer, TscDeadline | 0x34);
        Assert.Equal(0UL, Msr(apic, LocalApic.MsrTscDeadline));
        clock.Advance(1_000_000);
        apic.Poll();
        Assert.Equal(-1, apic.PendingVector);
    }

    [Fact]
    public void AMaskedTscDeadlineExpiresSilently()
    {
        (LocalApic apic, ManualClock clock, _) = Make();
        W(apic, LvtTimer, Masked | TscDeadline | 0x35);
        Assert.True(apic.WriteMsr(LocalApic.MsrTscDeadline, apic.GuestTsc + 100));
        Assert.Equal(ulong.MaxValue, apic.NextEventNs);
        clock.Advance(100);
        W(apic, LvtTimer, TscDeadline | 0x35);
        apic.Poll();
        Assert.Equal(-1, apic.PendingVector);
        Assert.Equal(0UL, Msr(apic, LocalApic.MsrTscDeadline));
    }

    // ---- IPIs ----

    [Fact]
    public void SelfIpisGoStraightIntoIrr()
    {
        (LocalApic apic, _, RecordingIpiSink ipis) = Make();
        W(apic, IcrLow, (1u << 18) | 0x40);
        Assert.True(IrrBit(apic, 0x40));
        EnterX2Apic(apic);
        Assert.True(apic.WriteMsr(0x83F, 0x50));
        Assert.True(IrrBitMsr(apic, 0x50));
        Assert.False(apic.WriteMsr(0x83F, 0x150));
        Assert.Empty(ipis.Sent);
        Assert.Equal(0x50, apic.PendingVector);
    }

    private static bool IrrBitMsr(LocalApic apic, int vector) => (Msr(apic, (uint)(0x820 + (vector >> 5))) & (1UL << (vector & 31))) != 0;

    [Fact]
    public void InitAndStartUpIpisReachTheSinkWithTheirFields()
    {
        (LocalApic apic, _, RecordingIpiSink ipis) = Make(0);
        W(apic, IcrHigh, 1u << 24);
        W(apic, IcrLow, 0x0000_C500);                                // INIT, level, assert
        W(apic, IcrLow, 0x0000_8500);                                // INIT level de-assert
        W(apic, IcrLow, 0x0000_4608);                                // start-up at 0x8000
        W(apic, IcrLow, 0x000C_4500);                                // INIT to all excluding self
        Assert.Equal(4, ipis.Sent.Count);
        IpiRequest init = ipis.Sent[0];
        Assert.Equal(IpiRequest.Init, init.DeliveryMode);
        Assert.Equal(1u, init.Destination);
        Assert.False(init.Logical);
        Assert.True(init.Assert);
        Assert.True(init.LevelTriggered);
        Assert.Equal(IpiRequest.NoShorthand, init.Shorthand);
        Assert.Equal(0u, init.Source);
        Assert.False(init.IsInitDeassert);
        Assert.True(ipis.Sent[1].IsInitDeassert);
        IpiRequest sipi = ipis.Sent[2];
        Assert.Equal(IpiRequest.StartUp, sipi.DeliveryMode);
        Assert.Equal(8, sipi.Vector);
        Assert.Equal(1u, sipi.Destination);
        Assert.Equal(IpiRequest.AllExcludingSelf, ipis.Sent[3].Shorthand);
        Assert.False(apic.InitPending);                              // none of them was for this APIC
        Assert.Equal(-1, apic.StartUpVector);
        Assert.Equal(0x0000_0500u, R(apic, IcrLow) & 0x0000_0F00u);  // delivery status reads 0
        Assert.Equal(0u, R(apic, IcrLow) & (1u << 12));
    }

    [Fact]
    public void FixedIpisToItselfLandInIrrAndTheRestGoToTheSink()
    {
        (LocalApic apic, _, RecordingIpiSink ipis) = Make(2);
        W(apic, IcrHigh, 2u << 24);
        W(apic, IcrLow, 0x41);                                       // fixed to its own ID
        Assert.True(IrrBit(apic, 0x41));
        W(apic, IcrLow, (2u << 18) | 0x42);                          // all including self
        Assert.True(IrrBit(apic, 0x42));
        W(apic, IcrLow, (3u << 18) | 0x43);                          // all excluding self
        Assert.False(IrrBit(apic, 0x43));
        W(apic, IcrHigh, 3u << 24);
        W(apic, IcrLow, 0x44);                                       // another APIC
        Assert.False(IrrBit(apic, 0x44));
        W(apic, IcrHigh, 0xFFu << 24);
        W(apic, IcrLow, 0x45);                                       // the broadcast ID
        Assert.True(IrrBit(apic, 0x45));
        Assert.Equal(5, ipis.Sent.Count);
        Assert.Equal(3u, ipis.Sent[3].Destination);
        W(apic, IcrLow, 0x0F);                                       // illegal vector: not sent
        Assert.Equal(5, ipis.Sent.Count);
        W(apic, Esr, 0);
        Assert.Equal(0x20u, R(apic, Esr));
    }

    [Fact]
    public void NmiInitAndStartUpMessagesForThisApicAreLeftForTheVmLoop()
    {
        (LocalApic apic, _, _) = Make(1, false);
        W(apic, IcrLow, (2u << 18) | 0x400);                         // NMI to all including self
        Assert.True(apic.NmiPending);
        Assert.True(apic.HasNmiInitOrStartUp);
        Assert.True(apic.TakeNmi());
        Assert.False(apic.TakeNmi());
        Assert.False(apic.Deliver(1, false, IpiRequest.StartUp, 0x9A, false));   // no INIT yet: ignored
        Assert.Equal(-1, apic.StartUpVector);
        Assert.True(apic.Deliver(1, false, IpiRequest.Init, 0, false));
        Assert.True(apic.InitPending);
        Assert.True(apic.WaitingForSipi);
        Assert.True(apic.Deliver(1, false, IpiRequest.StartUp, 0x9A, false));
        Assert.Equal(0x9A, apic.StartUpVector);
        Assert.False(apic.WaitingForSipi);
        Assert.False(apic.Deliver(1, false, IpiRequest.StartUp, 0x9B, false));   // the second SIPI: ignored
        Assert.True(apic.TakeInit());
        Assert.False(apic.TakeInit());
        Assert.Equal(0x9A, apic.TakeStartUp());
        Assert.Equal(-1, apic.TakeStartUp());
        Assert.False(apic.HasNmiInitOrStartUp);
        Assert.False(apic.Deliver(1, false, IpiRequest.Smi, 0, false));
        Assert.False(apic.Deliver(2, false, IpiRequest.Fixed, 0x40, false));
        Assert.Equal(-1, apic.PendingVector);
    }

    [Fact]
    public void TheBspIgnoresInitAndStartUp()
    {
        (LocalApic apic, _, _) = Make(0, true);
        Assert.False(apic.Deliver(0, false, IpiRequest.Init, 0, false));
        Assert.False(apic.InitPending);
        Assert.False(apic.WaitingForSipi);
        Assert.False(apic.Deliver(0, false, IpiRequest.StartUp, 0x9A, false));
        Assert.Equal(-1, apic.StartUpVector);
        Assert.True(apic.SoftwareEnabled);                           // not reset either
    }

    [Fact]
    public void InitResetsTheApApicAndDropsAStartUpNotYetTaken()
    {
        (LocalApic apic, _, _) = Make(3, false);
        W(apic, Tpr, 0x20);
        W(apic, IcrLow, (1u << 18) | 0x40);                          // self IPI: in IRR
        Assert.True(apic.Deliver(3, false, IpiRequest.Init, 0, false));
        Assert.True(apic.Deliver(3, false, IpiRequest.StartUp, 0x10, false));
        Assert.True(apic.Deliver(3, false, IpiRequest.Init, 0, false));          // INIT again before the loop looked
        Assert.Equal(-1, apic.StartUpVector);
        Assert.True(apic.WaitingForSipi);
        Assert.False(apic.SoftwareEnabled);                          // power-up state, ID kept
        Assert.Equal(0u, R(apic, Tpr));
        Assert.False(IrrBit(apic, 0x40));
        Assert.Equal(3u << 24, R(apic, Id));
        Assert.True(apic.Deliver(3, false, IpiRequest.StartUp, 0x11, false));
        Assert.Equal(0x11, apic.TakeStartUp());
    }

    [Fact]
    public void LogicalDestinationsInTheFlatClusterAndX2ApicModels()
    {
        (LocalApic apic, _, _) = Make(0x21, false);
        W(apic, Ldr, 0x0200_0000);                                   // flat: bit 1
        Assert.True(apic.Matches(0x02, true));
        Assert.True(apic.Matches(0x03, true));
        Assert.False(apic.Matches(0x04, true));
        Assert.True(apic.Matches(0xFF, true));
        Assert.True(apic.Matches(0x21, false));
        Assert.False(apic.Matches(0x02, false));
        W(apic, Dfr, 0x0FFF_FFFF);                                   // cluster model
        W(apic, Ldr, 0x1200_0000);                                   // cluster 1, member bit 1
        Assert.True(apic.Matches(0x12, true));
        Assert.True(apic.Matches(0x13, true));
        Assert.False(apic.Matches(0x22, true));
        Assert.False(apic.Matches(0x11, true));
        EnterX2Apic(apic);
        Assert.Equal(0x0002_0002UL, Msr(apic, 0x80D));               // cluster 2, member bit 1
        Assert.True(apic.Matches(0x0002_0003, true));
        Assert.False(apic.Matches(0x0001_0002, true));
        Assert.True(apic.Matches(0x21, false));
        Assert.True(apic.Matches(0xFFFF_FFFF, false));
        Assert.False(apic.Matches(0xFF, false));
    }

    [Fact]
    public void Lint0DecidesWhetherThePicIsHeard()
    {
        (LocalApic apic, _, _) = Make();
        Assert.True(apic.AcceptsPicInterrupts);
        W(apic, LvtLint0, Masked | 0x700);
        Assert.False(apic.AcceptsPicInterrupts);
        W(apic, LvtLint0, 0x000);                                    // fixed mode: not virtual wire
        Assert.False(apic.AcceptsPicInterrupts);
        W(apic, LvtLint0, 0x700);
        Assert.True(apic.AcceptsPicInterrupts);
        W(apic, LvtLint0, Masked);
        Assert.True(apic.WriteMsr(0x1B, LocalApic.DefaultBase));     // hardware-disabled: the PIC drives INTR
        Assert.True(apic.AcceptsPicInterrupts);
    }
}
