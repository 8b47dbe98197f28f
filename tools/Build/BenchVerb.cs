namespace Tandem.Build;

/// <summary>
/// Runs every BenchmarkDotNet project under tests/bench and prints their figures, then the
/// in-kernel benchmarks under Bochs (whose TSC counts instructions): the kernel prints "bench:" lines.
/// </summary>
internal static class BenchVerb
{
    public static int Run(List<string> args)
    {
        if (args.Count > 0)
            throw new BuildException($"'bench' takes no options (got '{args[0]}')");
        string dir = Path.Combine(Repo.Root, "tests", "bench");
        var projects = Directory.Exists(dir)
            ? Directory.GetFiles(dir, "*.csproj", SearchOption.AllDirectories).OrderBy(p => p, StringComparer.Ordinal).ToList()
            : [];
        if (projects.Count == 0)
            throw new BuildException("no benchmark projects under tests/bench");
        int failures = 0;
        foreach (string project in projects)
        {
            Console.WriteLine($"=== bench: {Path.GetRelativePath(Repo.Root, project)}");
            int code = Shell.Run("dotnet", ["run", "-c", "Release", "--project", project], Repo.Root, onLine: Console.WriteLine);
            if (code != 0)
            {
                Console.WriteLine($"bench: {Path.GetFileNameWithoutExtension(project)} failed (exit code {code})");
                failures++;
            }
        }
        failures += KernelBench();
        return failures == 0 ? 0 : 1;
    }

    private static int KernelBench()
    {
        Console.WriteLine("=== bench: in-kernel (Bochs tigerlake, instruction counts)");
        Tools.EnsureAll();
        Driver.BuildIfNeeded();
        string iso = Path.Combine(Repo.Out, "bench", "tandem-bench.iso");
        Directory.CreateDirectory(Path.GetDirectoryName(iso)!);
        ImageBuilder.BuildIso(iso, "bench", menu: false, Guests.Modules());
        var o = new RunOptions(EmulatorKind.Bochs, "bench", 1, 512, false, 900, Echo: false);
        RunResult r = Emulator.Run(iso, o, Path.Combine(Repo.Out, "bench"));
        foreach (string line in r.Serial.Split('\n').Where(l => l.StartsWith("bench:", StringComparison.Ordinal)))
            Console.WriteLine(line);
        if (r.KernelStatus != 0)
        {
            Console.WriteLine($"bench: the in-kernel benchmark run failed (status {r.KernelStatus?.ToString() ?? "none"})");
            return 1;
        }
        return 0;
    }
}
