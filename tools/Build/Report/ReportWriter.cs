using System.Globalization;
using System.Net;
using System.Text;
using ScottPlot;

namespace Tandem.Build.Report;

/// <summary>One chart of the page: its PNG (null when none of its series has data) and what it lacks.</summary>
internal sealed record Chart(string Id, string Title, string Caption, string? Png, int Points, List<string> Absent);

/// <summary>What <see cref="ReportWriter.Write"/> made.</summary>
internal sealed record ReportResult(string Index, List<Chart> Charts, List<GoalRow> Goals, int HistoryEntries);

/// <summary>
/// <c>./build.sh report</c>'s page: charts of a run's stats lines (<see cref="StatsLog"/>) drawn with
/// ScottPlot into PNG files, the benchmark goals against their limits with their history, and
/// <c>index.html</c> that shows them. Only series the stats lines really carry are drawn; a series
/// whose key no line carries is named on the page as absent, never drawn from made-up numbers.
/// </summary>
internal static class ReportWriter
{
    private const double PageMiB = 4096.0 / (1 << 20);
    private const int Width = 900, Height = 380;

    /// <summary>
    /// Writes <paramref name="outDir"/>/index.html and its charts for the run <paramref name="runName"/>
    /// (<paramref name="serial"/> its serial log, <paramref name="cmdline"/> the kernel's command line
    /// and <paramref name="emulator"/> the emulator's, either null when the run folder has none), with the goal tables in <paramref name="benchFiles"/>; appends those to
    /// <paramref name="outDir"/>/history.json. Earlier charts in the folder are removed.
    /// </summary>
    public static ReportResult Write(string outDir, string runName, string serial, string? cmdline, string? emulator, IReadOnlyList<string> benchFiles, DateTime now)
    {
        Directory.CreateDirectory(outDir);
        foreach (string old in Directory.GetFiles(outDir, "*.png"))
            File.Delete(old);
        StatsLog log = StatsLog.Parse(serial);
        var charts = new List<Chart>
        {
            Resident(log, outDir),
            Generations(log, outDir),
            Evictions(log, outDir),
            Swap(log, outDir),
            Merged(log, outDir),
            Exits(log, outDir),
            Aging(log, outDir),
        };
        List<GoalRow> goals = BenchGoals.Read(benchFiles);
        List<BenchGoals.Entry> history = BenchGoals.AppendHistory(Path.Combine(outDir, "history.json"), benchFiles, goals, runName, now);
        charts.Add(GoalChart(goals, outDir));
        charts.Add(HistoryChart(goals, history, outDir));
        string index = Path.Combine(outDir, "index.html");
        File.WriteAllText(index, Html(runName, cmdline, emulator, log, charts, goals, history, benchFiles, now));
        return new ReportResult(index, charts, goals, history.Count);
    }

    /// <summary>Collects a chart's series; draws nothing when none has a point.</summary>
    private sealed class Builder(string id, string title, string caption)
    {
        public readonly Plot Plot = new();
        public readonly List<string> Absent = [];
        public int Points;
        private bool _right;

        /// <summary>Marker size of every point (0: lines only, except for a one-point series).</summary>
        public float Markers;

        public void Line((double[] X, double[] Y) s, string legend, bool right = false)
        {
            if (s.X.Length == 0)
                return;
            Points += s.X.Length;
            var sc = Plot.Add.Scatter(s.X, s.Y);
            sc.LegendText = legend;
            sc.LineWidth = 2;
            sc.MarkerSize = Markers > 0 ? Markers : s.X.Length == 1 ? 8 : 0;
            if (right)
            {
                sc.Axes.YAxis = Plot.Axes.Right;
                _right = true;
            }
        }

        public Chart Save(string outDir, string xLabel, string yLabel, string? rightLabel = null)
        {
            if (Points == 0)
                return new Chart(id, title, caption, null, 0, Absent);
            Plot.Title(title);
            Plot.XLabel(xLabel);
            Plot.YLabel(yLabel);
            if (_right && rightLabel != null)
                Plot.Axes.Right.Label.Text = rightLabel;
            Plot.ShowLegend(Alignment.UpperLeft);
            string file = id + ".png";
            Plot.SavePng(Path.Combine(outDir, file), Width, Height);
            return new Chart(id, title, caption, file, Points, Absent);
        }
    }

