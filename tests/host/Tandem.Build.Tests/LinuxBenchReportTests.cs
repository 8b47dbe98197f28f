using System.Text.Json;
using Xunit;

namespace Tandem.Build.Tests;

/// <summary>
/// The Linux bench's report (tools/Build/LinuxBenchReport.cs): the kernel's exit-count line, the
/// ratios against the goal (on Bochs' CPU time when there is one, else the wall clock), the table
/// and the JSON, and the default command line that plain Bochs gets from GRUB.
/// </summary>
public class LinuxBenchReportTests
{
    private const string TwoVcpus = "vm 1: exit status 0, 2 vcpus, 24162 ms, exits 40878 (external-interrupt 907, interrupt-window 429, cpuid 1542, " +
        "hlt 1135, cr-access 1, io 2747, rdmsr 73, wrmsr 2467, ept-violation 25537, preemption-timer 6039, wbinvd 1), 19477 EPT faults, " +
        "top ports 0x3f8 1131, 0x3fa 422, 0x3fd 320";

    [Fact]
    public void TheExitLineGivesItsCountsMostFrequentFirst()
    {
        VmExitCounts e = VmExitCounts.Parse(TwoVcpus)!;
        Assert.Equal(0, e.Status);
        Assert.Equal(2, e.Vcpus);
        Assert.Equal(24162, e.Milliseconds);
        Assert.Equal(40878, e.Exits);
        Assert.Equal(19477, e.EptFaults);
        Assert.Equal("0x3f8 1131, 0x3fa 422, 0x3fd 320", e.TopPorts);
        Assert.Equal(11, e.Reasons.Count);
        Assert.Equal(40878, e.Reasons.Sum(r => r.Count));
        Assert.Equal("ept-violation 25537, preemption-timer 6039, io 2747", e.Top(3));
        // Ties keep the kernel's order.
        Assert.Equal(["cr-access", "wbinvd"], e.Reasons.TakeLast(2).Select(r => r.Reason));
    }

    [Fact]
    public void AStoppedVmWithoutPortsAndOneVcpuParseToo()
    {
        VmExitCounts e = VmExitCounts.Parse("vm 3: exit status 255 (stopped by the host: VM entry failed: invalid guest state), 1 vcpu, 25 ms, " +
            "exits 9 (cr-access 1, rdmsr 1, wrmsr 1, invalid-guest-state 1, ept-violation 5), 5 EPT faults")!;
        Assert.Equal(255, e.Status);
        Assert.Equal(1, e.Vcpus);
        Assert.Null(e.TopPorts);
        Assert.Equal("ept-violation 5, cr-access 1, rdmsr 1", e.Top(3));
        VmExitCounts none = VmExitCounts.Parse("vm 2: exit status 0, 1 vcpu, 0 ms, exits 0, 0 EPT faults")!;
        Assert.Empty(none.Reasons);
        Assert.Equal("", none.Top(3));
    }

    [Fact]
    public void FindTakesTheLastExitLineAndIgnoresGuestOutput()
    {
        string serial = "[vm 1] vm 9: exit status 7, 1 vcpu, 1 ms, exits 1 (hlt 1), 0 EPT faults\n" +
            "vm 1: exit status 0, 1 vcpu, 5 ms, exits 2 (hlt 2), 0 EPT faults\r\n" + TwoVcpus + "\ntandem: exit status 0\n";
        Assert.Equal(40878, VmExitCounts.Find(serial)!.Exits);
        Assert.Null(VmExitCounts.Find("[vm 1] vm 9: exit status 7, 1 vcpu, 1 ms, exits 1 (hlt 1), 0 EPT faults\n"));
    }

    private static LinuxBoot Plain(int vcpus, double handover, double ready, double? cpuHandover, double? cpuReady) =>
        new(LinuxBootKind.Plain, vcpus) { Start = (0, 0), Handover = (handover, cpuHandover), Ready = (ready, cpuReady) };

    private static LinuxBoot Tandem(LinuxBootKind kind, int vcpus, double start, double ready, double? cpuStart, double? cpuReady) =>
        new(kind, vcpus) { Start = (start, cpuStart), Ready = (ready, cpuReady), Exits = VmExitCounts.Parse(TwoVcpus) };

    [Fact]
    public void RatiosUseCpuTimeFromTheHandoverAndVmStartAndJudgeAgainstTheGoal()
    {
        var boots = new List<LinuxBoot>
        {
            Plain(1, 8, 38, 5, 25),                                  // Linux: 30 s wall, 20 s CPU
            Tandem(LinuxBootKind.BzImage, 1, 20, 80, 14, 42),        // 60 s wall, 28 s CPU: 1.4x
            Tandem(LinuxBootKind.Pvh, 1, 20, 70, 14, 50),            // 50 s wall, 36 s CPU: 1.8x
        };
        var ratios = LinuxBenchReport.Ratios(boots);
        Assert.Equal(2, ratios.Count);
        Assert.Equal(1.4, ratios[0].Value!.Value, 9);
        Assert.Equal(2.0, ratios[0].Wall!.Value, 9);
        Assert.True(ratios[0].OnCpu);
        Assert.Equal("ok", ratios[0].Status);
        Assert.Equal("linux_bzimage_1vcpu", ratios[0].GoalName);
        Assert.Equal(1.8, ratios[1].Value!.Value, 9);
        Assert.Equal("MISSED", ratios[1].Status);
        Assert.True(LinuxBenchReport.Failed(boots));
        Assert.Equal(30, boots[0].Seconds(false));
        Assert.Equal(38, boots[0].Total(false));
        Assert.Equal(8, boots[0].BeforeGuest(false));
    }

