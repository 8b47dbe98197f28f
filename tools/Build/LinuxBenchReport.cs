using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Tandem.Build;

/// <summary>Which way the Linux bench booted the kernel.</summary>
internal enum LinuxBootKind { Plain, BzImage, Pvh }

/// <summary>
/// The three clocks of the Linux bench. <see cref="Cpu"/>: seconds of CPU time the Bochs process had
/// used (utime + stime), which is what the wall clock would show on an idle machine, since Bochs
/// emulates every CPU on one host thread. <see cref="Wall"/>: the driver's timestamps of the serial
/// lines, from the emulator's start. <see cref="Emulated"/>: Bochs' own time (its ticks, ips per
/// second) when the line's last byte went to COM1, the same from run to run.
/// </summary>
internal enum BenchClock { Cpu, Wall, Emulated }

/// <summary>One moment of a boot in each clock (null where it was not seen).</summary>
internal readonly record struct Moment(double? Cpu, double? Wall, double? Emulated)
{
    public double? In(BenchClock clock) => clock switch
    {
        BenchClock.Cpu => Cpu,
        BenchClock.Wall => Wall,
        _ => Emulated,
    };
}

/// <summary>
/// One boot of the Linux bench (<see cref="LinuxBench"/>) and the moments it reached:
/// <see cref="Start"/> is the emulator's start for plain Bochs (0 in every clock) and the kernel's
/// "vm: starting" line for Tandem; <see cref="Handover"/> is GRUB's last line before it boots Linux
/// (plain Bochs only); <see cref="Ready"/> is the guest's TANDEM-SHELL-READY.
/// </summary>
internal sealed class LinuxBoot(LinuxBootKind kind, int vcpus)
{
    public LinuxBootKind Kind { get; } = kind;
    public int Vcpus { get; } = vcpus;
    public Moment Start { get; set; }
    public Moment Handover { get; set; }
    public Moment Ready { get; set; }
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

    /// <summary>Where <see cref="Seconds"/> starts.</summary>
    public string From => Kind == LinuxBootKind.Plain ? "GRUB's hand-over" : "'vm: starting'";

    /// <summary>The figure compared: plain from GRUB's hand-over, Tandem from "vm: starting", to the marker.</summary>
    public double? Seconds(BenchClock c) => Span(Kind == LinuxBootKind.Plain ? Handover : Start, Ready, c);

    /// <summary>From the emulator's start to the marker.</summary>
    public double? Total(BenchClock c) => Ready.In(c);

    /// <summary>From the emulator's start to <see cref="Handover"/> (plain) or <see cref="Start"/> (Tandem).</summary>
    public double? BeforeGuest(BenchClock c) => (Kind == LinuxBootKind.Plain ? Handover : Start).In(c);

