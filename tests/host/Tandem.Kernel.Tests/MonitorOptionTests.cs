using System.Text;
using Tandem.Kernel.Parsers;
using Xunit;

namespace Tandem.Kernel.Tests;

/// <summary><c>monitor="cmd;cmd"</c> on the kernel command line (docs/monitor.md).</summary>
public sealed class MonitorOptionTests
{
    private static (CommandLineOptions Options, ListLog Log, byte[] Text) Parse(string line)
    {
        byte[] text = Encoding.Latin1.GetBytes(line);
        CommandLineOptions o = CommandLineOptions.Defaults();
        var log = new ListLog();
        CommandLineParser.Parse(text, ref o, ref log);
        return (o, log, text);
    }

    private static string Script(in CommandLineOptions o, byte[] text) =>
        o.MonitorOffset < 0 ? "<none>" : Encoding.Latin1.GetString(text, o.MonitorOffset, o.MonitorLength);

    [Fact]
    public void NotGivenMeansNoScript()
    {
        var (o, log, _) = Parse("test vm=linux");
        Assert.Equal(-1, o.MonitorOffset);
        Assert.Empty(log.Lines);
    }

    [Theory]
    // As typed where nothing quotes (one word, no spaces).
    [InlineData("monitor=help", "help")]
    // As the user writes it: the double quotes group the spaces.
    [InlineData("vm=spin32 monitor=\"info vms;pause 1;dump 1 0x1000 16\" test", "info vms;pause 1;dump 1 0x1000 16")]
    // As GRUB hands it over: the word in quotes, its own quotes escaped (they arrive literal and go).
    [InlineData("\"monitor=\\\"info vms;stop 2\\\"\"", "info vms;stop 2")]
    // A quoted part inside the value.
    [InlineData("monitor=info\" vms\";help", "info vms;help")]
    public void TheScriptIsTheUnquotedValue(string line, string script)
    {
        var (o, log, text) = Parse(line);
        Assert.Empty(log.Lines);
        Assert.Equal(script, Script(o, text));
    }

    [Fact]
    public void AnEmptyScriptIsRefusedWithALine()
    {
        var (o, log, _) = Parse("monitor= test");
        Assert.Equal(-1, o.MonitorOffset);
        Assert.Single(log.Lines);
        Assert.Contains("monitor= takes monitor commands", log.Lines[0]);
        Assert.True(o.RunTests);
    }

    [Fact]
    public void ASecondScriptIsRefusedAndTheFirstKept()
    {
        var (o, log, text) = Parse("monitor=\"info vms\" monitor=help");
        Assert.Equal("info vms", Script(o, text));
        Assert.Single(log.Lines);
        Assert.Equal("cmdline: monitor= is given twice; the first is kept, this one: 'help' is ignored", log.Lines[0]);
    }

    [Fact]
    public void MonitorWithoutAValueIsAnUnknownWord()
    {
        var (o, log, _) = Parse("monitor");
        Assert.Equal(-1, o.MonitorOffset);
        Assert.Single(log.Lines);
        Assert.Contains("unknown option 'monitor'", log.Lines[0]);
    }
}
