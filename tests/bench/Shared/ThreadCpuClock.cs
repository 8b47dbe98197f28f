using System.Runtime.InteropServices;
using Perfolizer.Horology;

namespace Tandem.Benchmarks;

/// <summary>
/// BenchmarkDotNet's clock here: the calling thread's CPU time (Linux
/// <c>clock_gettime(CLOCK_THREAD_CPUTIME_ID)</c>, nanoseconds) minus the regions a benchmark marks
/// <see cref="Untimed"/> (restoring state between the two passes of a paired iteration). On a
/// shared, oversubscribed machine wall time also counts the time the thread waited for a core;
/// CPU time counts what the code did, stalls and spins included.
/// </summary>
public sealed class ThreadCpuClock : IClock
{
    public static readonly ThreadCpuClock Instance = new ThreadCpuClock();

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec ts);

    private const int ClockThreadCpuTime = 3;

    [DllImport("libc", EntryPoint = "pthread_self")]
    private static extern nuint PthreadSelf();

    [DllImport("libc", EntryPoint = "pthread_getcpuclockid")]
    private static extern int PthreadGetCpuClockId(nuint thread, out int clock);

    [System.ThreadStatic] private static long t_untimed;

    /// <summary>This thread's CPU time so far (untimed regions included).</summary>
    public static long Now() => Read(ClockThreadCpuTime);

    /// <summary>Marks a region whose CPU time BenchmarkDotNet's timestamps leave out: <c>using (ThreadCpuClock.Untimed()) { ... }</c>.</summary>
    public static UntimedRegion Untimed() => new UntimedRegion(Now());

    /// <summary>Leaves <paramref name="ns"/> of CPU time already spent out of BenchmarkDotNet's timestamps.</summary>
    public static void AddUntimed(long ns) => t_untimed += ns;

    public readonly struct UntimedRegion : System.IDisposable
    {
        private readonly long _start;
        public UntimedRegion(long start) { _start = start; }
        public void Dispose() => t_untimed += Now() - _start;
    }

    /// <summary>The CPU-time clock of the calling thread, readable from other threads with <see cref="Read"/>.</summary>
    public static int ClockOfThisThread()
    {
        if (PthreadGetCpuClockId(PthreadSelf(), out int clock) != 0)
            throw new System.InvalidOperationException("pthread_getcpuclockid failed");
        return clock;
    }

    public static long Read(int clock)
    {
        ClockGetTime(clock, out TimeSpec ts);
        return ts.Seconds * 1_000_000_000L + ts.Nanoseconds;
    }

    public string Title => "thread CPU time";
    public bool IsAvailable => RuntimeInformation.IsOSPlatform(OSPlatform.Linux) && ClockGetTime(ClockThreadCpuTime, out _) == 0;
    public Frequency Frequency => Frequency.GHz;
    public long GetTimestamp() => Now() - t_untimed;
}
