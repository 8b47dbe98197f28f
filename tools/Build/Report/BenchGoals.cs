using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Tandem.Build.Report;

/// <summary>
/// One goal of a benchmark's JSON goal table (out/bench/PROJECT/results/*.json, written by
/// tests/bench/Shared/BenchReport.cs and tools/Build/LinuxBenchReport.cs): its ratio against the
/// goal's limit (<c>"&lt;= 1.5"</c>, <c>"&gt;= 0.7"</c>), and the status the benchmark gave it.
/// </summary>
internal sealed record GoalRow(string Table, string Label, double? Ratio, string? Goal, string Status)
{
    /// <summary>The goal's limit, or null for a contrast printed without one.</summary>
    public double? Limit => Goal is { Length: > 3 } g && double.TryParse(g[3..], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : null;

    /// <summary>True for an at-most goal (<c>&lt;=</c>), false for an at-least one.</summary>
    public bool AtMost => Goal == null || !Goal.StartsWith(">=", StringComparison.Ordinal);

    /// <summary>
    /// The ratio as a share of its goal, oriented so that 1 is the goal and below 1 meets it
    /// (ratio/limit for an at-most goal, limit/ratio for an at-least one); null without both.
    /// </summary>
    public double? OfGoal => Ratio is double r && Limit is double l && l > 0 && r > 0 ? (AtMost ? r / l : l / r) : null;
}

/// <summary>The benchmark goal tables a report shows, and the history of earlier reports' tables (out/report/history.json).</summary>
internal static class BenchGoals
{
    /// <summary>Reads every goal of the JSON files given (files without a <c>goals</c> array, such as BenchmarkDotNet's own reports, are skipped).</summary>
    public static List<GoalRow> Read(IEnumerable<string> files)
    {
        var rows = new List<GoalRow>();
        foreach (string file in files)
        {
            JsonNode? doc;
            try
            {
                doc = JsonNode.Parse(File.ReadAllText(file));
            }
            catch (JsonException)
            {
                continue;
            }
            if (doc is not JsonObject o || o["goals"] is not JsonArray goals)
                continue;
            string table = o["title"]?.GetValue<string>() ?? Path.GetFileNameWithoutExtension(file);
            foreach (JsonNode? g in goals)
            {
                if (g is not JsonObject row || row["label"]?.GetValue<string>() is not string label)
                    continue;
                rows.Add(new GoalRow(table, label, Double(row["ratio"]), row["goal"]?.GetValue<string>(), row["status"]?.GetValue<string>() ?? ""));
            }
        }
        return rows;
    }

    private static double? Double(JsonNode? n) => n is JsonValue v && v.TryGetValue(out double d) && !double.IsNaN(d) ? d : null;

    /// <summary>One report's benchmark figures in the history: when, from which files (path and time written), the rows.</summary>
    internal sealed record Entry(string Recorded, string Run, List<string> Sources, List<GoalRow> Goals);

    /// <summary>
    /// Appends the goals to <paramref name="historyPath"/> unless an entry with the same source
    /// files (path and time written) is already there, and returns the whole history, oldest first.
    /// A history file that does not parse is kept aside as history.json.bad and a new one begun.
    /// </summary>
    public static List<Entry> AppendHistory(string historyPath, IReadOnlyList<string> files, List<GoalRow> goals, string run, DateTime now)
    {
        var history = new List<Entry>();
        if (File.Exists(historyPath))
        {
            try
            {
                history = JsonSerializer.Deserialize<List<Entry>>(File.ReadAllText(historyPath)) ?? [];
            }
            catch (JsonException)
            {
                File.Move(historyPath, historyPath + ".bad", overwrite: true);
            }
        }
        if (goals.Count == 0)
            return history;
        List<string> sources = [.. files.Order(StringComparer.Ordinal)
            .Select(f => $"{f} {File.GetLastWriteTimeUtc(f).ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)}")];
        if (!history.Any(e => e.Sources.SequenceEqual(sources)))
        {
            history.Add(new Entry(now.ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture), run, sources, goals));
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(historyPath))!);
            File.WriteAllText(historyPath, JsonSerializer.Serialize(history, new JsonSerializerOptions
            {
                WriteIndented = true,
                Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            }) + "\n");
        }
        return history;
    }
}
