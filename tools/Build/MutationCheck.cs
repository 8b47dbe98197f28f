using System.Diagnostics;
using System.Text;

namespace Tandem.Build;

/// <summary>
/// The mutation check (issue 7): every single-point mutation of mm/ and kvm/Ept listed in
/// tests/mutations/mutations.txt is applied, one at a time, to a scratch copy of mm/, kvm/, kernel/Parsers/ and
/// tests/host/ under out/mutate, and the host tests it names are run against it. A mutation is
/// killed when a test fails (or hangs: the hang timeout counts as a kill and says so); a mutation
/// that every test survives, or whose original text is not found exactly once, fails the check.
/// Before the mutations, the same tests run once on the unmutated copy: a test that fails there
/// would kill every mutation falsely, so the check stops instead.
/// </summary>
internal static partial class MutationCheck
{
    public const string ListPath = "tests/mutations/mutations.txt";
    private static readonly string[] Copied = ["mm", "kvm", "kernel/Parsers", "tests/host"];
    // A test is taken as hung after this long without finishing: above the interleaving explorer's
    // 90-s budget, which a test can use in full on a loaded machine (the check runs beside Bochs).
    private const int HangTimeoutSeconds = 180;
    private const int ProcessTimeoutSeconds = 900;

    public sealed record Mutation(string Name, string Invariant, string File, string Original, string Replacement,
        List<string> Projects, string? Filter, int Line);

    private enum Verdict { Killed, Survived, Error }

    private sealed record Outcome(Mutation M, Verdict Verdict, string Detail, TimeSpan Time);

    /// <summary>What each progress line starts with ("[mutations] " when it runs beside the emulators).</summary>
    private static string _prefix = "";

    private static void Say(string line) => Console.WriteLine(_prefix + line);

    private static string Scratch => Path.Combine(Repo.Out, "mutate");

    /// <summary>The verb: ./build.sh mutate [--only NAME]. Exit code 0 only when every mutation was killed.</summary>
    public static int Verb(string? only)
    {
        var (killed, bad, _) = Run(only, "");
        return bad.Count == 0 && killed > 0 ? ExitCodes.Success : ExitCodes.Failed;
    }

    /// <summary>
    /// The host-test part of ./build.sh test: runs every mutation, counts each killed one as passed
    /// and each survivor or broken entry as failed, and lists them in the closing summary.
    /// </summary>
    public static void AddToTestRun(List<string> report, ref int passed, ref int failed, JUnitSuite suite, string prefix = "")
    {
        var (killed, bad, outcomes) = Run(null, prefix);
        passed += killed;
        failed += bad.Count;
        report.Add($"mutations: {killed} killed, {bad.Count} not killed ({ListPath}; ./build.sh mutate --only NAME to rerun one)");
        foreach (string line in bad)
            report.Add("  " + line);
        foreach (Outcome o in outcomes)
        {
            string? failure = o.Verdict switch
            {
                Verdict.Killed => null,
                Verdict.Survived => $"SURVIVED: every test of {string.Join(", ", o.M.Projects)} passed (invariant {o.M.Invariant})",
                _ => $"ERROR: {o.Detail} (invariant {o.M.Invariant})",
            };
            suite.Cases.Add(new JUnitCase(o.M.Name, o.Time.TotalSeconds, failure, Skipped: null,
                Output: o.Verdict == Verdict.Killed ? "killed by " + o.Detail : null));
        }
    }

