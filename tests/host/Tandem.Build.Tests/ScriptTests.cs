using System.Text.RegularExpressions;
using Xunit;

namespace Tandem.Build.Tests;

/// <summary>
/// The Linux guest's scripts (tools/Build/Linux): they parse, and /selftest runs on the host under
/// the initramfs's own busybox (its file and workload parts, and what it does at the end), as a
/// copy whose power-off and port writes only print markers, so nothing here can stop the machine.
/// </summary>
public class ScriptTests
{
    [Theory]
    [InlineData("init")]
    [InlineData("selftest")]
    [InlineData("profile")]
    public void TheScriptParsesUnderSh(string name)
    {
        var (code, _, err) = Host.Run("/bin/sh", ["-n", Path.Combine(Host.RepoRoot, "tools", "Build", "Linux", name)]);
        Assert.True(code == 0, $"sh -n {name}: {err}");
    }

    [Fact]
    public void TheSelftestLineIsPrintedOnceWithTheDocumentedFields()
    {
        string script = Host.Script("selftest");
        var echoes = Regex.Matches(script, @"^\s*echo ""TANDEM-SELFTEST (.*)""$", RegexOptions.Multiline);
        Assert.Single(echoes);
        Assert.Equal("cpus=$cpus mem_kb=$mem_kb files=$files workload=$workload result=$result", echoes[0].Groups[1].Value);
        string init = Host.Script("init");
        Assert.Contains("echo \"Tandem Linux guest: $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs, $(awk '/MemTotal/{print $2}' /proc/meminfo) kB\"", init);
        Assert.Contains("echo TANDEM-SHELL-READY", init);
        Assert.Contains("setsid cttyhack sh -l", init);
        // /init stays PID 1 and acts on busybox's poweroff, reboot and halt signals.
        Assert.Contains("trap 'poweroff -f' USR2", init);
        Assert.Contains("trap 'reboot -f' TERM", init);
        Assert.Contains("trap 'halt -f' USR1", init);
    }

    /// <summary>
    /// A folder with the built initramfs's busybox and a copy of /selftest that cannot reach the
    /// machine: busybox's shell runs its own applets whatever PATH says, so the copy's
    /// <c>poweroff -f</c>, <c>/bin/tandem-exit</c>, <c>/dev/port</c> and <c>/dev/console</c> are
    /// replaced by markers it prints and a plain file (the copy must have no other way to them).
    /// </summary>
    private sealed class BusyboxSandbox : IDisposable
    {
        public string Root { get; } = Directory.CreateTempSubdirectory("tandem-busybox-").FullName;
        public string Bin => Path.Combine(Root, "bin");
        public string Busybox => Path.Combine(Bin, "busybox");
        public string SelftestCopy => Path.Combine(Root, "selftest");

        public BusyboxSandbox(Func<string, string>? edit = null)
        {
            List<NewcEntry> entries = NewcReader.Read(InitramfsTests.Gunzip(File.ReadAllBytes(Host.LinuxModule("linux-initrd"))));
            Directory.CreateDirectory(Bin);
            File.WriteAllBytes(Busybox, entries.Single(e => e.Name == "bin/busybox").Data);
            File.SetUnixFileMode(Busybox, (UnixFileMode)0x1ED);
            var (code, _, err) = Host.Run(Busybox, ["--install", "-s", Bin]);
            Assert.True(code == 0, $"busybox --install: {err}");
            string script = Host.Script("selftest")
                .Replace("poweroff -f", "echo MARK-poweroff")
                .Replace("/bin/tandem-exit", "echo MARK-tandem-exit")
                .Replace("/dev/port", Path.Combine(Root, "port"))
                .Replace("/dev/console", "/dev/null");
            Assert.DoesNotContain("poweroff", script.Replace("MARK-poweroff", "").Replace("--poweroff", ""));
            Assert.DoesNotContain("reboot", script);
            Assert.DoesNotContain("halt", script);
            File.WriteAllText(SelftestCopy, edit != null ? edit(script) : script);
        }

        public (int Code, string Stdout, string Stderr) Selftest(IDictionary<string, string> settings, params string[] args)
        {
            var env = new Dictionary<string, string>(settings)
            {
                ["PATH"] = Bin,
                ["HOME"] = Root,
                ["SELFTEST_DROP_CACHES"] = "0",        // never drop the host's page cache
            };
            env.TryAdd("SELFTEST_DIR", Path.Combine(Root, "work"));
            return Host.Run(Busybox, ["sh", SelftestCopy, .. args], Root, env, timeoutSeconds: 300);
        }

