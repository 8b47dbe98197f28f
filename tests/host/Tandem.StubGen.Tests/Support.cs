using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using Xunit;

namespace Tandem.StubGen.Tests;

internal static class Host
{
    public static string? Which(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    /// <summary>Runs a program to its end (at most a minute): its exit code and both outputs.</summary>
    public static (int Code, string Stdout, string Stderr) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} ran past 60 s");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}

/// <summary>
/// A fact that needs a program from the PATH. Without it the test is reported as SKIPPED, with the
/// program named: a skip is not a pass.
/// </summary>
public sealed class FactWithToolAttribute : FactAttribute
{
    public FactWithToolAttribute(string tool, string package)
    {
        if (Host.Which(tool) == null)
            Skip = $"SKIPPED, NOT PASSED: {tool} is not on the PATH (apt-get install {package}): the comparison with it did not run";
    }
}