    private static Chart Resident(StatsLog log, string outDir)
    {
        var b = new Builder("resident", "Resident guest memory", "Per VM: resident= of its stats line (its guest RAM walked in the host address space); all guests: the mm core's resident= (pages on the LRU), and its limit= (mem.limit, 0 = none).");
        if (!log.Has(StatsKind.Vm, "resident"))
            b.Absent.Add(log.Vm.Count == 0 ? "per-VM resident memory: the run has no per-VM stats lines (they come from the monitor's 'stats on N' while VMs run)" : "per-VM resident memory: the VMs' stats lines carry no resident= key");
        foreach (int vm in log.VmIds)
            b.Line(log.Series(StatsKind.Vm, vm, "resident", PageMiB), $"vm {vm}");
        b.Line(log.Series(StatsKind.Mm, 0, "resident", PageMiB), "all guests (mm core)");
        var limit = log.Series(StatsKind.Mm, 0, "limit", PageMiB);
        if (limit.Y.Any(v => v > 0))
            b.Line(limit, "limit");
        if (!log.Has(StatsKind.Mm, "resident"))
            b.Absent.Add("all guests' resident memory: no mm stats line carries resident=");
        return b.Save(outDir, "seconds since boot (kernel time)", "MiB");
    }

    private static Chart Generations(StatsLog log, string outDir)
    {
        var b = new Builder("generations", "LRU generations per VM", "Resident pages in the youngest generation and in the older ones (gens= of each VM's line, oldest first; without per-VM lines, the mm core's gens=).");
        bool perVm = log.Has(StatsKind.Vm, "gens");
        if (!perVm)
            b.Absent.Add("per-VM generations: the run's stats lines carry no per-VM gens= (the mm core's are drawn instead)");
        IEnumerable<(StatsKind Kind, int Vm, string Name)> owners = perVm
            ? log.VmIds.Select(v => (StatsKind.Vm, v, $"vm {v}"))
            : [(StatsKind.Mm, 0, "all guests")];
        foreach (var (kind, vm, name) in owners)
        {
            var young = (X: new List<double>(), Y: new List<double>());
            var older = (X: new List<double>(), Y: new List<double>());
            foreach (StatsSample s in kind == StatsKind.Vm ? log.Vm : log.Mm)
            {
                if (s.Vm != vm || s.List("gens") is not long[] g || g.Length == 0)
                    continue;
                young.X.Add(s.Seconds);
                young.Y.Add(g[^1]);
                older.X.Add(s.Seconds);
                older.Y.Add(g.Take(g.Length - 1).Sum());
            }
            b.Line(([.. young.X], [.. young.Y]), $"{name}: youngest generation");
            b.Line(([.. older.X], [.. older.Y]), $"{name}: older generations");
        }
        if (b.Points == 0)
            b.Absent.Add("generations: no stats line carries gens=");
        return b.Save(outDir, "seconds since boot (kernel time)", "pages");
    }

    private static Chart Evictions(StatsLog log, string outDir)
    {
        var b = new Builder("evictions", "Evictions and refaults", "The mm core's counters since boot: evictions=, refaults= (an evicted page faulted back while its shadow entry was recent), swapouts=, swapins=.");
        foreach (string key in new[] { "evictions", "refaults", "swapouts", "swapins" })
        {
            if (log.Has(StatsKind.Mm, key))
                b.Line(log.Series(StatsKind.Mm, 0, key), key);
            else
                b.Absent.Add($"{key}: no mm stats line carries it" + (key.StartsWith("swap", StringComparison.Ordinal) ? " (swap=off prints no swap keys)" : ""));
        }
        return b.Save(outDir, "seconds since boot (kernel time)", "pages (cumulative)");
    }

    private static Chart Swap(StatsLog log, string outDir)
    {
        var b = new Builder("swap", "Swap pool and compression ratio", "The compressed pool's frames (pool_frames=), the pages it holds compressed and raw (compressed= + raw=), in MiB; ratio= (pages stored per pool frame) on the right axis.");
        if (!log.Has(StatsKind.Mm, "pool_frames"))
            b.Absent.Add("the swap pool: no mm stats line carries pool_frames= or ratio= (swap=off, or no mm line)");
        b.Line(log.Series(StatsKind.Mm, 0, "pool_frames", PageMiB), "pool (MiB)");
        var stored = (X: new List<double>(), Y: new List<double>());
        foreach (StatsSample s in log.Mm)
        {
            if (s.Number("compressed") is double c && s.Number("raw") is double r)
            {
                stored.X.Add(s.Seconds);
                stored.Y.Add((c + r) * PageMiB);
            }
        }
        b.Line(([.. stored.X], [.. stored.Y]), "pages stored (MiB)");
        b.Line(log.Series(StatsKind.Mm, 0, "ratio"), "compression ratio", right: true);
        return b.Save(outDir, "seconds since boot (kernel time)", "MiB", "pages per pool frame");
    }

