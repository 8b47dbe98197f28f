using Xunit;

namespace Tandem.Build.Tests;

/// <summary>
/// When an emulator run says "still running" (tools/Build/Heartbeat.cs), on a fake clock: after 10 s
/// without a line shown, again every 10 s of silence, never sooner, with the time since the start.
/// </summary>
public sealed class HeartbeatTests
{
    private TimeSpan _now = TimeSpan.FromSeconds(100);

    private Heartbeat Make() => new("QEMU BIOS (1 cpu)", () => _now);

    private void At(double secondsSinceStart) => _now = TimeSpan.FromSeconds(100 + secondsSinceStart);

    [Fact]
    public void ASilentRunGetsALineEveryTenSeconds()
    {
        Heartbeat h = Make();
        At(0);
        Assert.Null(h.Poll());
        At(9.99);
        Assert.Null(h.Poll());
        At(10);
        Assert.Equal("still running: QEMU BIOS (1 cpu), 10 s", h.Poll());
        Assert.Null(h.Poll());                      // the heartbeat itself was a line shown
        At(19.9);
        Assert.Null(h.Poll());
        At(20.5);
        Assert.Equal("still running: QEMU BIOS (1 cpu), 20 s", h.Poll());
        At(95);                                     // polled late: one line, not one per 10 s missed
        Assert.Equal("still running: QEMU BIOS (1 cpu), 1 min 35 s", h.Poll());
        Assert.Null(h.Poll());
    }

    [Fact]
    public void ALineShownPutsTheHeartbeatOff()
    {
        Heartbeat h = Make();
        At(7);
        h.Shown();
        At(16.9);
        Assert.Null(h.Poll());
        At(17);
        Assert.Equal("still running: QEMU BIOS (1 cpu), 17 s", h.Poll());
        At(20);
        h.Shown();
        At(29);
        Assert.Null(h.Poll());
        At(30);
        Assert.NotNull(h.Poll());
    }

    [Fact]
    public void TheSilenceCanBeChosen()
    {
        var h = new Heartbeat("step", () => _now, TimeSpan.FromSeconds(3));
        At(2);
        Assert.Null(h.Poll());
        At(3);
        Assert.Equal("still running: step, 3 s", h.Poll());
    }

    [Theory]
    [InlineData(0, "0 s")]
    [InlineData(9.9, "9 s")]
    [InlineData(59, "59 s")]
    [InlineData(60, "1 min 00 s")]
    [InlineData(725, "12 min 05 s")]
    [InlineData(3599, "59 min 59 s")]
    [InlineData(3725, "1 h 02 min")]
    public void ElapsedTimesRead(double seconds, string text) =>
        Assert.Equal(text, Heartbeat.Format(TimeSpan.FromSeconds(seconds)));
}
