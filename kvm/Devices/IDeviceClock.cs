namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The VM's time, for devices with timers and clocks (the kernel: the calibrated TSC; host
    /// tests: a manual clock they advance).
    /// </summary>
    public interface IDeviceClock
    {
        /// <summary>Monotonic nanoseconds since an arbitrary origin.</summary>
        ulong NowNs { get; }

        /// <summary>Wall-clock time (seconds since 1970-01-01 UTC) at <see cref="NowNs"/> = 0, for the RTC.</summary>
        ulong WallSecondsAtZero { get; }
    }
}
