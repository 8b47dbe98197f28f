namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The VM's time, for devices with timers and clocks. <see cref="NowNs"/> is monotonic
    /// nanoseconds since an arbitrary origin (the kernel: the calibrated TSC; host tests: a manual
    /// clock they advance). <see cref="WallSecondsAtZero"/> is the wall-clock time (seconds since
    /// 1970-01-01 UTC) at <see cref="NowNs"/> = 0, for the RTC.
    /// </summary>
    public interface IDeviceClock
    {
        ulong NowNs { get; }

        ulong WallSecondsAtZero { get; }
    }
}
