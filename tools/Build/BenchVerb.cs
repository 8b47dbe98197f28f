namespace Tandem.Build;

/// <summary>Runs every BenchmarkDotNet project under tests/bench and prints their figures.</summary>
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
        return failures == 0 ? 0 : 1;
    }
}
