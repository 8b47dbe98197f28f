using System.Text.RegularExpressions;

namespace Tandem.Build;

internal sealed record TestOptions(bool Host, bool Kernel, IReadOnlyList<string> Configs, string? Filter);

/// <summary>
/// The whole suite: host tests (dotnet test, read from its TRX files), the mutation check, the
/// formatting check, then the in-kernel tests in five configurations, each booted in a run folder
/// of its own that keeps its serial log. Writes out/test/results.xml (JUnit: one suite per host
/// project, per kernel configuration, for the mutations and for the format check), lists every
/// FAIL and SKIP, and ends with one line "N passed, N failed, N skipped" summed over all of them.
/// </summary>
internal static partial class TestVerb
{
    private sealed record Config(string Name, EmulatorKind Emulator, int Cpus, bool Uefi, string ExpectVmx, int Timeout);

    private static readonly Config[] Configs =
    [
        new("qemu-bios-1cpu", EmulatorKind.Qemu, 1, false, "no", 180),
        new("qemu-bios-2cpu", EmulatorKind.Qemu, 2, false, "no", 180),
        new("qemu-uefi", EmulatorKind.Qemu, 2, true, "no", 240),
        new("bochs-tigerlake-1cpu", EmulatorKind.Bochs, 1, false, "yes", 1200),
        new("bochs-tigerlake-2cpu", EmulatorKind.Bochs, 2, false, "yes", 2400),
    ];

    public static IEnumerable<string> ConfigNames => Configs.Select(c => c.Name);

    private static string ResultsDir => Path.Combine(Repo.Out, "test");

    public static string ResultsXml => Path.Combine(ResultsDir, "results.xml");