        public void Dispose() => Directory.Delete(Root, recursive: true);
    }

    private static int HostCpus() => File.ReadAllLines("/proc/cpuinfo").Count(l => l.StartsWith("processor", StringComparison.Ordinal));

    private static long HostMemKb() =>
        long.Parse(Regex.Match(File.ReadAllText("/proc/meminfo"), @"^MemTotal:\s+(\d+) kB", RegexOptions.Multiline).Groups[1].Value);

    [FactWithLinuxGuest("linux-initrd")]
    public void TheScriptsParseUnderBusybox()
    {
        using var box = new BusyboxSandbox();
        foreach (string name in new[] { "init", "selftest", "profile" })
        {
            var (code, _, err) = Host.Run(box.Busybox, ["sh", "-n", Path.Combine(Host.RepoRoot, "tools", "Build", "Linux", name)]);
            Assert.True(code == 0, $"busybox sh -n {name}: {err}");
        }
    }

    [FactWithLinuxGuest("linux-initrd")]
    public void TheSelftestPassesUnderBusybox()
    {
        using var box = new BusyboxSandbox();
        // Three workers (more than the two it starts at least), the default sizes otherwise.
        var (code, stdout, stderr) = box.Selftest(new Dictionary<string, string> { ["SELFTEST_WORKERS"] = "3", ["SELFTEST_TIMES"] = "1" });
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string result = Assert.Single(lines, l => l.StartsWith("TANDEM-SELFTEST ", StringComparison.Ordinal));
        Assert.Matches(@"^TANDEM-SELFTEST cpus=\d+ mem_kb=\d+ files=(ok|bad) workload=(ok|bad) result=(PASS|FAIL)$", result);
        Assert.Equal($"TANDEM-SELFTEST cpus={HostCpus()} mem_kb={HostMemKb()} files=ok workload=ok result=PASS", result);
        Assert.True(code == 0, $"exit code {code}\n{stdout}\n{stderr}");
        Assert.Contains(lines, l => l.StartsWith("selftest: workload at ", StringComparison.Ordinal));
        Assert.DoesNotContain("MARK-", stdout);                                // no --poweroff: no power-off
        Assert.False(Directory.Exists(Path.Combine(box.Root, "work")), "the selftest left its files behind");
    }

    [FactWithLinuxGuest("linux-initrd")]
    public void TheSelftestReportsAFailure()
    {
        using var box = new BusyboxSandbox();
        // A folder it cannot create: neither part can run.
        var (code, stdout, _) = box.Selftest(new Dictionary<string, string> { ["SELFTEST_DIR"] = "/proc/tandem-selftest-nowhere" });
        Assert.Equal(1, code);
        Assert.Equal($"TANDEM-SELFTEST cpus={HostCpus()} mem_kb={HostMemKb()} files=bad workload=bad result=FAIL", stdout.Trim());
    }

    [FactWithLinuxGuest("linux-initrd")]
    public void WithPoweroffAPassPowersOffAndAFailWritesTheDebugExitPortFirst()
    {
        using var box = new BusyboxSandbox();
        var settings = new Dictionary<string, string> { ["SELFTEST_FILES"] = "3", ["SELFTEST_WORKER_KB"] = "64" };
        var (_, stdout, _) = box.Selftest(settings, "--poweroff");
        Assert.EndsWith("result=PASS\nMARK-poweroff", stdout.Trim());
        settings["SELFTEST_DIR"] = "/proc/tandem-selftest-nowhere";
        (_, stdout, _) = box.Selftest(settings, "--poweroff");
        Assert.EndsWith("result=FAIL\nMARK-tandem-exit 1\nMARK-poweroff", stdout.Trim());
    }

    [FactWithLinuxGuest("linux-initrd")]
    public void AWorkerThatSeesADifferentSumFailsTheWorkload()
    {
        // The first sum of each worker's buffer replaced by one that cannot match.
        const string first = "first=$(md5sum < \"$f\")";
        using var box = new BusyboxSandbox(s => s.Contains(first) ? s.Replace(first, "first=not-a-sum") : throw new InvalidOperationException("no " + first));
        var (code, stdout, _) = box.Selftest(new Dictionary<string, string> { ["SELFTEST_WORKER_KB"] = "64" });
        Assert.Equal(1, code);
        Assert.Equal($"TANDEM-SELFTEST cpus={HostCpus()} mem_kb={HostMemKb()} files=ok workload=bad result=FAIL", stdout.Trim());
    }
}