    /// <summary>Runs the check; returns the number killed and one line per mutation that was not.</summary>
    private static (int Killed, List<string> Bad, List<Outcome> Outcomes) Run(string? only, string prefix)
    {
        _prefix = prefix;
        Stopwatch total = Stopwatch.StartNew();
        Say($"=== mutation check: {ListPath}");
        List<Mutation> all = Parse(Path.Combine(Repo.Root, ListPath));
        List<Mutation> selected = only == null ? all : all.Where(m => m.Name == only).ToList();
        if (selected.Count == 0)
            throw new BuildException(only == null ? $"{ListPath} lists no mutations" : $"no mutation named '{only}' in {ListPath}", only == null ? ExitCodes.StepFailed : ExitCodes.Usage);

        var outcomes = new List<Outcome>();
        var runnable = new List<Mutation>();
        foreach (Mutation m in selected)
        {
            string? problem = CheckOriginal(m);
            if (problem == null)
                runnable.Add(m);
            else
                outcomes.Add(Report(new Outcome(m, Verdict.Error, problem, TimeSpan.Zero)));
        }

        // The mm/ mutations first, then kvm/: each switch between the two libraries costs a compile
        // of both (the mutant's, then the restored original's).
        runnable = runnable.OrderBy(m => m.File.StartsWith("mm/", StringComparison.Ordinal) ? 0 : 1).ToList();
        Sync();
        string? baseline = Baseline(runnable);
        foreach (Mutation m in runnable)
        {
            if (baseline != null)
            {
                outcomes.Add(Report(new Outcome(m, Verdict.Error, "not run: " + baseline, TimeSpan.Zero)));
                continue;
            }
            outcomes.Add(Report(RunOne(m)));
        }

        int killed = outcomes.Count(o => o.Verdict == Verdict.Killed);
        var bad = outcomes.Where(o => o.Verdict != Verdict.Killed)
            .OrderBy(o => selected.IndexOf(o.M))
            .Select(o => $"{(o.Verdict == Verdict.Survived ? "SURVIVED" : "ERROR")} {o.M.Name} (invariant {o.M.Invariant}){(o.Verdict == Verdict.Error ? ": " + o.Detail : "")}")
            .ToList();
        Say($"mutations: {killed} killed, {outcomes.Count(o => o.Verdict == Verdict.Survived)} survived, " +
            $"{outcomes.Count(o => o.Verdict == Verdict.Error)} errors, in {total.Elapsed.TotalSeconds:F0} s");
        return (killed, bad, outcomes);
    }

    private static Outcome Report(Outcome o)
    {
        string what = $"{o.M.Name} (invariant {o.M.Invariant})";
        string time = o.Time > TimeSpan.Zero ? $" [{o.Time.TotalSeconds:F1} s]" : "";
        string line = o.Verdict switch
        {
            Verdict.Killed => $"killed    {what} by {o.Detail}{time}",
            Verdict.Survived => $"SURVIVED  {what}: every test of {string.Join(", ", o.M.Projects)}{(o.M.Filter != null ? " matching the filter" : "")} passed{time}",
            _ => $"ERROR     {what}: {o.Detail}",
        };
        Say(line);
        return o;
    }

    /// <summary>The original text must occur exactly once in the repository's file, or the list has rotted.</summary>
    private static string? CheckOriginal(Mutation m)
    {
        string path = Path.Combine(Repo.Root, m.File);
        if (!File.Exists(path))
            return $"{m.File} does not exist ({ListPath} line {m.Line})";
        int count = Occurrences(File.ReadAllText(path), m.Original);
        return count == 1 ? null : $"original text found {count} times in {m.File}, not once ({ListPath} line {m.Line})";
    }

    private static int Occurrences(string text, string part)
    {
        int count = 0;
        for (int at = text.IndexOf(part, StringComparison.Ordinal); at >= 0; at = text.IndexOf(part, at + 1, StringComparison.Ordinal))
            count++;
        return count;
    }

    /// <summary>
    /// Makes out/mutate hold exactly the repository's mm/, kvm/, kernel/Parsers/ and tests/host/ (without bin/obj),
    /// rewriting only files whose content differs, so the builds there stay incremental.
    /// </summary>
    private static void Sync()
    {
        foreach (string dir in Copied)
        {
            string from = Path.Combine(Repo.Root, dir);
            string to = Path.Combine(Scratch, dir);
            var wanted = new HashSet<string>(StringComparer.Ordinal);
            foreach (string file in SourceFiles(from))
            {
                string rel = Path.GetRelativePath(from, file);
                wanted.Add(rel);
                string target = Path.Combine(to, rel);
                byte[] content = File.ReadAllBytes(file);
                if (File.Exists(target) && File.ReadAllBytes(target).AsSpan().SequenceEqual(content))
                    continue;
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.WriteAllBytes(target, content);
            }
            if (Directory.Exists(to))
            {
                foreach (string file in SourceFiles(to))
                {
                    if (!wanted.Contains(Path.GetRelativePath(to, file)))
                        File.Delete(file);
                }
            }
        }
    }