    private static Chart Merged(StatsLog log, string outDir)
    {
        var b = new Builder("merged", "Merged pages", "The mm core's merge counters since boot (merges=, zero_merges=, cow_breaks=; ksm=on) and each VM's shared= (its pages whose frame is mapped more than once).");
        foreach (string key in new[] { "merges", "zero_merges", "cow_breaks" })
        {
            if (log.Has(StatsKind.Mm, key))
                b.Line(log.Series(StatsKind.Mm, 0, key), key);
            else
                b.Absent.Add($"{key}: no mm stats line carries it");
        }
        if (log.Has(StatsKind.Vm, "shared"))
        {
            foreach (int vm in log.VmIds)
                b.Line(log.Series(StatsKind.Vm, vm, "shared"), $"vm {vm} shared");
        }
        else
            b.Absent.Add("per-VM shared pages: no VM stats line carries shared=");
        return b.Save(outDir, "seconds since boot (kernel time)", "pages");
    }

    private static Chart Exits(StatsLog log, string outDir)
    {
        var b = new Builder("exits", "VM exits per second by reason", "The rate of each exit.REASON= counter between two samples, summed over the VMs; without reasons, each VM's exits= rate.");
        List<string> reasons = [.. log.Keys(StatsKind.Vm).Where(k => k.StartsWith("exit.", StringComparison.Ordinal)).Order(StringComparer.Ordinal)];
        if (reasons.Count == 0)
        {
            b.Absent.Add(log.Vm.Count == 0 ? "exits by reason: the run has no per-VM stats lines" : "exits by reason: the VMs' stats lines carry no exit.REASON= keys (each VM's total exits= rate is drawn)");
            foreach (int vm in log.VmIds)
                b.Line(StatsLog.Rate(log.Series(StatsKind.Vm, vm, "exits")), $"vm {vm}: all exits");
        }
        foreach (string reason in reasons)
        {
            // Each VM's rate, then the sum at the times of the samples (the VMs' lines share a t_ms).
            var sum = new SortedDictionary<double, double>();
            foreach (int vm in log.VmIds)
            {
                // A VM's line omits a reason while its count is 0: count it as 0 at every sample.
                var counter = (X: new List<double>(), Y: new List<double>());
                foreach (StatsSample s in log.Vm.Where(s => s.Vm == vm))
                {
                    counter.X.Add(s.Seconds);
                    counter.Y.Add(s.Number(reason) ?? 0);
                }
                var rate = StatsLog.Rate(([.. counter.X], [.. counter.Y]));
                for (int i = 0; i < rate.X.Length; i++)
                    sum[rate.X[i]] = sum.GetValueOrDefault(rate.X[i]) + rate.Y[i];
            }
            b.Line(([.. sum.Keys], [.. sum.Values]), reason["exit.".Length..]);
        }
        return b.Save(outDir, "seconds since boot (kernel time)", "exits per second");
    }

