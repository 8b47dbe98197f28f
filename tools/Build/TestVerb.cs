using System.Text.RegularExpressions;

namespace Tandem.Build;

/// <summary>
/// The whole suite: host tests (dotnet test), the formatting check, then the in-kernel tests in
/// four configurations. Ends with one line "N passed, N failed, N skipped" summed over all of them.
/// </summary>
internal sealed record TestOptions(bool Host, bool Kernel, IReadOnlyList<string> Configs, string? Filter);

internal static partial class TestVerb
{
    private sealed record Config(string Name, EmulatorKind Emulator, int Cpus, bool Uefi, string ExpectVmx, int Timeout);

    private static readonly Config[] Configs =
    [
        new("qemu-bios-1cpu", EmulatorKind.Qemu, 1, false, "no", 180),
        new("qemu-bios-2cpu", EmulatorKind.Qemu, 2, false, "no", 180),
        new("qemu-uefi", EmulatorKind.Qemu, 2, true, "no", 240),
        new("bochs-tigerlake-1cpu", EmulatorKind.Bochs, 1, false, "yes", 1200),
        new("bochs-tigerlake-2cpu", EmulatorKind.Bochs, 2, false, "yes", 1200),
    ];

    public static IEnumerable<string> ConfigNames => Configs.Select(c => c.Name);

    public static int Run(TestOptions options)
    {
        bool host = options.Host, kernel = options.Kernel;
        int passed = 0, failed = 0, skipped = 0;
        var report = new List<string>();

        if (host)
        {
            foreach (string project in HostTestProjects())
            {
                var (p, f, s, ok) = DotnetTest(project);
                passed += p; failed += f; skipped += s;
                if (!ok && f == 0)
                    failed++;
                report.Add($"host {Path.GetFileNameWithoutExtension(project)}: {p} passed, {f} failed, {s} skipped{(ok ? "" : " (dotnet test failed)")}");
            }
            MutationCheck.AddToTestRun(report, ref passed, ref failed);
            bool formatted = FormatCheck();
            if (formatted) passed++; else failed++;
            report.Add($"format: {(formatted ? "clean" : "FAILED (run: dotnet format whitespace --folder)")}");
        }

        if (kernel)
        {
            Tools.EnsureAll();
            Driver.BuildIfNeeded();
            foreach (Config c in Configs.Where(c => options.Configs.Count == 0 || options.Configs.Contains(c.Name)))
            {
                string cmdline = (options.Filter != null ? $"test={options.Filter}" : "test") + $" expect_vmx={c.ExpectVmx}";
                string dir = RunFolder.Create(c.Name);
                string configIso = Path.Combine(dir, "tandem.iso");
                ImageBuilder.BuildIso(configIso, cmdline, menu: false, Guests.Modules());
                Console.WriteLine($"=== kernel tests: {c.Name}");
                var o = new RunOptions(c.Emulator, cmdline, c.Cpus, 512, c.Uefi, c.Timeout, Echo: true);
                RunResult r = Emulator.Run(configIso, o, dir);
                var m = Driver.SummaryLine().Match(r.Serial);
                if (!m.Success)
                {
                    failed++;
                    report.Add($"kernel {c.Name}: no summary line ({(r.TimedOut ? "timed out" : "status " + (r.KernelStatus?.ToString() ?? "none"))}) counted as 1 failure");
                    continue;
                }
                int p = int.Parse(m.Groups[1].Value), f = int.Parse(m.Groups[2].Value), s = int.Parse(m.Groups[3].Value);
                passed += p; failed += f; skipped += s;
                if (r.KernelStatus != (f == 0 ? 0 : 1))
                {
                    failed++;
                    report.Add($"kernel {c.Name}: exit status {r.KernelStatus?.ToString() ?? "none"} disagrees with its summary");
                }
                report.Add($"kernel {c.Name}: {p} passed, {f} failed, {s} skipped");
                foreach (Match skip in SkipLine().Matches(r.Serial))
                    report.Add($"  {skip.Value}");
            }
        }

        Console.WriteLine("=== summary");
        foreach (string line in report)
            Console.WriteLine(line);
        Console.WriteLine($"{passed} passed, {failed} failed, {skipped} skipped");
        return failed == 0 ? 0 : 1;
    }

    private static IEnumerable<string> HostTestProjects() =>
        Directory.Exists(Path.Combine(Repo.Root, "tests", "host"))
            ? Directory.GetFiles(Path.Combine(Repo.Root, "tests", "host"), "*.Tests.csproj", SearchOption.AllDirectories).OrderBy(p => p, StringComparer.Ordinal)
            : [];

    [GeneratedRegex(@"(Passed|Failed)!\s+-\s+Failed:\s+(\d+),\s+Passed:\s+(\d+),\s+Skipped:\s+(\d+)")]
    private static partial Regex DotnetSummary();

    [GeneratedRegex(@"^SKIP .*$", RegexOptions.Multiline)]
    private static partial Regex SkipLine();

    private static (int Passed, int Failed, int Skipped, bool Ok) DotnetTest(string project)
    {
        Console.WriteLine($"=== host tests: {Path.GetRelativePath(Repo.Root, project)}");
        var lines = new List<string>();
        int code = Shell.Run("dotnet", ["test", project, "-c", "Release", "--nologo"], Repo.Root,
            onLine: l => { lock (lines) lines.Add(l); Console.WriteLine(l); });
        int p = 0, f = 0, s = 0;
        foreach (string l in lines)
        {
            var m = DotnetSummary().Match(l);
            if (m.Success)
            {
                f += int.Parse(m.Groups[2].Value);
                p += int.Parse(m.Groups[3].Value);
                s += int.Parse(m.Groups[4].Value);
            }
        }
        return (p, f, s, code == 0 && p + f + s > 0);
    }

    private static bool FormatCheck()
    {
        Console.WriteLine("=== format check: dotnet format whitespace --folder --verify-no-changes");
        int code = Shell.Run("dotnet", ["format", "whitespace", Repo.Root, "--folder", "--verify-no-changes",
            "--exclude", "out", "--exclude", "**/obj", "--exclude", "**/bin"], Repo.Root,
            onLine: Console.WriteLine);
        return code == 0;
    }
}
