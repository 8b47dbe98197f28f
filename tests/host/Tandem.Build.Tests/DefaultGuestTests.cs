using System.Text;
using Xunit;

namespace Tandem.Build.Tests;

/// <summary>What './build.sh run' without --cmdline boots (tools/Build/DefaultGuest.cs).</summary>
public sealed class DefaultGuestTests
{
    [Fact]
    public void WithoutATerminalLinuxBootsAndItsShellGetsPoweroffOnceReady()
    {
        DefaultGuest.Choice c = DefaultGuest.Choose(qemuOnly: false, why: "", interactive: false, inputGiven: false, linuxUnavailable: null);
        Assert.Equal("vm=linux", c.Cmdline);
        Assert.Equal("poweroff\n", Encoding.ASCII.GetString(c.Input!));
        Assert.Equal("TANDEM-SHELL-READY", c.InputAfter);
        Assert.Contains(c.Lines, l => l.Contains("not a terminal", StringComparison.Ordinal));
    }

    [Fact]
    public void OnATerminalTheShellIsTheUsersAndNothingIsTyped()
    {
        DefaultGuest.Choice c = DefaultGuest.Choose(qemuOnly: false, why: "", interactive: true, inputGiven: false, linuxUnavailable: null);
        Assert.Equal("vm=linux", c.Cmdline);
        Assert.Null(c.Input);
        Assert.Contains(c.Lines, l => l.Contains("Ctrl-A X", StringComparison.Ordinal));
    }

    [Fact]
    public void AGivenInputIsKeptNotReplaced()
    {
        DefaultGuest.Choice c = DefaultGuest.Choose(qemuOnly: false, why: "", interactive: false, inputGiven: true, linuxUnavailable: null);
        Assert.Equal("vm=linux", c.Cmdline);
        Assert.Null(c.Input);
    }

    [Fact]
    public void WithoutTheLinuxModulesItIsHello32AndItSaysWhy()
    {
        DefaultGuest.Choice c = DefaultGuest.Choose(qemuOnly: false, why: "", interactive: false, inputGiven: false, linuxUnavailable: "no network");
        Assert.Equal("vm=hello32", c.Cmdline);
        Assert.Null(c.Input);
        Assert.Contains("no network", Assert.Single(c.Lines), StringComparison.Ordinal);
    }

    [Fact]
    public void OnQemuWithoutVtxNothingRunsAndItSaysWhy()
    {
        DefaultGuest.Choice c = DefaultGuest.Choose(qemuOnly: true, why: "--gdb", interactive: true, inputGiven: false, linuxUnavailable: null);
        Assert.Equal("", c.Cmdline);
        Assert.Contains("--gdb", Assert.Single(c.Lines), StringComparison.Ordinal);
    }
}
