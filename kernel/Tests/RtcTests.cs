using Tandem.Arch.X86;
using Tandem.Kvm;
using Tandem.Kvm.Devices;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Tests
{
    /// <summary>The host's RTC read at boot, and a VM's RTC starting from it (no VMX needed: the device model alone).</summary>
    internal static class RtcTests
    {
        /// <summary>2026-01-01 00:00:00 UTC: Bochs' clock starts there (tools/Build/Emulator.cs), QEMU's at the host's time, later still.</summary>
        private const ulong NotBefore = 1_767_225_600;

        private sealed class NoIrq : IIrqSink
        {
            public void SetIrq(int irq, bool level) { }
        }

        public static void VmClockStartsAtTheHostDate(TestContext t)
        {
            ulong atZero = KvmHost.WallSecondsAtTscZero;
            if (!t.Check(atZero != 0 && atZero == HostRtc.WallSecondsAtTscZero, "the host RTC was not read at boot (see the rtc: line)", atZero))
                return;
            ulong now = atZero + Native.Rdtsc() / KvmHost.TscPerSecond;
            if (!t.Check(now >= NotBefore, "the host clock says a time before 2026", now))
                return;
            var cmos = new Cmos(TscClock.Instance, new NoIrq(), 64UL << 20, 0);
            long guest = cmos.GuestSeconds;
            long difference = guest - (long)now;
            t.Check(difference >= -2 && difference <= 2, "a VM's RTC does not start at the host's time", (ulong)guest);
        }
    }
}
