using System.Globalization;
using System.Text.RegularExpressions;

namespace Tandem.Build;

/// <summary>
/// Runs every BenchmarkDotNet project under tests/bench (each prints its ratios against their goals,
/// MISSED for a missed one, and exits non-zero then), then, unless --skip-kernel, the two parts under
/// Bochs: the in-kernel benchmarks with 2 CPUs (whose TSC counts instructions: the kernel prints
/// "bench:" lines, and a line whose figure is above its "goal NAME &lt;= LIMIT" or below its
/// "goal NAME &gt;= LIMIT" is MISSED), and the
/// Linux boot to its shell on plain Bochs and on Tandem (<see cref="LinuxBench"/>). --filter PATTERN
/// runs the parts whose name contains it: the projects' names, "in-kernel" and "linux".
/// Exits 1 if any part failed.
/// </summary>
internal static class BenchVerb
{
    /// <summary>The parts besides the projects, by the name --filter matches.</summary>
    public const string KernelPart = "in-kernel", LinuxPart = "linux";

    public static int Run(bool skipKernel, string? filter)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        string dir = Path.Combine(Repo.Root, "tests", "bench");
        var projects = Directory.Exists(dir)
            ? Directory.GetFiles(dir, "*.csproj", SearchOption.AllDirectories).OrderBy(p => p, StringComparer.Ordinal).ToList()
            : [];
        if (projects.Count == 0)
            throw new BuildException("no benchmark projects under tests/bench");
        bool Matches(string name) => filter == null || name.Contains(filter, StringComparison.OrdinalIgnoreCase);
        bool kernelPart = Matches(KernelPart), linuxPart = Matches(LinuxPart);
        if (filter != null)
        {
            var all = projects.Select(Path.GetFileNameWithoutExtension).Append(KernelPart).Append(LinuxPart).ToList();
            projects = projects.Where(p => Matches(Path.GetFileNameWithoutExtension(p))).ToList();
            if (projects.Count == 0 && !kernelPart && !linuxPart)
                throw new BuildException($"--filter {filter}: no benchmark part matches (there are {string.Join(", ", all)})", ExitCodes.Usage);
            if (skipKernel && projects.Count == 0)
                throw new BuildException($"--filter {filter} names only the Bochs parts ({string.Join(", ", new[] { KernelPart, LinuxPart }.Where(Matches))}), which --skip-kernel skips", ExitCodes.Usage);
        }
        // One benchmark process at a time; each writes BenchmarkDotNet's JSON reports and its ratio
        // table (JSON) under out/bench/NAME/results, replacing the previous run's.
        var failures = new List<string>();
        var jsonDirs = new List<string>();
        foreach (string project in projects)
        {
            string name = Path.GetFileNameWithoutExtension(project);
            string artifacts = Path.Combine(Repo.Out, "bench", name);
            string results = Path.Combine(artifacts, "results");
            if (Directory.Exists(results))
                Directory.Delete(results, recursive: true);
            Console.WriteLine($"=== bench: {Path.GetRelativePath(Repo.Root, project)}");
            int code = Shell.Run("dotnet", ["run", "-c", "Release", "--project", project, "--", "--artifacts", artifacts], Repo.Root, onLine: Console.WriteLine);
            jsonDirs.Add(results);
            if (code != 0)
            {
                Console.WriteLine($"bench: {name} failed (exit code {code}: a goal MISSED or the run broke)");
                failures.Add(name);
            }
        }
        // The Bochs parts: the in-kernel figures (instructions), then the Linux boot (seconds).
        var figures = new List<string>();
        if (skipKernel)
            Console.WriteLine("=== bench: Bochs parts (in-kernel, linux) skipped (--skip-kernel)");
        else
        {
            if (!kernelPart)
                Console.WriteLine($"=== bench: {KernelPart} part skipped (--filter {filter})");
            else if (KernelBench(figures) != 0)
                failures.Add(KernelPart);
            if (!linuxPart)
                Console.WriteLine($"=== bench: {LinuxPart} part skipped (--filter {filter})");
            else
            {
                var (boots, table, _) = LinuxBench.Run();
                jsonDirs.Add(LinuxBench.ResultsDir);
                figures.Add("linux: boot to " + LinuxBench.Marker + " (plain Bochs against Tandem), Bochs tigerlake:");
                figures.AddRange(table);
                if (boots.Count == 0 || LinuxBenchReport.Failed(boots) || boots.Any(b => b.Ready.Wall == null))
                    failures.Add(LinuxPart);
            }
        }
        Console.WriteLine();
        if (figures.Count > 0)
        {
            // The Bochs parts' figures together: the host's share of an exit beside the whole boot.
            Console.WriteLine("=== bench: Bochs figures");
            foreach (string line in figures)
                Console.WriteLine(line);
            Console.WriteLine();
        }
        Console.WriteLine("=== bench: results (JSON)");
        foreach (string results in jsonDirs.Where(Directory.Exists))
        {
            foreach (string f in Directory.GetFiles(results, "*.json").OrderBy(f => f, StringComparer.Ordinal))
                Console.WriteLine($"  {f}");
        }
        Console.WriteLine($"bench: {(failures.Count == 0 ? "all goals met" : "FAILED: " + string.Join(", ", failures))} ({clock.Elapsed.TotalMinutes:F1} min)");
        return failures.Count == 0 ? 0 : 1;
    }

    /// <summary>The in-kernel figures; adds the CPUID exit round trip's line to <paramref name="figures"/>.</summary>
    private static int KernelBench(List<string> figures)
    {
        Console.WriteLine("=== bench: in-kernel (Bochs tigerlake, instruction counts)");
        Tools.EnsureAll();
        Driver.BuildIfNeeded();
        // 2 CPUs: the IPI round trip needs a vCPU on each (the CPUID figure runs on CPU 0 alone and
        // reads the same with 1 or 2).
        string dir = RunFolder.Create("bench-bochs-2cpu");
        string iso = Path.Combine(dir, "tandem.iso");
        ImageBuilder.BuildIso(iso, "bench", menu: false, Guests.Modules("bench"));
        var o = new RunOptions(EmulatorKind.Bochs, "bench", 2, 512, false, 900, Echo: false);
        RunResult r = Emulator.Run(iso, o, dir);
        Console.WriteLine($"bench: serial log {Path.GetRelativePath(Repo.Root, r.SerialLog)}");
        int missed = 0;
        foreach (string line in r.Serial.Split('\n').Where(l => l.StartsWith("bench:", StringComparison.Ordinal)))
        {
            // The kernel states its goals as "goal NAME <= LIMIT" (or ">= LIMIT") beside "NAME=VALUE"
            // (whole numbers or decimals such as a ratio, "ratio=1.04 (... goal ratio <= 1.20)"); a
            // line may hold several.
            bool judged = false, miss = false;
            foreach (Match goal in Regex.Matches(line, @"goal (\w+) (<=|>=) (\d+(?:\.\d+)?)"))
            {
                Match value = Regex.Match(line, $@"\b{goal.Groups[1].Value}=(\d+(?:\.\d+)?)");
                if (!value.Success)
                    continue;
                judged = true;
                decimal v = decimal.Parse(value.Groups[1].Value, CultureInfo.InvariantCulture);
                decimal limit = decimal.Parse(goal.Groups[3].Value, CultureInfo.InvariantCulture);
                miss |= goal.Groups[2].Value == "<=" ? v > limit : v < limit;
            }
            string shown = line.TrimEnd() + (judged ? (miss ? " MISSED" : " ok") : "");
            Console.WriteLine(shown);
            if (shown.StartsWith("bench: cpuid_exit_round_trip", StringComparison.Ordinal) || (judged && shown.StartsWith("bench: hotcold", StringComparison.Ordinal)))
                figures.Add(shown);
            if (miss)
                missed++;
        }
        if (missed > 0)
            return 1;
        if (r.KernelStatus != 0)
        {
            Console.WriteLine($"bench: the in-kernel benchmark run failed (status {r.KernelStatus?.ToString() ?? "none"})");
            return 1;
        }
        return 0;
    }
}