    private static double? Span(Moment from, Moment to, BenchClock c)
    {
        double? a = from.In(c), b = to.In(c);
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
/// part has no I/O, so host tests can check it). A goal is judged on Bochs' CPU time when the
/// watcher saw it (the wall time of an otherwise idle machine), else on the wall clock; the other
/// clocks are shown beside it.
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

    [GeneratedRegex(@"^(\d+)d\[SER\s*\] com1 register write to\s+address: 0x0*3f([8b]) = 0x([0-9a-fA-F]+)")]
    private static partial Regex SerialWrite();

    /// <summary>
    /// The emulated seconds at which each of <paramref name="marks"/> was first written to COM1,
    /// from a bochs.log written with <c>debug: action=ignore, serial=report</c>: Bochs logs every
    /// COM1 register access with its tick count, so the writes to the transmit register (0x3F8
    /// while the line control register's DLAB bit is clear) give the output byte by byte; a mark
    /// is at the tick of its last byte. Null for a mark never written.
    /// </summary>
    public static double?[] EmulatedSecondsAt(IEnumerable<string> bochsLog, IReadOnlyList<string> marks, double ticksPerSecond)
    {
        var text = new System.Text.StringBuilder();
        var ticks = new List<long>();
        bool dlab = false;
        foreach (string line in bochsLog)
        {
            Match m = SerialWrite().Match(line);
            if (!m.Success)
                continue;
            int value = Convert.ToInt32(m.Groups[3].Value, 16);
            if (m.Groups[2].Value == "b")
                dlab = (value & 0x80) != 0;
            else if (!dlab)
            {
                text.Append((char)value);
                ticks.Add(long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
            }
        }
        string output = text.ToString();
        return marks.Select(mark =>
        {
            int at = output.IndexOf(mark, StringComparison.Ordinal);
            return at < 0 ? (double?)null : ticks[at + mark.Length - 1] / ticksPerSecond;
        }).ToArray();
    }

    /// <summary>Tandem / plain in each clock; <see cref="Value"/> is the judged one (CPU, else wall).</summary>
    public sealed record Ratio(int Vcpus, LinuxBootKind Kind, double? Cpu, double? Wall, double? Emulated)
    {
        public double? Value => Cpu ?? Wall;
        public bool OnCpu => Cpu.HasValue;
        public string Status => Value == null ? "NOT RUN" : Value.Value <= Goal ? "ok" : "MISSED";
        public string GoalName => $"linux_{(Kind == LinuxBootKind.Pvh ? "pvh" : "bzimage")}_{Vcpus}vcpu";
    }

    private static LinuxBoot? Find(IReadOnlyList<LinuxBoot> boots, LinuxBootKind kind, int vcpus) =>
        boots.FirstOrDefault(b => b.Kind == kind && b.Vcpus == vcpus);

    /// <summary>Tandem / plain for each vCPU count and Tandem path; "NOT RUN" where a figure is missing.</summary>
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
                double? R(BenchClock c) => Divide(tandem.Seconds(c), plain?.Seconds(c));
                ratios.Add(new Ratio(vcpus, kind, R(BenchClock.Cpu), R(BenchClock.Wall), R(BenchClock.Emulated)));
            }
        }
        return ratios;
    }

    /// <summary>A goal missed or not measured.</summary>
    public static bool Failed(IReadOnlyList<LinuxBoot> boots) => Ratios(boots).Any(r => r.Status != "ok");

    private static double? Divide(double? a, double? b) => a.HasValue && b.HasValue && b.Value > 0 ? a.Value / b.Value : null;

    /// <summary>
    /// The table: a row per boot, grouped by vCPU count, each with its seconds in the three clocks
    /// and, for Tandem, its ratio to plain Bochs against the goal; after each group the faster
    /// Tandem path and plain Bochs' time before GRUB's hand-over; then the Tandem runs' exit counts.
    /// </summary>
    public static List<string> Table(IReadOnlyList<LinuxBoot> boots)
    {
        List<Ratio> ratios = Ratios(boots);
        var lines = new List<string>
        {
            "seconds to TANDEM-SHELL-READY from GRUB's hand-over (plain Bochs) or from 'vm: starting' (Tandem): Bochs' CPU time (the goal's clock; " +
                "the wall time of an idle machine), the wall clock, and Bochs' emulated time; ratio = Tandem / plain as CPU [wall] {emulated}, goal <= " +
                Goal.ToString("0.0", CultureInfo.InvariantCulture),
        };
        var rows = new List<string[]> { new[] { "vcpus", "boot", "CPU s", "wall s", "emulated s", "Tandem / plain", "goal" } };
        var after = new Dictionary<int, List<string>>();
        foreach (int vcpus in boots.Select(b => b.Vcpus).Distinct().Order())
        {
            foreach (LinuxBoot b in boots.Where(b => b.Vcpus == vcpus).OrderBy(b => b.Kind))
            {
                Ratio? r = ratios.FirstOrDefault(x => x.Vcpus == vcpus && x.Kind == b.Kind);
                rows.Add(
                [
                    vcpus.ToString(CultureInfo.InvariantCulture), b.Label,
                    S(b.Seconds(BenchClock.Cpu)), S(b.Seconds(BenchClock.Wall)), S(b.Seconds(BenchClock.Emulated), "F2"),
                    r == null ? "" : $"{X(r.Cpu)} [{X(r.Wall)}] {{{X(r.Emulated)}}}",
                    r == null ? "" : r.Status,
                ]);
            }
            var notes = new List<string>();
            string? faster = Faster(Find(boots, LinuxBootKind.BzImage, vcpus), Find(boots, LinuxBootKind.Pvh, vcpus));
            if (faster != null)
                notes.Add($"  {vcpus} vCPU{(vcpus == 1 ? "" : "s")}: faster: {faster}");
            if (Find(boots, LinuxBootKind.Plain, vcpus) is LinuxBoot p && p.Ready.Wall.HasValue)
            {
                notes.Add($"  {vcpus} vCPU{(vcpus == 1 ? "" : "s")}: plain Bochs from the emulator's start: GRUB's hand-over at {Three(p, b => b.BeforeGuest)}, " +
                    $"the marker at {Three(p, b => b.Total)} (CPU [wall] {{emulated}} s)");
            }
            after[vcpus] = notes;
        }
        int[] widths = Enumerable.Range(0, rows[0].Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
        foreach (string[] row in rows)
            lines.Add(string.Join(" | ", row.Select((cell, c) => c is 1 or 5 or 6 ? cell.PadRight(widths[c]) : cell.PadLeft(widths[c]))).TrimEnd());
        foreach (var (_, notes) in after.OrderBy(kv => kv.Key))
            lines.AddRange(notes);
        var tandem = boots.Where(b => b.Kind != LinuxBootKind.Plain).ToList();
        if (tandem.Count > 0)
        {
            lines.Add("exits of the Tandem runs (whole VM: boot, shell, poweroff -f; the kernel's 'vm N: exit status' line), top 3 reasons:");
            foreach (LinuxBoot b in tandem)
            {
                string what = $"  {b.Label}, {b.Vcpus} vCPU{(b.Vcpus == 1 ? "" : "s")}: ";
                lines.Add(what + (b.Exits is VmExitCounts e
                    ? $"{e.Exits} exits, top {e.Top(3)}; {e.EptFaults} EPT faults; VM time {e.Milliseconds} ms, status {e.Status}" + (e.TopPorts != null ? $"; top ports {e.TopPorts}" : "")
                    : "no exit line (" + (b.Problem ?? "the VM did not end") + ")"));
            }
        }
        foreach (LinuxBoot b in boots.Where(b => b.Problem != null && (b.Kind == LinuxBootKind.Plain || b.Exits != null)))
            lines.Add($"  {b.Label}, {b.Vcpus} vCPU{(b.Vcpus == 1 ? "" : "s")}: {b.Problem}");
        return lines;
    }

    private static string Three(LinuxBoot b, Func<LinuxBoot, Func<BenchClock, double?>> at) =>
        $"{S(at(b)(BenchClock.Cpu))} [{S(at(b)(BenchClock.Wall))}] {{{S(at(b)(BenchClock.Emulated), "F2")}}}";

    private static string S(double? seconds, string format = "F1") => seconds.HasValue ? seconds.Value.ToString(format, CultureInfo.InvariantCulture) : "-";

    private static string X(double? ratio) => ratio.HasValue ? ratio.Value.ToString("F2", CultureInfo.InvariantCulture) + "x" : "-";

    /// <summary>The faster Tandem path in each clock that has both figures, e.g. "PVH by 8.6 s CPU (28 %), 3.10 s emulated (24 %)".</summary>
    private static string? Faster(LinuxBoot? bz, LinuxBoot? pvh)
    {
        var parts = new List<string>();
        foreach (BenchClock c in new[] { BenchClock.Cpu, BenchClock.Wall, BenchClock.Emulated })
        {
            double? a = bz?.Seconds(c), b = pvh?.Seconds(c);
            if (a == null || b == null)
                continue;
            string clock = c.ToString().ToLowerInvariant();
            double less = Math.Abs(a.Value - b.Value);
            string name = a.Value == b.Value ? "same" : a.Value < b.Value ? "bzImage" : "PVH";
            parts.Add($"{name} by {S(less, c == BenchClock.Emulated ? "F2" : "F1")} s {clock} ({less / Math.Max(a.Value, b.Value) * 100:F0} %)");
        }
        return parts.Count == 0 ? null : string.Join(", ", parts);
    }

    private static string PathName(LinuxBootKind kind) => kind switch
    {
        LinuxBootKind.Plain => "plain",
        LinuxBootKind.BzImage => "bzImage",
        _ => "PVH",
    };

    /// <summary>Every figure as JSON (out/bench/linux/results/linux-boot.json).</summary>
    public static string Json(IReadOnlyList<LinuxBoot> boots, string emulator, string cmdline, string plainExtra)
    {
        static object Pair(Moment m) => new { cpu = m.Cpu, wall = m.Wall, emulated = m.Emulated };
        var document = new
        {
            title = "Linux boot to TANDEM-SHELL-READY: plain Bochs against Tandem (bzImage and PVH)",
            emulator,
            cmdline,
            plainExtra,
            statistic = "seconds; plain Bochs from GRUB's hand-over, Tandem from 'vm: starting', to the marker; " +
                "judged on Bochs' CPU time when measured, else on the wall clock; emulated = Bochs' ticks / ips",
            goals = Ratios(boots).Select(r => new
            {
                label = r.GoalName,
                vcpus = r.Vcpus,
                path = PathName(r.Kind),
                ratio = r.Value,
                onCpuTime = r.OnCpu,
                cpuRatio = r.Cpu,
                wallClockRatio = r.Wall,
                emulatedRatio = r.Emulated,
                goal = "<= " + Goal.ToString(CultureInfo.InvariantCulture),
                status = r.Status,
            }),
            boots = boots.Select(b => new
            {
                path = PathName(b.Kind),
                vcpus = b.Vcpus,
                from = b.From,
                seconds = b.Seconds(BenchClock.Cpu),
                wallSeconds = b.Seconds(BenchClock.Wall),
                emulatedSeconds = b.Seconds(BenchClock.Emulated),
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
        // Relaxed escaping: the quotes and '<=' stay readable (the file is only ever read as JSON).
        var options = new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        return JsonSerializer.Serialize(document, options) + "\n";
    }
}
