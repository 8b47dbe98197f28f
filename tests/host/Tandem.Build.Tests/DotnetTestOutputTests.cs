using Tandem.Build;
using Xunit;

namespace Tandem.Build.Tests;

/// <summary>
/// The mutation check's reading of dotnet test's console. A theory case's name carries its
/// arguments with a space ("(kind: Multiboot)"): the check once missed such failures and called
/// the mutant's run an error instead of a kill.
/// </summary>
public class DotnetTestOutputTests
{
    [Fact]
    public void FailingFactsAndTheoryCasesAreRead()
    {
        DotnetTestOutput.Reading r = DotnetTestOutput.Read([
            "  Passed Tandem.Kvm.Tests.Loaders.LoaderFuzzTests.MutatedAndRandomImagesNeverEscapeGuestRam(kind: Flat) [2 s]",
            "  Failed Tandem.Kvm.Tests.Loaders.LoaderFuzzTests.MutatedAndRandomImagesNeverEscapeGuestRam(kind: Multiboot) [838 ms]",
            "   CsCheck.CsCheckException : Set seed: \"0HC1Zbe7YFk1\" or -e CsCheck_Seed=0HC1Zbe7YFk1 to reproduce (1 shrinks, 73,129 skipped, 100,000 total).",
            "  Failed Tandem.Mm.Tests.MutationKillTests.NotifyComesAfterTheClear [102 ms]",
            "  Failed Tandem.Mm.Tests.MutationKillTests.NotifyComesAfterTheClear [102 ms]",
            "Failed!  - Failed:     3, Passed:     2, Skipped:     0, Total:     5, Duration: 9 s - Tandem.Kvm.Tests.dll (net10.0)",
        ]);
        Assert.Equal([
            "Tandem.Kvm.Tests.Loaders.LoaderFuzzTests.MutatedAndRandomImagesNeverEscapeGuestRam(kind: Multiboot)",
            "Tandem.Mm.Tests.MutationKillTests.NotifyComesAfterTheClear",
        ], r.Failed);
        Assert.Equal(5, r.Total);
        Assert.False(r.Hung);
        Assert.False(r.BuildFailed);
    }

    [Fact]
    public void AHangNamesTheTestThatWasRunning()
    {
        DotnetTestOutput.Reading r = DotnetTestOutput.Read([
            "The active test run was aborted. Reason: Test host process crashed",
            "Data collector 'Blame' message: The specified inactivity time of 180 seconds has elapsed. Collecting hang dumps from testhost and its child processes.",
            "Passed!  - Failed:     0, Passed:    35, Skipped:     0, Total:    35, Duration: 1 m 30 s - Tandem.Kvm.Tests.dll (net10.0)",
            "The test running when the crash occurred: ",
            "Tandem.Kvm.Tests.MirrorTests.AnInvalidationBetweenResolveAndInstallMakesTheViewRetry",
        ]);
        Assert.Empty(r.Failed);
        Assert.True(r.Hung);
        Assert.Equal("Tandem.Kvm.Tests.MirrorTests.AnInvalidationBetweenResolveAndInstallMakesTheViewRetry", r.HungTest);
        Assert.Equal(35, r.Total);
    }

    [Fact]
    public void ACrashWithoutAHangIsSaid()
    {
        DotnetTestOutput.Reading r = DotnetTestOutput.Read([
            "The active test run was aborted. Reason: Test host process crashed : Stack overflow.",
            "The test running when the crash occurred: ",
            "Tandem.Mm.Tests.TortureTests.Run",
        ]);
        Assert.True(r.Hung);
        Assert.Equal("a crash of the test host in Tandem.Mm.Tests.TortureTests.Run", r.HungTest);
    }

    [Fact]
    public void ACompileErrorIsABuildFailure()
    {
        DotnetTestOutput.Reading r = DotnetTestOutput.Read(["/x/mm/A.cs(3,5): error CS1002: ; expected [/x/Tandem.Mm.csproj]"]);
        Assert.True(r.BuildFailed);
        Assert.Empty(r.Failed);
    }
}
