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

    private static LinuxBoot Plain(int vcpus, double handover, double ready, double? cpuHandover, double? cpuReady, double? emulated = null) =>
        new(LinuxBootKind.Plain, vcpus)
        {
            Start = new Moment(0, 0, 0),
            Handover = new Moment(cpuHandover, handover, emulated.HasValue ? 1 : null),
            Ready = new Moment(cpuReady, ready, emulated.HasValue ? 1 + emulated : null),
        };

    private static LinuxBoot Tandem(LinuxBootKind kind, int vcpus, double start, double ready, double? cpuStart, double? cpuReady, double? emulated = null) =>
        new(kind, vcpus)
        {
            Start = new Moment(cpuStart, start, emulated.HasValue ? 2 : null),
            Ready = new Moment(cpuReady, ready, emulated.HasValue ? 2 + emulated : null),
            Exits = VmExitCounts.Parse(TwoVcpus),
        };

    [Fact]
    public void RatiosUseCpuTimeFromTheHandoverAndVmStartAndJudgeAgainstTheGoal()
    {
        var boots = new List<LinuxBoot>
        {
            Plain(1, 8, 38, 5, 25, emulated: 10),                                  // Linux: 30 s wall, 20 s CPU, 10 s emulated
            Tandem(LinuxBootKind.BzImage, 1, 20, 80, 14, 42, emulated: 12),        // 60 s wall, 28 s CPU: 1.4x
            Tandem(LinuxBootKind.Pvh, 1, 20, 70, 14, 50, emulated: 9),             // 50 s wall, 36 s CPU: 1.8x
        };
        var ratios = LinuxBenchReport.Ratios(boots);
        Assert.Equal(2, ratios.Count);
        Assert.Equal(1.4, ratios[0].Value!.Value, 9);
        Assert.Equal(2.0, ratios[0].Wall!.Value, 9);
        Assert.Equal(1.2, ratios[0].Emulated!.Value, 9);
        Assert.True(ratios[0].OnCpu);
        Assert.Equal("ok", ratios[0].Status);
        Assert.Equal("linux_bzimage_1vcpu", ratios[0].GoalName);
        Assert.Equal(1.8, ratios[1].Value!.Value, 9);
        Assert.Equal("MISSED", ratios[1].Status);
        Assert.True(LinuxBenchReport.Failed(boots));
        Assert.Equal(30, boots[0].Seconds(BenchClock.Wall));
        Assert.Equal(10, boots[0].Seconds(BenchClock.Emulated));
        Assert.Equal(38, boots[0].Total(BenchClock.Wall));
        Assert.Equal(8, boots[0].BeforeGuest(BenchClock.Wall));
        Assert.Equal(14, boots[1].BeforeGuest(BenchClock.Cpu));
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
        Assert.Null(two.Emulated);
        Assert.Equal(40.0 / 30, two.Value!.Value, 9);
        Assert.Equal("ok", two.Status);
        Assert.Equal("NOT RUN", ratios.Single(r => r.Vcpus == 1).Status);
        Assert.True(LinuxBenchReport.Failed(boots));
        Assert.False(LinuxBenchReport.Failed(boots.Take(2).ToList()));
    }

    [Fact]
    public void TheTableHasARowPerBootWithItsRatioTheFasterPathAndTheTopExits()
    {
        var boots = new List<LinuxBoot>
        {
            Plain(1, 8, 38, 5, 25, emulated: 10),
            Tandem(LinuxBootKind.BzImage, 1, 20, 80, 14, 42, emulated: 12),
            Tandem(LinuxBootKind.Pvh, 1, 20, 70, 14, 50, emulated: 9),
            Plain(2, 8, 48, 5, 35),
            Tandem(LinuxBootKind.BzImage, 2, 20, 80, 14, 60),
            Tandem(LinuxBootKind.Pvh, 2, 20, 70, 14, 54),
        };
        List<string> table = LinuxBenchReport.Table(boots);
        var rows = table.Where(l => l.Contains(" | ", StringComparison.Ordinal)).ToList();
        Assert.Equal(7, rows.Count);
        Assert.StartsWith("vcpus | boot", rows[0]);
        // The columns line up: every row has its separators at the same places.
        static IEnumerable<int> Bars(string row) => Enumerable.Range(0, row.Length).Where(i => row[i] == '|');
        Assert.All(rows, r => Assert.Equal(Bars(rows[0]).Take(5), Bars(r).Take(5)));
        string[] Cells(string boot) => rows.Single(r => r.Split('|').Take(2).Select(c => c.Trim()).SequenceEqual(boot.Split('/'))).Split('|').Select(c => c.Trim()).ToArray();
        Assert.Equal(["1", "plain Bochs", "20.0", "30.0", "10.00", "", ""], Cells("1/plain Bochs"));
        Assert.Equal(["1", "Tandem bzImage", "28.0", "60.0", "12.00", "1.40x [2.00x] {1.20x}", "ok"], Cells("1/Tandem bzImage"));
        Assert.Equal(["1", "Tandem PVH", "36.0", "50.0", "9.00", "1.80x [1.67x] {0.90x}", "MISSED"], Cells("1/Tandem PVH"));
        Assert.Equal(["2", "Tandem bzImage", "46.0", "60.0", "-", "1.53x [1.50x] {-}", "MISSED"], Cells("2/Tandem bzImage"));
        Assert.Contains(table, l => l == "  1 vCPU: faster: bzImage by 8.0 s cpu (22 %), PVH by 10.0 s wall (17 %), PVH by 3.00 s emulated (25 %)");
        Assert.Contains(table, l => l == "  2 vCPUs: faster: PVH by 6.0 s cpu (13 %), PVH by 10.0 s wall (17 %)");
        Assert.Contains(table, l => l.StartsWith("  1 vCPU: plain Bochs from the emulator's start: GRUB's hand-over at 5.0 [8.0] {1.00}, the marker at 25.0 [38.0] {11.00}", StringComparison.Ordinal));
        Assert.Equal(4, table.Count(l => l.Contains("40878 exits, top ept-violation 25537, preemption-timer 6039, io 2747", StringComparison.Ordinal)));
    }

    [Fact]
    public void TheJsonHoldsEveryBootAndGoal()
    {
        var boots = new List<LinuxBoot>
        {
            Plain(1, 8, 38, 5, 25, emulated: 10),
            Tandem(LinuxBootKind.BzImage, 1, 20, 80, 14, 42, emulated: 12),
            new(LinuxBootKind.Pvh, 1) { Start = new Moment(14, 20, 2), Problem = "no TANDEM-SHELL-READY within 1800 s", RunDir = "out/runs/x" },
        };
        string json = LinuxBenchReport.Json(boots, "Bochs", "console=ttyS0 quiet", "clearcpuid=580");
        Assert.Contains("\"goal\": \"<= 1.5\"", json);                 // readable, not \u003C
        using JsonDocument doc = JsonDocument.Parse(json);
        JsonElement root = doc.RootElement;
        Assert.Equal("console=ttyS0 quiet", root.GetProperty("cmdline").GetString());
        Assert.Equal("clearcpuid=580", root.GetProperty("plainExtra").GetString());
        JsonElement[] goals = [.. root.GetProperty("goals").EnumerateArray()];
        Assert.Equal(2, goals.Length);
        Assert.Equal("ok", goals[0].GetProperty("status").GetString());
        Assert.Equal(1.4, goals[0].GetProperty("ratio").GetDouble(), 9);
        Assert.Equal(1.2, goals[0].GetProperty("emulatedRatio").GetDouble(), 9);
        Assert.Equal("NOT RUN", goals[1].GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, goals[1].GetProperty("ratio").ValueKind);
        JsonElement[] b = [.. root.GetProperty("boots").EnumerateArray()];
        Assert.Equal(3, b.Length);
        Assert.Equal(20, b[0].GetProperty("seconds").GetDouble(), 9);
        Assert.Equal(10, b[0].GetProperty("emulatedSeconds").GetDouble(), 9);
        Assert.Equal(8, b[0].GetProperty("handover").GetProperty("wall").GetDouble(), 9);
        Assert.Equal("GRUB's hand-over", b[0].GetProperty("from").GetString());
        Assert.Equal(["plain", "bzImage", "PVH"], b.Select(x => x.GetProperty("path").GetString()));
        Assert.Equal(25537, b[1].GetProperty("exits").GetProperty("byReason").GetProperty("ept-violation").GetInt64());
        Assert.Equal("out/runs/x", b[2].GetProperty("runDir").GetString());
        Assert.Equal(JsonValueKind.Null, b[2].GetProperty("exits").ValueKind);
    }

    [Fact]
    public void TheEmulatedTimeOfAMarkIsTheTickOfItsLastByteWrittenToTheTransmitRegister()
    {
        string[] log =
        [
            "00000000000d[SER   ] com1 initialize register for read/write: 0x03f8",
            "00000001000d[SER   ] com1 register write to  address: 0x03fb = 0x80",     // DLAB on: 0x3F8 is the divisor
            "00000001001d[SER   ] com1 register write to  address: 0x03f8 = 0x4f",
            "00000001002d[SER   ] com1 register write to  address: 0x03fb = 0x03",
            "00000002000d[SER   ] com1 register read from address: 0x03fd = 0x60",
            "00000002001d[SER   ] com1 register write to  address: 0x03f8 = 0x4f",     // O
            "00000002002i[CPU0  ] something else",
            "00000003000d[SER   ] com1 register write to  address: 0x03f8 = 0x4b",     // K
            "00000004000d[SER   ] com1 register write to  address: 0x03f9 = 0x4b",
            "00000008000d[SER   ] com1 register write to  address: 0x03f8 = 0x0a",
            "00000009000d[SER   ] com1 register write to  address: 0x03f8 = 0x4f",
            "00000010000d[SER   ] com1 register write to  address: 0x03f8 = 0x4b",
        ];
        double?[] at = LinuxBenchReport.EmulatedSecondsAt(log, ["OK", "OK\n", "K\nOK", "OO", "nowhere"], 1000);
        Assert.Equal([3.0, 8.0, 10.0, null, null], at);
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
