using Tandem.Kernel.Parsers;
using Xunit;

namespace Tandem.Kernel.Tests;

/// <summary><c>thp=on|off</c> on the kernel command line: guest RAM backed by tracked 2 MiB pages.</summary>
public sealed class ThpOptionTests
{
    private static (CommandLineOptions Options, ListLog Log) Parse(string line) => ListLog.Parse(line);

    [Theory]
    [InlineData("vm=linux", false)]
    [InlineData("thp=on vm=linux", true)]
    [InlineData("thp=off", false)]
    [InlineData("thp=on thp=off", false)]
    public void OnAndOffAreTakenAndOffIsTheDefault(string line, bool thp)
    {
        var (o, log) = Parse(line);
        Assert.Empty(log.Lines);
        Assert.Equal(thp, o.Thp);
    }

    [Theory]
    [InlineData("thp=yes", "yes")]
    [InlineData("thp=", "")]
    public void ABadValueIsRefusedWithOneLineAndTheEarlierValueKept(string line, string value)
    {
        var (o, log) = Parse("thp=on " + line);
        Assert.True(o.Thp);
        Assert.Equal(new[] { "cmdline: thp= takes on or off: '" + value + "' ignored" }, log.Lines);
    }
}
