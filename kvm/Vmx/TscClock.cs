using Tandem.Arch.X86;
using Tandem.Kvm.Devices;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// The VM clock of the device models: the host's TSC (constant-rate, synchronised across CPUs
    /// at boot) in nanoseconds, with the frequency the kernel calibrated against the PIT.
    /// </summary>
    public sealed class TscClock : IDeviceClock
    {
        public static readonly TscClock Instance = new TscClock();

        public ulong NowNs => TscToNs(Native.Rdtsc());

        public ulong WallSecondsAtZero => KvmHost.WallSecondsAtTscZero;

        public static ulong TscToNs(ulong tsc)
        {
            ulong f = KvmHost.TscPerSecond;
            return tsc / f * 1_000_000_000UL + tsc % f * 1_000_000_000UL / f;
        }

        public static ulong NsToTsc(ulong ns)
        {
            ulong f = KvmHost.TscPerSecond;
            return ns / 1_000_000_000UL * f + ns % 1_000_000_000UL * f / 1_000_000_000UL;
        }
    }
}