    private static Chart Aging(StatsLog log, string outDir)
    {
        string? timeKey = new[] { "aging_ns", "aging_us", "aging_ms" }.FirstOrDefault(k => log.Has(StatsKind.Mm, k));
        var b = new Builder("aging", timeKey != null ? "Aging-pass time" : "Aging passes (pass time absent)",
            "Aging passes per second (aging_passes=) and pages aged per second (aged=, right axis) of the mm core; the time per pass when a line carries it.");
        if (timeKey == null)
            b.Absent.Add("aging-pass time: the kernel does not measure how long an aging pass takes (the stats lines carry aging_passes= and aged=, counts only)");
        else
        {
            var passes = log.Series(StatsKind.Mm, 0, "aging_passes");
            var time = log.Series(StatsKind.Mm, 0, timeKey);
            var per = (X: new List<double>(), Y: new List<double>());
            for (int i = 1; i < Math.Min(passes.X.Length, time.X.Length); i++)
            {
                double n = passes.Y[i] - passes.Y[i - 1];
                if (n > 0)
                {
                    per.X.Add(time.X[i]);
                    per.Y.Add((time.Y[i] - time.Y[i - 1]) / n);
                }
            }
            b.Line(([.. per.X], [.. per.Y]), $"{timeKey[6..]} per pass", right: true);
        }
        b.Line(StatsLog.Rate(log.Series(StatsKind.Mm, 0, "aging_passes")), "aging passes per second");
        b.Line(StatsLog.Rate(log.Series(StatsKind.Mm, 0, "aged")), "pages aged per second", right: true);
        if (!log.Has(StatsKind.Mm, "aging_passes"))
            b.Absent.Add("aging passes: no mm stats line carries aging_passes=");
        return b.Save(outDir, "seconds since boot (kernel time)", "passes per second", timeKey != null ? $"pages per second; {timeKey[6..]} per pass" : "pages per second");
    }

