namespace Tandem.Build;

/// <summary>
/// When a long step (an emulator run) has shown nothing for <see cref="Silence"/>, it says it is
/// still running: "still running: STEP, ELAPSED". The step reports each line it shows
/// (<see cref="Shown"/>) and asks <see cref="Poll"/> now and then; a heartbeat counts as a line
/// shown, so a silent step gets one every <see cref="Silence"/>. The clock is passed in (the run's
/// stopwatch; a fake one in the tests). Thread-safe: lines are shown from several threads.
/// </summary>
internal sealed class Heartbeat
{
    public static readonly TimeSpan DefaultSilence = TimeSpan.FromSeconds(10);

    private readonly Func<TimeSpan> _clock;
    private readonly TimeSpan _start;
    private readonly object _lock = new();
    private TimeSpan _lastShown;

    public Heartbeat(string step, Func<TimeSpan> clock, TimeSpan? silence = null)
    {
        Step = step;
        Silence = silence ?? DefaultSilence;
        _clock = clock;
        _start = _lastShown = clock();
    }

    public string Step { get; }

    public TimeSpan Silence { get; }

    /// <summary>The step showed a line now.</summary>
    public void Shown()
    {
        TimeSpan now = _clock();
        lock (_lock)
            if (now > _lastShown)
                _lastShown = now;
    }

    /// <summary>The heartbeat line if the step has been silent for <see cref="Silence"/> (then counted as shown), else null.</summary>
    public string? Poll()
    {
        TimeSpan now = _clock();
        lock (_lock)
        {
            if (now - _lastShown < Silence)
                return null;
            _lastShown = now;
        }
        return $"still running: {Step}, {Format(now - _start)}";
    }

    /// <summary>"9 s", "59 s", "1 min 00 s", "12 min 05 s", "1 h 02 min": whole seconds, rounded down.</summary>
    public static string Format(TimeSpan elapsed)
    {
        long s = Math.Max(0, (long)elapsed.TotalSeconds);
        if (s < 60)
            return $"{s} s";
        if (s < 3600)
            return $"{s / 60} min {s % 60:D2} s";
        return $"{s / 3600} h {s / 60 % 60:D2} min";
    }
}