    public static int Run(TestOptions options)
    {
        int passed = 0, failed = 0, skipped = 0;
        var report = new List<string>();
        var failures = new List<string>();
        var suites = new List<JUnitSuite>();
        MutationRun? mutations = null;
        int mutationsAt = 0;
        Directory.CreateDirectory(ResultsDir);
        if (File.Exists(ResultsXml))
            File.Delete(ResultsXml);

        if (options.Host)
        {
            Tools.EnsureHostTests();
            if (options.Kernel && options.Filter == null)
                BuildDebugImage();
            // The Linux guest first (cached after one fetch): Tandem.Build.Tests runs its /selftest
            // under its busybox, and skips that without out/obj/linux/linux-initrd.
            LinuxGuest.Ensure();
            foreach (string project in HostTestProjects())
            {
                string name = Path.GetFileNameWithoutExtension(project);
                JUnitSuite suite = DotnetTest(project, options.Filter);
                suites.Add(suite);
                int p = suite.Cases.Count(c => c.Failure == null && c.Skipped == null);
                int f = suite.Cases.Count(c => c.Failure != null);
                int s = suite.Cases.Count(c => c.Failure == null && c.Skipped != null);
                passed += p; failed += f; skipped += s;
                if (suite.Error != null)
                {
                    failed++;
                    failures.Add($"FAIL [host {name}] {suite.Error}");
                }
                failures.AddRange(suite.Cases.Where(c => c.Failure != null).Select(c => $"FAIL [host {name}] {c.Name}: {FirstLine(c.Failure!)}"));
                string note = suite.Error != null ? $" ({suite.Error})" : suite.Cases.Count == 0 ? $" (no test matches --filter {options.Filter})" : "";
                report.Add($"host {name}: {p} passed, {f} failed, {s} skipped{note}");
                foreach (JUnitCase c in suite.Cases.Where(c => c.Failure == null && c.Skipped != null))
                    report.Add($"  SKIP {c.Name}: {FirstLine(c.Skipped!)}");
            }
            if (options.Filter == null)
            {
                // Beside the Bochs configurations when there are any: Bochs runs on one core in
                // virtual time (clock: sync=none), so the check takes the other core without
                // changing what the kernel sees. Its results go in here, in this place.
                mutationsAt = report.Count;
                mutations = new MutationRun();
                if (!options.Kernel)
                    mutations.Start(background: false);
            }
            else
                report.Add($"mutations: not run (--filter {options.Filter})");
            var format = new JUnitSuite("format");
            bool formatted = FormatCheck();
            string? formatFailure = formatted ? null : "files are not formatted (run: dotnet format whitespace --folder)";
            format.Cases.Add(new JUnitCase("dotnet format whitespace --verify-no-changes", 0, formatFailure, null));
            suites.Add(format);
            if (formatted) passed++; else failed++;
            if (!formatted)
                failures.Add($"FAIL [format] {formatFailure}");
            report.Add($"format: {(formatted ? "clean" : "FAILED (run: dotnet format whitespace --folder)")}");
        }

        if (options.Kernel)
        {
            Tools.EnsureAll();
            Driver.BuildIfNeeded();
            foreach (Config c in Configs.Where(c => options.Configs.Count == 0 || options.Configs.Contains(c.Name)))
            {
                // QEMU runs in wall-clock time: its configurations go first, on a quiet machine.
                if (c.Emulator == EmulatorKind.Bochs)
                    mutations?.Start(background: true);
                JUnitSuite suite = KernelTests(c, options.Filter, out RunResult r);
                suites.Add(suite);
                int p = suite.Cases.Count(t => t.Failure == null && t.Skipped == null);
                int f = suite.Cases.Count(t => t.Failure != null);
                int s = suite.Cases.Count(t => t.Failure == null && t.Skipped != null);
                passed += p; failed += f; skipped += s;
                // A run that did not finish shows its last serial lines here too (the watchdog's
                // report, if the kernel printed one): CI logs show the console, not results.xml.
                failures.AddRange(suite.Cases.Where(t => t.Failure != null).Select(t => t.Name == "(run)"
                    ? $"FAIL [{c.Name}] {t.Name}: {t.Failure!.Replace("\n", "\n    | ")}"
                    : $"FAIL [{c.Name}] {t.Name}: {FirstLine(t.Failure!)}"));
                if (suite.Error != null)
                {
                    failed++;
                    failures.Add($"FAIL [{c.Name}] {suite.Error}");
                }
                report.Add($"kernel {c.Name}: {p} passed, {f} failed, {s} skipped{(suite.Error != null ? $" ({suite.Error})" : "")}; serial log {Path.GetRelativePath(Repo.Root, r.SerialLog)}");
                foreach (JUnitCase t in suite.Cases.Where(t => t.Failure == null && t.Skipped != null))
                    report.Add($"  SKIP {t.Name}: {t.Skipped}");
            }
        }

        if (mutations != null)
        {
            mutations.Start(background: false);
            MutationRun.Outcome m = mutations.Wait();
            report.InsertRange(mutationsAt, m.Report);
            passed += m.Passed;
            failed += m.Failed;
            suites.Add(m.Suite);
            failures.AddRange(m.Suite.Cases.Where(c => c.Failure != null).Select(c => $"FAIL [mutations] {c.Name}: {FirstLine(c.Failure!)}"));
        }

        // The kernel's linux.* tests report SKIP themselves without the modules; this says why.
        if (LinuxGuest.UnavailableReason is string why)
            report.Add($"linux guest unavailable: {why}");

        JUnit.Write(ResultsXml, suites);
        Console.WriteLine("=== summary");
        foreach (string line in report)
            Console.WriteLine(line);
        Console.WriteLine($"results: {Path.GetRelativePath(Repo.Root, ResultsXml)} (JUnit)");
        if (failures.Count > 0)
        {
            Console.WriteLine($"=== failures ({failures.Count})");
            foreach (string line in failures)
                Console.WriteLine(line);
        }
        Console.WriteLine($"{passed} passed, {failed} failed, {skipped} skipped");
        return failed == 0 ? ExitCodes.Success : ExitCodes.Failed;
    }

    private static string FirstLine(string s) => s.Split('\n')[0].Trim();

