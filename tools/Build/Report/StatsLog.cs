using System.Globalization;
using System.Text.RegularExpressions;

namespace Tandem.Build.Report;

/// <summary>Which kernel line a sample came from: a VM's (<c>stats t_ms= vm=N ...</c>) or the mm core's (<c>stats mm ...</c>, <c>mmstats ...</c>).</summary>
internal enum StatsKind
{
    Vm,
    Mm,
}

/// <summary>
/// One stats line: its kind, its VM (0 for the mm core's), its time in seconds since the kernel's
/// stats epoch (<c>t_ms</c>), and every key=value pair as printed.
/// </summary>
internal sealed record StatsSample(StatsKind Kind, int Vm, double Seconds, IReadOnlyDictionary<string, string> Values)
{
    /// <summary>The value of <paramref name="key"/> as a number, or null when the line does not carry it (or it is not a number).</summary>
    public double? Number(string key) =>
        Values.TryGetValue(key, out string? text) && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : null;

    /// <summary>A '/'-separated list such as <c>gens=128/79/2659</c> (oldest first), or null.</summary>
    public long[]? List(string key)
    {
        if (!Values.TryGetValue(key, out string? text) || text.Length == 0)
            return null;
        string[] parts = text.Split('/');
        var values = new long[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!long.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out values[i]))
                return null;
        }
        return values;
    }
}

/// <summary>
/// The stats lines of a serial log: the monitor's <c>stats on N</c> (a line per VM, then
/// <c>stats mm ...</c>) and the command line's <c>mmstats=N</c> (<c>mmstats ...</c>), as
/// kernel/Monitor/MonitorShell.cs and kernel/Memory/KernelReclaim.cs print them (docs/monitor.md).
/// Every other line is ignored, including GRUB's escape sequences and lines that merely quote the
/// format (such as the <c>stats: on, every ...</c> acknowledgement).
/// </summary>
internal sealed partial class StatsLog
{
    /// <summary>The VMs' samples, in the order printed.</summary>
    public List<StatsSample> Vm { get; } = [];

    /// <summary>The mm core's samples (both spellings), sorted by time.</summary>
    public List<StatsSample> Mm { get; } = [];

    /// <summary>True when the log held at least one stats line.</summary>
    public bool Any => Vm.Count + Mm.Count > 0;

    /// <summary>The VM ids that have samples, ascending.</summary>
    public IReadOnlyList<int> VmIds => [.. Vm.Select(s => s.Vm).Distinct().Order()];

    /// <summary>The keys seen on lines of <paramref name="kind"/>, in first-seen order.</summary>
    public IReadOnlyList<string> Keys(StatsKind kind) =>
        [.. (kind == StatsKind.Vm ? Vm : Mm).SelectMany(s => s.Values.Keys).Distinct()];

    /// <summary>True when some line of <paramref name="kind"/> carries <paramref name="key"/>.</summary>
    public bool Has(StatsKind kind, string key) => (kind == StatsKind.Vm ? Vm : Mm).Any(s => s.Values.ContainsKey(key));

    /// <summary>Parses a whole serial log.</summary>
    public static StatsLog Parse(string serial)
    {
        var log = new StatsLog();
        foreach (string raw in serial.Split('\n'))
        {
            string line = Escapes().Replace(raw, "").TrimEnd('\r', ' ');
            Match m = Line().Match(line);
            if (!m.Success)
                continue;
            var values = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (string pair in m.Groups["pairs"].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                int eq = pair.IndexOf('=');
                if (eq > 0)
                    values[pair[..eq]] = pair[(eq + 1)..];
            }
            if (!values.TryGetValue("t_ms", out string? ms) || !long.TryParse(ms, NumberStyles.None, CultureInfo.InvariantCulture, out long t))
                continue;
            bool mm = m.Groups["kind"].Value != "stats";
            if (mm)
                log.Mm.Add(new StatsSample(StatsKind.Mm, 0, t / 1000.0, values));
            else if (values.TryGetValue("vm", out string? id) && int.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out int vm))
                log.Vm.Add(new StatsSample(StatsKind.Vm, vm, t / 1000.0, values));
        }
        // mmstats= (the reclaimer thread) and stats on (the monitor thread) may both print: one series by time.
        log.Mm.Sort((a, b) => a.Seconds.CompareTo(b.Seconds));
        return log;
    }

    /// <summary>
    /// A key's values over time for one VM (or the mm core with <paramref name="vm"/> 0): x in
    /// seconds, y the value times <paramref name="scale"/>; empty when no line carries the key.
    /// </summary>
    public (double[] X, double[] Y) Series(StatsKind kind, int vm, string key, double scale = 1)
    {
        var xs = new List<double>();
        var ys = new List<double>();
        foreach (StatsSample s in kind == StatsKind.Vm ? Vm : Mm)
        {
            if (s.Vm != vm || s.Number(key) is not double v)
                continue;
            xs.Add(s.Seconds);
            ys.Add(v * scale);
        }
        return ([.. xs], [.. ys]);
    }

    /// <summary>
    /// The per-second rate of a counter (the difference between two samples over their time apart),
    /// at the later sample's time; pairs whose time did not advance are skipped.
    /// </summary>
    public static (double[] X, double[] Y) Rate((double[] X, double[] Y) counter)
    {
        var xs = new List<double>();
        var ys = new List<double>();
        for (int i = 1; i < counter.X.Length; i++)
        {
            double dt = counter.X[i] - counter.X[i - 1];
            if (dt <= 0)
                continue;
            xs.Add(counter.X[i]);
            ys.Add(Math.Max(0, counter.Y[i] - counter.Y[i - 1]) / dt);
        }
        return ([.. xs], [.. ys]);
    }

    // GRUB's ANSI sequences (and any other CSI) in the serial file.
    [GeneratedRegex(@"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]")]
    private static partial Regex Escapes();

    // "stats t_ms=... vm=...", "stats mm t_ms=...", "mmstats t_ms=...", possibly after a log prefix
    // such as a timestamp; the pairs run to the end of the line.
    [GeneratedRegex(@"(?:^|\s)(?<kind>stats mm|mmstats|stats)\s+(?<pairs>t_ms=\d+(?:\s+[A-Za-z_][A-Za-z0-9_.\-]*=\S*)*)$")]
    private static partial Regex Line();
}
