using Tandem.Kernel.Parsers;
using Xunit;

namespace Tandem.Kernel.Tests;

/// <summary><c>fuzz=SEED:COUNT[:EXITS]</c> and <c>vm=fuzz,seed=N</c> on the kernel command line (docs/fuzzing.md).</summary>
public sealed class FuzzOptionTests
{
    private static (CommandLineOptions Options, ListLog Log) Parse(string line) => ListLog.Parse(line);

    [Theory]
    [InlineData("fuzz=1:500", 1UL, 500UL, 0UL)]
    [InlineData("fuzz=77:100000000:1000000 expect_vmx=yes", 77UL, 100_000_000UL, 1_000_000UL)]
    [InlineData("fuzz=0:1", 0UL, 1UL, 0UL)]
    public void ACampaignTakesSeedCountAndGoal(string line, ulong seed, ulong count, ulong exits)
    {
        var (o, log) = Parse(line);
        Assert.Empty(log.Lines);
        Assert.Equal((seed, count, exits), (o.FuzzSeed, o.FuzzCount, o.FuzzExits));
    }

    [Theory]
    [InlineData("fuzz=1")]
    [InlineData("fuzz=1:0")]
    [InlineData("fuzz=:5")]
    [InlineData("fuzz=x:5")]
    [InlineData("fuzz=1:5:")]
    [InlineData("fuzz=1:5:many")]
    [InlineData("fuzz=1:200000000")]
    public void ABadCampaignIsRefusedWithOneLineAndNothingRuns(string line)
    {
        var (o, log) = Parse(line + " test");
        Assert.Equal(0UL, o.FuzzCount);
        Assert.Single(log.Lines);
        Assert.Contains("fuzz= takes SEED:COUNT", log.Lines[0]);
        Assert.True(o.RunTests);
    }

    [Fact]
    public void AFuzzVmTakesItsSeed()
    {
        var (o, log) = Parse("vm=fuzz,seed=12345 vm=hello32");
        Assert.Empty(log.Lines);
        Assert.Equal(2, o.VmCount);
        Assert.Equal(12345UL, o.Vm(0).Seed);
        Assert.Equal(CommandLineOptions.Unset, o.Vm(1).Seed);
    }

    [Fact]
    public void ABadSeedDropsThatVm()
    {
        var (o, log) = Parse("vm=fuzz,seed=abc");
        Assert.Equal(0, o.VmCount);
        Assert.Single(log.Lines);
        Assert.Contains("vm= seed must be a number", log.Lines[0]);
    }
}