    /// <summary>
    /// The image with DWARF (out/tandem-debug.*, as './build.sh image --debug-info' makes it), before
    /// the host tests: GdbTests breaks in it under QEMU's gdbstub, and skips without it.
    /// </summary>
    private static void BuildDebugImage()
    {
        Console.WriteLine("=== debug image (for the gdb host test)");
        Tools.EnsureAll();
        Repo.DebugInfo = true;
        try
        {
            Driver.BuildIfNeeded();
            if (!File.Exists(Repo.Iso) || File.GetLastWriteTimeUtc(Repo.Iso) < File.GetLastWriteTimeUtc(Repo.Elf))
                ImageBuilder.BuildIso(Repo.Iso, "", menu: true, Guests.Modules(""));
        }
        finally
        {
            Repo.DebugInfo = false;
        }
    }

    private static IEnumerable<string> HostTestProjects() =>
        Directory.Exists(Path.Combine(Repo.Root, "tests", "host"))
            ? Directory.GetFiles(Path.Combine(Repo.Root, "tests", "host"), "*.Tests.csproj", SearchOption.AllDirectories).OrderBy(p => p, StringComparer.Ordinal)
            : [];

    [GeneratedRegex(@"^(PASS|FAIL|SKIP) (\S+?)(?:: (.*))?$")]
    private static partial Regex ResultLine();

    /// <summary>
    /// Boots one configuration with "test" and turns its serial console into a suite: one case per
    /// PASS/FAIL/SKIP line. The kernel prints no durations, so a case's time is what the host saw:
    /// the seconds between its line and the serial line before it.
    /// </summary>
    private static JUnitSuite KernelTests(Config c, string? filter, out RunResult r)
    {
        string cmdline = (filter != null ? $"test={filter}" : "test") + $" expect_vmx={c.ExpectVmx}";
        string dir = RunFolder.Create(c.Name);
        string iso = Path.Combine(dir, "tandem.iso");
        ImageBuilder.BuildIso(iso, cmdline, menu: false, Guests.Modules(cmdline));
        Console.WriteLine($"=== kernel tests: {c.Name}");
        var o = new RunOptions(c.Emulator, cmdline, c.Cpus, 512, c.Uefi, c.Timeout, Echo: true);
        r = Emulator.Run(iso, o, dir);
        if (r.StoppedBy == null && (r.TimedOut || r.KernelStatus is null or not 0))
            Driver.PrintCrashReport(r.Serial);

        var suite = new JUnitSuite("kernel " + c.Name);
        suite.Properties["emulator"] = r.Description;
        suite.Properties["cmdline"] = cmdline;
        suite.Properties["serial_log"] = Path.GetRelativePath(Repo.Root, r.SerialLog);
        double previous = 0;
        foreach (var (seconds, line) in r.Lines)
        {
            Match m = ResultLine().Match(line);
            if (m.Success)
            {
                string? reason = m.Groups[3].Success ? m.Groups[3].Value : null;
                suite.Cases.Add(new JUnitCase(m.Groups[2].Value, Math.Max(0, seconds - previous),
                    m.Groups[1].Value == "FAIL" ? reason ?? "failed" : null,
                    m.Groups[1].Value == "SKIP" ? reason ?? "skipped" : null));
            }
            previous = seconds;
        }

        Match summary = Driver.SummaryLine().Match(r.Serial);
        string outcome = r.TimedOut ? $"timed out after {c.Timeout} s" : "status " + (r.KernelStatus?.ToString() ?? "none");
        if (!summary.Success)
        {
            string last = string.Join("\n", r.Lines.TakeLast(40).Select(l => l.Line));
            suite.Error = $"no summary line ({outcome}); counted as 1 failure";
            suite.Cases.Add(new JUnitCase("(run)", r.Lines.Count > 0 ? r.Lines[^1].Seconds : 0,
                $"the kernel's test run did not finish ({outcome}); last serial lines:\n{last}", null));
            return suite;
        }
        int p = int.Parse(summary.Groups[1].Value), f = int.Parse(summary.Groups[2].Value), s = int.Parse(summary.Groups[3].Value);
        int seenP = suite.Cases.Count(t => t.Failure == null && t.Skipped == null);
        int seenF = suite.Cases.Count(t => t.Failure != null);
        int seenS = suite.Cases.Count(t => t.Failure == null && t.Skipped != null);
        if ((p, f, s) != (seenP, seenF, seenS))
            suite.Error = $"the kernel's summary ({p} passed, {f} failed, {s} skipped) disagrees with its result lines ({seenP}, {seenF}, {seenS})";
        else if (r.KernelStatus != (f == 0 ? 0 : 1))
            suite.Error = $"exit status {r.KernelStatus?.ToString() ?? "none"} disagrees with its summary ({outcome})";
        return suite;
    }