    private static IEnumerable<string> SourceFiles(string root) =>
        Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f =>
            {
                string rel = Path.GetRelativePath(root, f).Replace('\\', '/');
                return !rel.Split('/').Any(part => part is "bin" or "obj" or "TestResults");
            });

    private static string ProjectPath(string project) =>
        Path.Combine(Scratch, "tests", "host", project, project + ".csproj");

    /// <summary>The filter of one project over a set of mutations: null (all tests) if any of them runs all.</summary>
    private static string? UnionFilter(IEnumerable<Mutation> ms)
    {
        var filters = new List<string>();
        foreach (Mutation m in ms)
        {
            if (m.Filter == null)
                return null;
            filters.Add(m.Filter);
        }
        return string.Join("|", filters.Distinct());
    }

    /// <summary>
    /// Runs, on the unmutated copy, every test that some selected mutation will run; null when they
    /// all pass, else why the mutations cannot be judged.
    /// </summary>
    private static string? Baseline(List<Mutation> ms)
    {
        foreach (var group in ms.SelectMany(m => m.Projects.Select(p => (p, m))).GroupBy(x => x.p))
        {
            string? filter = UnionFilter(group.Select(x => x.m));
            Say($"--- baseline: {group.Key} on the unmutated copy");
            TestRun r = DotnetTest(group.Key, filter, restore: true);
            if (r.Failed.Count > 0 || r.Hung || !r.Ok || r.Total == 0)
            {
                foreach (string l in r.Output.TakeLast(40))
                    Say("    " + l);
                return $"the baseline run of {group.Key} did not pass on the unmutated sources " +
                    (r.Failed.Count > 0 ? $"(failing: {string.Join(", ", r.Failed)})" : r.Hung ? "(hang)" : $"(exit code {r.ExitCode}, {r.Total} tests)");
            }
        }
        return null;
    }

    private static Outcome RunOne(Mutation m)
    {
        Stopwatch clock = Stopwatch.StartNew();
        string path = Path.Combine(Scratch, m.File);
        string original = File.ReadAllText(Path.Combine(Repo.Root, m.File));
        string mutated = original.Replace(m.Original, m.Replacement, StringComparison.Ordinal);
        try
        {
            File.WriteAllText(path, mutated);
            foreach (string project in m.Projects)
            {
                TestRun r = DotnetTest(project, m.Filter, restore: false);
                if (r.Failed.Count > 0)
                    return new Outcome(m, Verdict.Killed, r.Failed.Count == 1 ? r.Failed[0] : $"{r.Failed[0]} (and {r.Failed.Count - 1} more)", clock.Elapsed);
                if (r.Hung)
                    return new Outcome(m, Verdict.Killed, r.HungTest != null && r.HungTest.StartsWith("a crash", StringComparison.Ordinal)
                        ? r.HungTest : $"a hang (no progress for {HangTimeoutSeconds} s, or the run's {ProcessTimeoutSeconds} s limit)" + (r.HungTest != null ? " in " + r.HungTest : ""), clock.Elapsed);
                if (r.BuildFailed)
                {
                    foreach (string l in r.Output.Where(l => l.Contains("error", StringComparison.Ordinal)).Take(5))
                        Say("    " + l);
                    return new Outcome(m, Verdict.Error, "the mutant does not compile", clock.Elapsed);
                }
                if (!r.Ok || r.Total == 0)
                {
                    foreach (string l in r.Output.TakeLast(20))
                        Say("    " + l);
                    return new Outcome(m, Verdict.Error, $"dotnet test of {project} ended with exit code {r.ExitCode} and {r.Total} tests, no failing test", clock.Elapsed);
                }
            }
            return new Outcome(m, Verdict.Survived, "", clock.Elapsed);
        }
        finally
        {
            // Back to the repository's text (a fresh timestamp: the next build recompiles it).
            File.WriteAllText(path, original);
        }
    }

    private sealed record TestRun(bool Ok, int ExitCode, int Total, List<string> Failed, bool Hung, string? HungTest,
        bool BuildFailed, List<string> Output);

    private static TestRun DotnetTest(string project, string? filter, bool restore)
    {
        var args = new List<string> { "test", ProjectPath(project), "-c", "Release", "--nologo",
            "--blame-hang-timeout", $"{HangTimeoutSeconds}s", "--blame-hang-dump-type", "none" };
        if (!restore)
            args.Add("--no-restore");
        if (filter != null)
        {
            args.Add("--filter");
            args.Add(filter);
        }
        // One failing test kills the mutant: xunit stops there instead of running the rest of the
        // filter (the check's time is mostly killed mutants' remaining tests).
        args.Add("--");
        args.Add("xUnit.StopOnFail=true");
        var (code, timedOut, output) = RunProcess("dotnet", args, Scratch, TimeSpan.FromSeconds(ProcessTimeoutSeconds));
        DotnetTestOutput.Reading r = DotnetTestOutput.Read(output);
        bool hung = r.Hung || timedOut;
        return new TestRun(code == 0 && !timedOut, code, r.Total, r.Failed, hung, r.HungTest, r.BuildFailed, output);
    }

    /// <summary>Runs a program, collecting its output; kills its whole tree after <paramref name="timeout"/>.</summary>
    private static (int Code, bool TimedOut, List<string> Output) RunProcess(string file, List<string> args, string workDir, TimeSpan timeout)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workDir };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        // The interleaving explorer stops at its first failing schedule (one kills the mutant).
        psi.Environment["TANDEM_FIRST_FAILURE"] = "1";
        if (Shell.Verbose)
            Console.Error.WriteLine($"+ {file} {string.Join(' ', psi.ArgumentList)}");
        var output = new List<string>();
        using var p = Shell.Start(psi);
        void Handle(string? line)
        {
            if (line == null)
                return;
            lock (output)
                output.Add(line);
            if (Shell.Verbose)
                Say("    | " + line);
        }
        p.OutputDataReceived += (_, e) => Handle(e.Data);
        p.ErrorDataReceived += (_, e) => Handle(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        bool exited = p.WaitForExit(timeout);
        if (!exited)
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
        }
        p.WaitForExit();
        lock (output)
            return (exited ? p.ExitCode : -1, !exited, output.ToList());
    }

    /// <summary>
    /// Reads the list. Format (see the file's header): a block per mutation, opened by
    /// <c>[name]</c>, with <c>key: value</c> lines (invariant, file, projects, filter) and the two
    /// texts between <c>original &lt;&lt;&lt;</c> / <c>replacement &lt;&lt;&lt;</c> and a line <c>&gt;&gt;&gt;</c>.
    /// </summary>
    public static List<Mutation> Parse(string path)
    {
        if (!File.Exists(path))
            throw new BuildException($"{ListPath} not found");
        string[] lines = File.ReadAllText(path).Replace("\r\n", "\n").Split('\n');
        var result = new List<Mutation>();
        string? name = null;
        int start = 0;
        var fields = new Dictionary<string, string>();
        string? original = null, replacement = null;

        void Finish()
        {
            if (name == null)
                return;
            string Need(string key) => fields.TryGetValue(key, out string? v) && v.Length > 0
                ? v : throw new BuildException($"{ListPath} line {start}: mutation '{name}' has no '{key}'");
            if (original == null || replacement == null)
                throw new BuildException($"{ListPath} line {start}: mutation '{name}' needs both 'original <<<' and 'replacement <<<' texts");
            if (original.Length == 0)
                throw new BuildException($"{ListPath} line {start}: mutation '{name}' has an empty original text");
            if (original == replacement)
                throw new BuildException($"{ListPath} line {start}: mutation '{name}' changes nothing");
            var projects = Need("projects").Split([',', ' '], StringSplitOptions.RemoveEmptyEntries).ToList();
            foreach (string p in projects)
            {
                if (!File.Exists(Path.Combine(Repo.Root, "tests", "host", p, p + ".csproj")))
                    throw new BuildException($"{ListPath} line {start}: mutation '{name}' names project '{p}', which is not under tests/host");
            }
            if (result.Any(m => m.Name == name))
                throw new BuildException($"{ListPath} line {start}: mutation '{name}' is listed twice");
            result.Add(new Mutation(name, Need("invariant"), Need("file"), original, replacement, projects,
                fields.TryGetValue("filter", out string? f) && f.Length > 0 ? f : null, start));
            name = null;
        }

        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i];
            string trimmed = line.Trim();
            if (trimmed.Length == 0 || trimmed.StartsWith('#'))
                continue;
            if (trimmed.StartsWith('[') && trimmed.EndsWith(']'))
            {
                Finish();
                name = trimmed[1..^1].Trim();
                start = i + 1;
                fields.Clear();
                original = replacement = null;
                continue;
            }
            if (name == null)
                throw new BuildException($"{ListPath} line {i + 1}: text outside a [mutation] block");
            if (trimmed is "original <<<" or "replacement <<<")
            {
                var text = new StringBuilder();
                int j = i + 1;
                for (; j < lines.Length && lines[j] != ">>>"; j++)
                {
                    if (j > i + 1)
                        text.Append('\n');
                    text.Append(lines[j]);
                }
                if (j >= lines.Length)
                    throw new BuildException($"{ListPath} line {i + 1}: '{trimmed}' is not closed by a line '>>>'");
                if (trimmed.StartsWith("original", StringComparison.Ordinal))
                    original = text.ToString();
                else
                    replacement = text.ToString();
                i = j;
                continue;
            }
            int colon = trimmed.IndexOf(':');
            if (colon <= 0)
                throw new BuildException($"{ListPath} line {i + 1}: expected 'key: value', 'original <<<' or 'replacement <<<'");
            string key = trimmed[..colon].Trim();
            if (key is not ("invariant" or "file" or "projects" or "filter" or "why"))
                throw new BuildException($"{ListPath} line {i + 1}: unknown key '{key}'");
            fields[key] = trimmed[(colon + 1)..].Trim();
        }
        Finish();
        return result;
    }
}
