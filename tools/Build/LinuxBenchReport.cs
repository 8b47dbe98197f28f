using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Tandem.Build;

/// <summary>Which way the Linux bench booted the kernel.</summary>
internal enum LinuxBootKind { Plain, BzImage, Pvh }

/// <summary>
/// One boot of the Linux bench (<see cref="LinuxBench"/>): the moments it reached, each in two
/// clocks: wall-clock seconds since the emulator started (the driver's timestamps of the serial
/// lines) and seconds of CPU time the Bochs process had used by then (null where the watcher did
/// not see it). <see cref="Start"/> is the emulator's start for plain Bochs (0 in both clocks) and
/// the kernel's "vm: starting" line for Tandem; <see cref="Handover"/> is GRUB's last line before
/// it boots Linux (plain Bochs only); <see cref="Ready"/> is the guest's TANDEM-SHELL-READY.
/// </summary>
internal sealed class LinuxBoot(LinuxBootKind kind, int vcpus)
{
    public LinuxBootKind Kind { get; } = kind;
    public int Vcpus { get; } = vcpus;
    public (double? Wall, double? Cpu) Start { get; set; }
    public (double? Wall, double? Cpu) Handover { get; set; }
    public (double? Wall, double? Cpu) Ready { get; set; }
    public VmExitCounts? Exits { get; set; }
    public string? RunDir { get; set; }

    /// <summary>Why the boot gave no figure, or a remark on one that did (e.g. no exit line).</summary>
    public string? Problem { get; set; }

    public string Label => Kind switch
    {
        LinuxBootKind.Plain => "plain Bochs",
        LinuxBootKind.BzImage => "Tandem bzImage",
        _ => "Tandem PVH",
    };

    /// <summary>The figure compared: plain from GRUB's hand-over, Tandem from "vm: starting", to the marker.</summary>
    public double? Seconds(bool cpu) => Kind == LinuxBootKind.Plain ? Span(Handover, Ready, cpu) : Span(Start, Ready, cpu);

    /// <summary>From the emulator's start to the marker.</summary>
    public double? Total(bool cpu) => cpu ? Ready.Cpu : Ready.Wall;

    /// <summary>From the emulator's start to <see cref="Handover"/> (plain) or <see cref="Start"/> (Tandem).</summary>
    public double? BeforeGuest(bool cpu) => Kind == LinuxBootKind.Plain ? (cpu ? Handover.Cpu : Handover.Wall) : (cpu ? Start.Cpu : Start.Wall);

    private static double? Span((double? Wall, double? Cpu) from, (double? Wall, double? Cpu) to, bool cpu)
    {
        double? a = cpu ? from.Cpu : from.Wall, b = cpu ? to.Cpu : to.Wall;
        return a.HasValue && b.HasValue ? b.Value - a.Value : null;
    }
}

