using System.Collections.Generic;
using System.Text;
using Tandem.Kvm.Monitor;
using Xunit;

namespace Tandem.Kvm.Tests.Monitor;

/// <summary>The serial console's keys (kvm/Monitor/ConsoleSwitch.cs): Ctrl-A C and the monitor's line editor.</summary>
public sealed class ConsoleSwitchTests
{
    private static List<SwitchAction> Feed(ConsoleSwitch s, string keys)
    {
        var actions = new List<SwitchAction>();
        foreach (byte b in Encoding.Latin1.GetBytes(keys))
            actions.Add(s.Feed(b));
        return actions;
    }

    [Fact]
    public void KeysReachTheVmUntilCtrlAC()
    {
        var s = new ConsoleSwitch();
        Assert.Equal(new[] { SwitchAction.ToVm, SwitchAction.ToVm }, Feed(s, "ls"));
        Assert.Equal(new[] { SwitchAction.None, SwitchAction.Toggle }, Feed(s, "\u0001c"));
        Assert.True(s.InMonitor);
        Assert.Equal(new[] { SwitchAction.Echo, SwitchAction.Echo, SwitchAction.Echo, SwitchAction.Erase, SwitchAction.Echo }, Feed(s, "hek\u007fl"));
        Assert.Equal("hel", Encoding.ASCII.GetString(s.Line));
        Assert.Equal(new[] { SwitchAction.Echo, SwitchAction.Line, SwitchAction.None }, Feed(s, "p\r\n"));
        Assert.Equal("help", Encoding.ASCII.GetString(s.Line));
        s.ClearLine();
        Assert.Equal(new[] { SwitchAction.None, SwitchAction.Toggle }, Feed(s, "\u0001C"));
        Assert.False(s.InMonitor);
        Assert.Equal(new[] { SwitchAction.ToVm }, Feed(s, "\r"));
    }

    [Fact]
    public void OtherCtrlAKeysGoToTheVm()
    {
        var s = new ConsoleSwitch();
        Assert.Equal(new[] { SwitchAction.None, SwitchAction.ToVm }, Feed(s, "\u0001\u0001"));
        Assert.Equal(new[] { SwitchAction.None, SwitchAction.ToVmAfterCtrlA }, Feed(s, "\u0001x"));
        Assert.Equal(new[] { SwitchAction.None, SwitchAction.Help }, Feed(s, "\u0001h"));
        Assert.False(s.InMonitor);
    }

    [Fact]
    public void TheMonitorLineStaysBoundedAndPrintable()
    {
        var s = new ConsoleSwitch();
        Feed(s, "\u0001c");
        Feed(s, new string('a', MonitorParser.MaxLine + 50) + "\u0002\u001b\t");
        Assert.Equal(MonitorParser.MaxLine, s.Line.Length);
        s.ClearLine();
        Assert.Equal(new[] { SwitchAction.None }, Feed(s, "\u0008"));
        Assert.Equal(new[] { SwitchAction.None, SwitchAction.Echo }, Feed(s, "\u0001z"));
        Assert.Equal("z", Encoding.ASCII.GetString(s.Line));
    }
}