    /// <summary>
    /// Runs one host test project with the TRX logger and reads the TRX file (never the console
    /// text). A run that ends badly with no test failure (a build error, a crash, no tests) is the
    /// suite's error.
    /// </summary>
    private static JUnitSuite DotnetTest(string project, string? filter)
    {
        string name = Path.GetFileNameWithoutExtension(project);
        Console.WriteLine($"=== host tests: {Path.GetRelativePath(Repo.Root, project)}");
        string trxDir = Path.Combine(ResultsDir, "host");
        string trx = Path.Combine(trxDir, name + ".trx");
        Directory.CreateDirectory(trxDir);
        if (File.Exists(trx))
            File.Delete(trx);
        var args = new List<string> { "test", project, "-c", "Release", "--nologo", "--logger", $"trx;LogFileName={trx}" };
        if (filter != null)
            args.AddRange(["--filter", filter]);
        int code = Shell.Run("dotnet", args, Repo.Root, onLine: Console.WriteLine);
        var suite = new JUnitSuite("host " + name);
        suite.Properties["trx"] = Path.GetRelativePath(Repo.Root, trx);
        if (!File.Exists(trx))
        {
            suite.Error = $"dotnet test wrote no TRX file (exit code {code}; a build error?)";
            return suite;
        }
        suite.Cases.AddRange(Trx.Read(trx));
        bool anyFailed = suite.Cases.Any(c => c.Failure != null);
        if (code != 0 && !anyFailed)
            suite.Error = $"dotnet test failed (exit code {code}) with no failing test";
        else if (suite.Cases.Count == 0 && filter == null)
            suite.Error = "dotnet test ran no test";
        return suite;
    }

    private static bool FormatCheck()
    {
        Console.WriteLine("=== format check: dotnet format whitespace --folder --verify-no-changes");
        int code = Shell.Run("dotnet", ["format", "whitespace", Repo.Root, "--folder", "--verify-no-changes",
            "--exclude", "out", "--exclude", "**/obj", "--exclude", "**/bin"], Repo.Root,
            onLine: Console.WriteLine);
        return code == 0;
    }

    /// <summary>
    /// The mutation check of one test run, started once: in the foreground, or on a thread of its
    /// own whose progress lines carry a "[mutations]" prefix among the emulator's.
    /// </summary>
    private sealed class MutationRun
    {
        public sealed record Outcome(List<string> Report, int Passed, int Failed, JUnitSuite Suite);

        private Task<Outcome>? _task;

        public void Start(bool background)
        {
            if (_task != null)
                return;
            if (background)
            {
                Console.WriteLine("=== mutation check: beside the Bochs configurations (its lines start with [mutations])");
                Progress.ConsoleShared();
                _task = Task.Run(() => Run("[mutations] "));
            }
            else
                _task = Task.FromResult(Run(""));
        }

        public Outcome Wait() => _task!.GetAwaiter().GetResult();

        private static Outcome Run(string prefix)
        {
            var report = new List<string>();
            var suite = new JUnitSuite("mutations");
            int passed = 0, failed = 0;
            MutationCheck.AddToTestRun(report, ref passed, ref failed, suite, prefix);
            return new Outcome(report, passed, failed, suite);
        }
    }
}