    [Fact]
    public void WithoutCpuTimesTheWallClockIsJudgedAndAMissingPlainBootIsNotRun()
    {
        var boots = new List<LinuxBoot>
        {
            Plain(2, 8, 38, null, null),
            Tandem(LinuxBootKind.BzImage, 2, 20, 60, null, null),   // 40 / 30
            Tandem(LinuxBootKind.Pvh, 1, 20, 60, 1, 2),             // no plain boot with 1 vCPU
        };
        var ratios = LinuxBenchReport.Ratios(boots);
        LinuxBenchReport.Ratio two = ratios.Single(r => r.Vcpus == 2);
        Assert.False(two.OnCpu);
        Assert.Equal(40.0 / 30, two.Value!.Value, 9);
        Assert.Equal("ok", two.Status);
        Assert.Equal("NOT RUN", ratios.Single(r => r.Vcpus == 1).Status);
        Assert.True(LinuxBenchReport.Failed(boots));
        Assert.False(LinuxBenchReport.Failed(boots.Take(2).ToList()));
    }

    [Fact]
    public void TheTableHasARowPerVcpuCountWithTheFasterPathAndTheTopExits()
    {
        var boots = new List<LinuxBoot>
        {
            Plain(1, 8, 38, 5, 25),
            Tandem(LinuxBootKind.BzImage, 1, 20, 80, 14, 42),
            Tandem(LinuxBootKind.Pvh, 1, 20, 70, 14, 50),
            Plain(2, 8, 48, 5, 35),
            Tandem(LinuxBootKind.BzImage, 2, 20, 80, 14, 60),
            Tandem(LinuxBootKind.Pvh, 2, 20, 70, 14, 54),
        };
        List<string> table = LinuxBenchReport.Table(boots);
        string header = table.Single(l => l.StartsWith("vcpus", StringComparison.Ordinal));
        Assert.Contains("bzImage/plain", header);
        string one = table.Single(l => l.TrimStart().StartsWith("1 |", StringComparison.Ordinal));
        Assert.Contains("25.0 [38.0]", one);                     // plain total: CPU [wall] at the marker
        Assert.Contains("1.40x [2.00x] ok", one);
        Assert.Contains("1.80x [1.67x] MISSED", one);
        Assert.Contains("bzImage by 8.0 s (22 %)", one);
        string two = table.Single(l => l.TrimStart().StartsWith("2 |", StringComparison.Ordinal));
        Assert.Contains("PVH by 6.0 s (13 %)", two);
        // The columns line up: every row of the table is as wide up to its last separator.
        var rows = table.Where(l => l.Contains(" | ", StringComparison.Ordinal)).ToList();
        Assert.Equal(3, rows.Count);
        Assert.Single(rows.Select(r => r.LastIndexOf(" | ", StringComparison.Ordinal)).Distinct());
        Assert.Equal(4, table.Count(l => l.Contains("40878 exits, top ept-violation 25537, preemption-timer 6039, io 2747", StringComparison.Ordinal)));
    }

    [Fact]
    public void TheJsonHoldsEveryBootAndGoal()
    {
        var boots = new List<LinuxBoot>
        {
            Plain(1, 8, 38, 5, 25),
            Tandem(LinuxBootKind.BzImage, 1, 20, 80, 14, 42),
            new(LinuxBootKind.Pvh, 1) { Start = (20, 14), Problem = "no TANDEM-SHELL-READY within 1800 s", RunDir = "out/runs/x" },
        };
        using JsonDocument doc = JsonDocument.Parse(LinuxBenchReport.Json(boots, "Bochs", "console=ttyS0 quiet", "clearcpuid=580"));
        JsonElement root = doc.RootElement;
        Assert.Equal("console=ttyS0 quiet", root.GetProperty("cmdline").GetString());
        Assert.Equal("clearcpuid=580", root.GetProperty("plainExtra").GetString());
        JsonElement[] goals = [.. root.GetProperty("goals").EnumerateArray()];
        Assert.Equal(2, goals.Length);
        Assert.Equal("ok", goals[0].GetProperty("status").GetString());
        Assert.Equal(1.4, goals[0].GetProperty("ratio").GetDouble(), 9);
        Assert.Equal("NOT RUN", goals[1].GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, goals[1].GetProperty("ratio").ValueKind);
        JsonElement[] b = [.. root.GetProperty("boots").EnumerateArray()];
        Assert.Equal(3, b.Length);
        Assert.Equal(20, b[0].GetProperty("seconds").GetDouble(), 9);
        Assert.Equal(8, b[0].GetProperty("handover").GetProperty("wall").GetDouble(), 9);
        Assert.Equal(25537, b[1].GetProperty("exits").GetProperty("byReason").GetProperty("ept-violation").GetInt64());
        Assert.Equal("out/runs/x", b[2].GetProperty("runDir").GetString());
        Assert.Equal(JsonValueKind.Null, b[2].GetProperty("exits").ValueKind);
    }

    [Fact]
    public void PlainBochsGetsTheKernelsDefaultLinuxCommandLineTheDocsState()
    {
        string source = File.ReadAllText(Path.Combine(Host.RepoRoot, "kernel", "Virt", "GuestRunner.cs"));
        string? cmdline = LinuxBenchReport.DefaultCmdline(source);
        Assert.NotNull(cmdline);
        Assert.Contains("console=ttyS0", cmdline);
        Assert.Contains($"`{cmdline}`", File.ReadAllText(Path.Combine(Host.RepoRoot, "docs", "guests.md")));
        Assert.Null(LinuxBenchReport.DefaultCmdline("const string Other = \"x\";"));
    }
}