/// <summary>
/// The kernel's line for an ended VM, <c>vm N: exit status S[ (stopped by the host: ...)], C vcpus, T ms,
/// exits E (reason count, ...), F EPT faults[, top ports P count, ...]</c> (kernel/Virt/VmThreads.cs,
/// Report), with the reasons most frequent first.
/// </summary>
internal sealed partial record VmExitCounts(int Status, int Vcpus, long Milliseconds, long Exits, IReadOnlyList<(string Reason, long Count)> Reasons,
    long EptFaults, string? TopPorts)
{
    [GeneratedRegex(@"^vm \d+: exit status (\d+)(?: \(stopped by the host: .*?\))?, (\d+) vcpus?, (\d+) ms, exits (\d+)(?: \(([^)]*)\))?, (\d+) EPT faults(?:, top ports (.*))?$")]
    private static partial Regex Line();

    /// <summary>The last such line in <paramref name="serial"/>, or null.</summary>
    public static VmExitCounts? Find(string serial)
    {
        VmExitCounts? last = null;
        foreach (string line in serial.Split('\n'))
            last = Parse(line.TrimEnd('\r')) ?? last;
        return last;
    }

    public static VmExitCounts? Parse(string line)
    {
        Match m = Line().Match(line);
        if (!m.Success)
            return null;
        var reasons = new List<(string, long)>();
        if (m.Groups[5].Success)
        {
            foreach (string part in m.Groups[5].Value.Split(", "))
            {
                int space = part.LastIndexOf(' ');
                if (space > 0 && long.TryParse(part[(space + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out long n))
                    reasons.Add((part[..space], n));
            }
        }
        // Most frequent first; ties keep the kernel's order (the exit reason number).
        var sorted = reasons.Select((r, i) => (r, i)).OrderByDescending(x => x.r.Item2).ThenBy(x => x.i).Select(x => x.r).ToList();
        return new VmExitCounts(Int(m.Groups[1]), Int(m.Groups[2]), Long(m.Groups[3]), Long(m.Groups[4]), sorted, Long(m.Groups[6]),
            m.Groups[7].Success ? m.Groups[7].Value : null);
    }

    private static int Int(Group g) => int.Parse(g.Value, CultureInfo.InvariantCulture);
    private static long Long(Group g) => long.Parse(g.Value, CultureInfo.InvariantCulture);

    /// <summary>"reason count, ..." of the <paramref name="n"/> most frequent reasons.</summary>
    public string Top(int n) => string.Join(", ", Reasons.Take(n).Select(r => $"{r.Reason} {r.Count}"));
}

/// <summary>
/// The Linux bench's table, goals and JSON (the figures come from <see cref="LinuxBench"/>; this
/// part has no I/O, so host tests can check it). Every figure is judged on Bochs' CPU time when the
/// watcher saw it (what the wall clock would read on an otherwise idle machine: Bochs emulates every
/// CPU on one host thread), else on the wall clock; the other clock is shown in brackets.
/// </summary>
internal static partial class LinuxBenchReport
{
    /// <summary>Issue 10 §5: Tandem's boot to the shell at most 1.5 times plain Bochs'.</summary>
    public const double Goal = 1.5;

    [GeneratedRegex(@"\bLinuxDefaultCmdline\s*=\s*""([^""]*)""")]
    private static partial Regex DefaultCmdlineSource();

    /// <summary>The value of <c>LinuxDefaultCmdline = "..."</c> in kernel/Virt/GuestRunner.cs's text, or null.</summary>
    public static string? DefaultCmdline(string guestRunnerSource)
    {
        Match m = DefaultCmdlineSource().Match(guestRunnerSource);
        return m.Success ? m.Groups[1].Value : null;
    }

    public sealed record Ratio(int Vcpus, LinuxBootKind Kind, double? Value, double? Wall, bool OnCpu, string Status)
    {
        public string GoalName => $"linux_{(Kind == LinuxBootKind.Pvh ? "pvh" : "bzimage")}_{Vcpus}vcpu";
    }

    private static LinuxBoot? Find(IReadOnlyList<LinuxBoot> boots, LinuxBootKind kind, int vcpus) =>
        boots.FirstOrDefault(b => b.Kind == kind && b.Vcpus == vcpus);

    /// <summary>Tandem / plain for each vCPU count and Tandem path that has both figures; "NOT RUN" where one is missing.</summary>
    public static List<Ratio> Ratios(IReadOnlyList<LinuxBoot> boots)
    {
        var ratios = new List<Ratio>();
        foreach (int vcpus in boots.Select(b => b.Vcpus).Distinct().Order())
        {
            LinuxBoot? plain = Find(boots, LinuxBootKind.Plain, vcpus);
            foreach (LinuxBootKind kind in new[] { LinuxBootKind.BzImage, LinuxBootKind.Pvh })
            {
                LinuxBoot? tandem = Find(boots, kind, vcpus);
                if (tandem == null)
                    continue;
                double? wall = Divide(tandem.Seconds(false), plain?.Seconds(false));
                double? cpu = Divide(tandem.Seconds(true), plain?.Seconds(true));
                double? value = cpu ?? wall;
                string status = value == null ? "NOT RUN" : value.Value <= Goal ? "ok" : "MISSED";
                ratios.Add(new Ratio(vcpus, kind, value, wall, cpu != null, status));
            }
        }
        return ratios;
    }

    /// <summary>A goal missed or not measured.</summary>
    public static bool Failed(IReadOnlyList<LinuxBoot> boots) => Ratios(boots).Any(r => r.Status != "ok");

    private static double? Divide(double? a, double? b) => a.HasValue && b.HasValue && b.Value > 0 ? a.Value / b.Value : null;

    /// <summary>The table, one row per vCPU count, then the Tandem runs' exit counts.</summary>
    public static List<string> Table(IReadOnlyList<LinuxBoot> boots)
    {
        List<Ratio> ratios = Ratios(boots);
        bool anyCpu = boots.Any(b => b.Ready.Cpu.HasValue);
        var lines = new List<string>
        {
            $"seconds of {(anyCpu ? "Bochs' CPU time [wall clock]" : "wall clock")}; plain Bochs: total = emulator start to the marker, GRUB = to GRUB's hand-over, " +
                "Linux = hand-over to the marker; Tandem: 'vm: starting' to the marker; ratio = Tandem / plain's Linux, goal <= " + Goal.ToString("0.0", CultureInfo.InvariantCulture),
        };
        var rows = new List<string[]>
        {
            new[] { "vcpus", "plain total", "plain GRUB", "plain Linux", "Tandem bzImage", "Tandem PVH", "bzImage/plain", "PVH/plain", "faster" },
        };
        foreach (int vcpus in boots.Select(b => b.Vcpus).Distinct().Order())
        {
            LinuxBoot? plain = Find(boots, LinuxBootKind.Plain, vcpus), bz = Find(boots, LinuxBootKind.BzImage, vcpus), pvh = Find(boots, LinuxBootKind.Pvh, vcpus);
            rows.Add(
            [
                vcpus.ToString(CultureInfo.InvariantCulture),
                Both(plain, b => b.Total(true), b => b.Total(false)),
                Both(plain, b => b.BeforeGuest(true), b => b.BeforeGuest(false)),
                Both(plain, b => b.Seconds(true), b => b.Seconds(false)),
                Both(bz, b => b.Seconds(true), b => b.Seconds(false)),
                Both(pvh, b => b.Seconds(true), b => b.Seconds(false)),
                RatioCell(ratios.FirstOrDefault(r => r.Vcpus == vcpus && r.Kind == LinuxBootKind.BzImage)),
                RatioCell(ratios.FirstOrDefault(r => r.Vcpus == vcpus && r.Kind == LinuxBootKind.Pvh)),
                Faster(bz, pvh),
            ]);
        }
        int[] widths = Enumerable.Range(0, rows[0].Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
        foreach (string[] row in rows)
            lines.Add(string.Join(" | ", row.Select((cell, c) => c == row.Length - 1 ? cell : cell.PadLeft(widths[c]))).TrimEnd());
        var tandem = boots.Where(b => b.Kind != LinuxBootKind.Plain).ToList();
        if (tandem.Count > 0)
        {
            lines.Add("exits of the Tandem runs (whole VM: boot, shell, poweroff -f; the kernel's 'vm N: exit status' line), top 3 reasons:");
            foreach (LinuxBoot b in tandem)
            {
                string what = $"  {b.Label}, {b.Vcpus} vcpu{(b.Vcpus == 1 ? "" : "s")}: ";
                lines.Add(what + (b.Exits is VmExitCounts e
                    ? $"{e.Exits} exits, top {e.Top(3)}; {e.EptFaults} EPT faults; VM time {e.Milliseconds} ms, status {e.Status}" + (e.TopPorts != null ? $"; top ports {e.TopPorts}" : "")
                    : "no exit line (" + (b.Problem ?? "the VM did not end") + ")"));
            }
        }
        foreach (LinuxBoot b in boots.Where(b => b.Problem != null && (b.Kind == LinuxBootKind.Plain || b.Exits != null)))
            lines.Add($"  {b.Label}, {b.Vcpus} vcpu{(b.Vcpus == 1 ? "" : "s")}: {b.Problem}");
        return lines;
    }

    private static string Both(LinuxBoot? b, Func<LinuxBoot, double?> cpu, Func<LinuxBoot, double?> wall)
    {
        if (b == null)
            return "-";
        double? c = cpu(b), w = wall(b);
        if (c == null && w == null)
            return "-";
        return c.HasValue ? $"{S(c.Value)} [{(w.HasValue ? S(w.Value) : "-")}]" : $"[{S(w!.Value)}]";
    }

    private static string S(double seconds) => seconds.ToString("F1", CultureInfo.InvariantCulture);

    private static string X(double ratio) => ratio.ToString("F2", CultureInfo.InvariantCulture) + "x";

    private static string RatioCell(Ratio? r)
    {
        if (r == null)
            return "-";
        if (r.Value == null)
            return r.Status;
        string cell = r.OnCpu ? $"{X(r.Value.Value)} [{(r.Wall.HasValue ? X(r.Wall.Value) : "-")}]" : $"[{X(r.Value.Value)}]";
        return $"{cell} {r.Status}";
    }

    private static string Faster(LinuxBoot? bz, LinuxBoot? pvh)
    {
        bool cpu = bz?.Seconds(true) != null && pvh?.Seconds(true) != null;
        double? a = bz?.Seconds(cpu), b = pvh?.Seconds(cpu);
        if (a == null || b == null)
            return "-";
        if (a.Value == b.Value)
            return "same";
        (string name, double less) = a.Value < b.Value ? ("bzImage", b.Value - a.Value) : ("PVH", a.Value - b.Value);
        return $"{name} by {S(less)} s ({less / Math.Max(a.Value, b.Value) * 100:F0} %)";
    }

    /// <summary>Every figure as JSON (out/bench/linux/results/linux-boot.json).</summary>
    public static string Json(IReadOnlyList<LinuxBoot> boots, string emulator, string cmdline, string plainExtra)
    {
        static object Pair((double? Wall, double? Cpu) p) => new { wall = p.Wall, cpu = p.Cpu };
        var document = new
        {
            title = "Linux boot to TANDEM-SHELL-READY: plain Bochs against Tandem (bzImage and PVH)",
            emulator,
            cmdline,
            plainExtra,
            statistic = "seconds; plain Bochs from GRUB's hand-over, Tandem from 'vm: starting', to the marker; " +
                "judged on Bochs' CPU time when measured, else on the wall clock",
            goals = Ratios(boots).Select(r => new
            {
                label = r.GoalName,
                vcpus = r.Vcpus,
                path = r.Kind.ToString(),
                ratio = r.Value,
                wallClockRatio = r.Wall,
                onCpuTime = r.OnCpu,
                goal = "<= " + Goal.ToString(CultureInfo.InvariantCulture),
                status = r.Status,
            }),
            boots = boots.Select(b => new
            {
                path = b.Kind.ToString(),
                vcpus = b.Vcpus,
                seconds = b.Seconds(true),
                wallSeconds = b.Seconds(false),
                start = Pair(b.Start),
                handover = Pair(b.Handover),
                ready = Pair(b.Ready),
                runDir = b.RunDir,
                problem = b.Problem,
                exits = b.Exits is VmExitCounts e
                    ? new
                    {
                        status = e.Status,
                        vcpus = e.Vcpus,
                        ms = e.Milliseconds,
                        total = e.Exits,
                        eptFaults = e.EptFaults,
                        topPorts = e.TopPorts,
                        byReason = e.Reasons.ToDictionary(r => r.Reason, r => r.Count),
                    }
                    : null,
            }),
        };
        return JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }
}
