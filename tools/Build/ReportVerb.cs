using Tandem.Build.Report;

namespace Tandem.Build;

/// <summary>
/// <c>./build.sh report [RUN]</c>: a run folder's stats lines (its serial.log) and the benchmark
/// goal tables under out/bench/*/results drawn into out/report/index.html (tools/Build/Report).
/// RUN is a folder name under out/runs or a path; by default the newest run whose serial log has
/// stats lines. Exit code 0 with the page written, 1 when the run has no stats lines (or no run
/// has any), 64 when RUN names no run folder.
/// </summary>
internal static class ReportVerb
{
    public static string OutDir => Path.Combine(Repo.Out, "report");

    public static int Run(string? run)
    {
        string? dir;
        string serial;
        if (run != null)
        {
            dir = Directory.Exists(run) ? Path.GetFullPath(run) : Path.Combine(RunFolder.Root, run);
            if (!Directory.Exists(dir))
                throw new BuildException($"report: '{run}' is neither a folder nor a run under {Path.GetRelativePath(Repo.Root, RunFolder.Root)} " +
                    "(the newest runs: " + string.Join(", ", Runs().Take(3).Select(Path.GetFileName)) + ")", ExitCodes.Usage);
            string log = Path.Combine(dir, "serial.log");
            serial = File.Exists(log) ? File.ReadAllText(log) : "";
            if (!StatsLog.Parse(serial).Any)
            {
                Console.Error.WriteLine($"report: {Path.GetFileName(dir)}'s serial.log has no stats lines: boot with monitor=\"stats on 1\" (a line per VM and the mm core's) or mmstats=1 (docs/monitor.md)");
                return ExitCodes.Failed;
            }
        }
        else
        {
            dir = null;
            serial = "";
            foreach (string candidate in Runs())
            {
                string log = Path.Combine(candidate, "serial.log");
                if (!File.Exists(log))
                    continue;
                string text = File.ReadAllText(log);
                if (StatsLog.Parse(text).Any)
                {
                    dir = candidate;
                    serial = text;
                    break;
                }
            }
            if (dir == null)
            {
                Console.Error.WriteLine("report: no run under out/runs has stats lines; make one, e.g. " +
                    "./build.sh run --emulator bochs --cmdline 'vm=swapfill32,mem=32M mem.limit=14M monitor=\"stats on 1\"'");
                return ExitCodes.Failed;
            }
        }
        string? cmdline = ReadIfThere(Path.Combine(dir, "cmdline.txt"));
        string? emulator = ReadIfThere(Path.Combine(dir, "command.txt"));
        string benchRoot = Path.Combine(Repo.Out, "bench");
        List<string> bench = Directory.Exists(benchRoot)
            ? [.. Directory.GetDirectories(benchRoot).Select(d => Path.Combine(d, "results")).Where(Directory.Exists)
                .SelectMany(d => Directory.GetFiles(d, "*.json")).Order(StringComparer.Ordinal)]
            : [];
        ReportResult result = ReportWriter.Write(OutDir, Path.GetFileName(dir), serial, cmdline, emulator, bench, DateTime.Now);
        Console.WriteLine($"report: run {Path.GetFileName(dir)}");
        foreach (Chart c in result.Charts)
        {
            string what = c.Png != null ? $"{c.Png} ({c.Points} points)" : "no chart";
            Console.WriteLine($"  {c.Title}: {what}");
            foreach (string a in c.Absent)
                Console.WriteLine($"    absent: {a}");
        }
        Console.WriteLine($"report: {result.Goals.Count} benchmark goals, {result.HistoryEntries} entries in {Path.GetRelativePath(Repo.Root, Path.Combine(OutDir, "history.json"))}");
        Console.WriteLine($"report: {Path.GetRelativePath(Repo.Root, result.Index)}");
        return ExitCodes.Success;
    }

    private static string? ReadIfThere(string path) => File.Exists(path) ? File.ReadAllText(path) : null;

    /// <summary>The run folders, newest first (their names begin with the time they were made).</summary>
    private static IEnumerable<string> Runs() =>
        Directory.Exists(RunFolder.Root)
            ? Directory.GetDirectories(RunFolder.Root).OrderByDescending(d => Path.GetFileName(d), StringComparer.Ordinal)
            : [];
}