    private static Chart GoalChart(List<GoalRow> goals, string outDir)
    {
        const string Caption = "Each benchmark goal's ratio as a share of its limit (ratio / limit for an at-most goal, limit / ratio for an at-least one): left of the line at 1 meets the goal.";
        List<GoalRow> drawn = [.. goals.Where(g => g.OfGoal != null)];
        var absent = new List<string>();
        if (goals.Count == 0)
            absent.Add("benchmark goals: no goal table under out/bench/*/results (run ./build.sh bench)");
        else if (drawn.Count < goals.Count)
            absent.Add($"{goals.Count - drawn.Count} goal(s) without a ratio or a limit (not run, or a contrast): in the table only");
        if (drawn.Count == 0)
            return new Chart("goals", "Benchmark ratios against their goals", Caption, null, 0, absent);
        var plot = new Plot();
        var bars = new List<Bar>();
        for (int i = 0; i < drawn.Count; i++)
        {
            double v = drawn[i].OfGoal!.Value;
            bars.Add(new Bar { Position = drawn.Count - 1 - i, Value = v, FillColor = v <= 1 ? Colors.SeaGreen : Colors.OrangeRed });
        }
        var barPlot = plot.Add.Bars(bars);
        barPlot.Horizontal = true;
        plot.Add.VerticalLine(1, 2, Colors.Black, LinePattern.Dashed);
        Tick[] ticks = [.. drawn.Select((g, i) => new Tick(drawn.Count - 1 - i, Short(g.Label, 48)))];
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks);
        plot.Axes.Left.MajorTickStyle.Length = 0;
        plot.Axes.Margins(left: 0, bottom: 0.02);
        plot.Title("Benchmark ratios against their goals");
        plot.XLabel("share of the goal's limit (1 = the goal)");
        plot.SavePng(Path.Combine(outDir, "goals.png"), Width + 300, 80 + 28 * drawn.Count);
        return new Chart("goals", "Benchmark ratios against their goals", Caption, "goals.png", drawn.Count, absent);
    }

    private static Chart HistoryChart(List<GoalRow> goals, List<BenchGoals.Entry> history, string outDir)
    {
        var b = new Builder("history", "Benchmark history", "Each goal's share of its limit in every recorded report (out/report/history.json), oldest first: 1 is the goal.");
        b.Markers = 9;
        if (history.Count == 0)
            b.Absent.Add("benchmark history: out/report/history.json has no entries yet");
        foreach (string label in goals.Select(g => g.Label).Distinct())
        {
            var xs = new List<double>();
            var ys = new List<double>();
            for (int i = 0; i < history.Count; i++)
            {
                if (history[i].Goals.FirstOrDefault(g => g.Label == label)?.OfGoal is double v)
                {
                    xs.Add(i + 1);
                    ys.Add(v);
                }
            }
            b.Line(([.. xs], [.. ys]), Short(label, 40));
        }
        if (b.Points > 0)
            b.Plot.Add.HorizontalLine(1, 2, Colors.Black, LinePattern.Dashed);
        return b.Save(outDir, "report (history entry)", "share of the goal's limit");
    }

    private static string Short(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";

    private static string H(string? s) => WebUtility.HtmlEncode(s ?? "");

    private static string F(double? v, string format = "0.###") => v is double d ? d.ToString(format, CultureInfo.InvariantCulture) : "-";

    private static string Html(string runName, string? cmdline, string? emulator, StatsLog log, List<Chart> charts, List<GoalRow> goals,
        List<BenchGoals.Entry> history, IReadOnlyList<string> benchFiles, DateTime now)
    {
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Tandem report: ").Append(H(runName)).Append("</title>\n");
        sb.Append("""
            <style>
            body { font-family: sans-serif; max-width: 1250px; margin: 1em auto; padding: 0 1em; color: #222; }
            img { max-width: 100%; border: 1px solid #ccc; }
            .absent { color: #8a4b00; background: #fff4e0; padding: 0.3em 0.6em; margin: 0.3em 0; }
            table { border-collapse: collapse; font-size: 90%; }
            td, th { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
            td.num { text-align: right; font-family: monospace; }
            .ok { color: #176b34; } .missed { color: #b3261e; font-weight: bold; }
            code { background: #f3f3f3; }
            </style>
            </head>
            <body>

            """);
        sb.Append("<h1>Tandem report</h1>\n<p>Run <code>").Append(H(runName)).Append("</code>.<br>Kernel command line: ")
          .Append(cmdline != null ? "<code>" + H(cmdline.Trim()) + "</code>" : "not kept in this run folder (cmdline.txt)").Append(".<br>");
        if (emulator != null)
            sb.Append("Emulator: <code>").Append(H(emulator.Trim())).Append("</code>.<br>");
        sb.Append("Written ").Append(now.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)).Append(" by <code>./build.sh report</code>.</p>\n");
        double first = log.Vm.Concat(log.Mm).Select(s => s.Seconds).DefaultIfEmpty().Min();
        double last = log.Vm.Concat(log.Mm).Select(s => s.Seconds).DefaultIfEmpty().Max();
        sb.Append("<p>Stats lines: ").Append(log.Vm.Count).Append(" per-VM (VMs ").Append(H(string.Join(", ", log.VmIds))).Append("), ")
          .Append(log.Mm.Count).Append(" of the mm core, from ").Append(F(first, "0.0")).Append(" s to ").Append(F(last, "0.0"))
          .Append(" s after the stats epoch (the guest's clock: under Bochs, emulated time).</p>\n");
        sb.Append("<p>Keys of the VMs' lines: <code>").Append(H(string.Join(" ", log.Keys(StatsKind.Vm)))).Append("</code><br>Keys of the mm core's lines: <code>")
          .Append(H(string.Join(" ", log.Keys(StatsKind.Mm)))).Append("</code></p>\n");
        foreach (Chart c in charts)
        {
            if (c.Id == "goals")
                sb.Append("<h2 id=\"bench\">Benchmarks</h2>\n");
            sb.Append("<section id=\"").Append(c.Id).Append("\">\n<h3>").Append(H(c.Title)).Append("</h3>\n<p>").Append(H(c.Caption)).Append("</p>\n");
            foreach (string a in c.Absent)
                sb.Append("<p class=\"absent\">Absent: ").Append(H(a)).Append("</p>\n");
            if (c.Png != null)
                sb.Append("<img class=\"chart\" src=\"").Append(H(c.Png)).Append("\" alt=\"").Append(H(c.Title)).Append("\" width=\"900\">\n");
            else
                sb.Append("<p class=\"absent\">No chart: none of its series has data in this run.</p>\n");
            sb.Append("</section>\n");
            if (c.Id == "goals" && goals.Count > 0)
            {
                sb.Append("<table>\n<tr><th>table</th><th>goal</th><th>ratio</th><th>limit</th><th>status</th></tr>\n");
                foreach (GoalRow g in goals)
                {
                    string cls = g.Status == "ok" ? "ok" : g.Status == "MISSED" ? "missed" : "";
                    sb.Append("<tr><td>").Append(H(g.Table)).Append("</td><td>").Append(H(g.Label)).Append("</td><td class=\"num\">").Append(F(g.Ratio))
                      .Append("</td><td>").Append(H(g.Goal ?? "contrast")).Append("</td><td class=\"").Append(cls).Append("\">").Append(H(g.Status)).Append("</td></tr>\n");
                }
                sb.Append("</table>\n<p>From ").Append(H(string.Join(", ", benchFiles))).Append("; ").Append(history.Count).Append(" report(s) in the history.</p>\n");
            }
        }
        sb.Append("</body>\n</html>\n");
        return sb.ToString();
    }
}
