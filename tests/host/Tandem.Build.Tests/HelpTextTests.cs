using Xunit;

namespace Tandem.Build.Tests;

/// <summary>
/// The driver's help shows an option whose value may be left out as it is typed: <c>--gdb[=PORT]</c>
/// (--gdb alone takes port 1234), not System.CommandLine's <c>--gdb &lt;PORT&gt;</c>, which reads as required.
/// </summary>
public class HelpTextTests
{
    private static readonly (string, string)[] s_gdb = [("--gdb", "PORT")];

    [Fact]
    public void AnOptionalValueIsShownInBracketsAndTheColumnsStayAligned()
    {
        string help = string.Join('\n',
            "Options:",
            "  --debug-info                      Build with DWARF for gdb",
            "  --gdb <PORT>                      Start QEMU paused with its gdbstub on TCP port PORT (default 1234)",
            "  --gdbx <PORT>                     another option that merely starts the same",
            "  -v, --verbose                     Echo every command the driver runs");
        string shown = HelpText.ShowOptionalValues(help, s_gdb);
        string[] lines = shown.Split('\n');
        Assert.Equal("  --gdb[=PORT]                      Start QEMU paused with its gdbstub on TCP port PORT (default 1234)", lines[2]);
        Assert.Equal(help.Split('\n')[2].IndexOf("Start", StringComparison.Ordinal), lines[2].IndexOf("Start", StringComparison.Ordinal));
        Assert.Equal("  --gdbx <PORT>                     another option that merely starts the same", lines[3]);
        Assert.Equal(help.Replace("  --gdb <PORT> ", "  --gdb[=PORT] "), shown);
    }

    /// <summary>
    /// The real <c>./build.sh run --help</c> (the driver ./build.sh built, as every ./build.sh command
    /// and ./build.sh test do; skipped with the reason when it is not built).
    /// </summary>
    [FactWithBuiltDriver]
    public void RunHelpShowsTheGdbPortAsOptional()
    {
        var (code, stdout, stderr) = Host.Run("dotnet", [FactWithBuiltDriverAttribute.Driver, "run", "--help"], workDir: Host.RepoRoot);
        Assert.True(code == 0, $"run --help exited {code}: {stderr}");
        Assert.Matches(@"(?m)^  --gdb\[=PORT\] +Start QEMU paused", stdout);
        Assert.DoesNotContain("--gdb <PORT>", stdout);
        Assert.Contains("Exit codes:", stdout);
    }
}

/// <summary>A fact that runs the built driver (tools/Build/bin/Release/net10.0/tandem-build.dll, made by any ./build.sh command).</summary>
public sealed class FactWithBuiltDriverAttribute : FactAttribute
{
    public static string Driver => Path.Combine(Host.RepoRoot, "tools", "Build", "bin", "Release", "net10.0", "tandem-build.dll");

    public FactWithBuiltDriverAttribute()
    {
        if (!File.Exists(Driver))
            Skip = "SKIPPED, NOT PASSED: the driver is not built (any ./build.sh command builds tools/Build/bin/Release/net10.0/tandem-build.dll)";
    }
}
