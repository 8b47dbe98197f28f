using Tandem.Kernel.Console;
using Tandem.Kernel.Parsers;
using Xunit;

namespace Tandem.Kernel.Tests;

/// <summary><c>loglevel=error|warn|info|debug</c> on the kernel command line.</summary>
public sealed class LogLevelOptionTests
{
    private static (CommandLineOptions Options, ListLog Log) Parse(string line) => ListLog.Parse(line);

    [Fact]
    public void NotGivenMeansInfo()
    {
        var (o, log) = Parse("test vm=linux");
        Assert.Equal(LogLevel.Info, o.LogLevel);
        Assert.Empty(log.Lines);
    }

    [Theory]
    [InlineData("loglevel=error", LogLevel.Error)]
    [InlineData("loglevel=warn", LogLevel.Warn)]
    [InlineData("loglevel=info", LogLevel.Info)]
    [InlineData("test loglevel=debug vm=x", LogLevel.Debug)]
    [InlineData("loglevel=debug loglevel=warn", LogLevel.Warn)]
    public void EachLevelIsTaken(string line, LogLevel level)
    {
        var (o, log) = Parse(line);
        Assert.Empty(log.Lines);
        Assert.Equal(level, o.LogLevel);
    }

    [Theory]
    [InlineData("loglevel=verbose", "verbose")]
    [InlineData("loglevel=DEBUG", "DEBUG")]
    [InlineData("loglevel=3", "3")]
    [InlineData("loglevel=", "")]
    public void ABadValueIsRefusedWithOneLineAndTheDefaultKept(string line, string value)
    {
        var (o, log) = Parse(line + " test");
        Assert.Equal(LogLevel.Info, o.LogLevel);
        Assert.Equal(new[] { "cmdline: loglevel= takes error, warn, info or debug: '" + value + "' ignored" }, log.Lines);
        Assert.True(o.RunTests);
    }

    [Fact]
    public void ABadValueKeepsAnEarlierGoodOne()
    {
        var (o, log) = Parse("loglevel=debug loglevel=loud");
        Assert.Equal(LogLevel.Debug, o.LogLevel);
        Assert.Single(log.Lines);
    }

    [Fact]
    public void LoglevelWithoutAValueIsAnUnknownWord()
    {
        var (o, log) = Parse("loglevel");
        Assert.Equal(LogLevel.Info, o.LogLevel);
        Assert.Single(log.Lines);
        Assert.Contains("unknown option 'loglevel'", log.Lines[0]);
    }
}
