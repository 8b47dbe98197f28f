using System.Text.Json;
using Tandem.Build.Report;
using Xunit;

namespace Tandem.Build.Tests;

/// <summary>
/// ./build.sh report (tools/Build/Report): the stats-line parser, the charts drawn only from keys
/// the lines carry, the benchmark history, and the page looked at in headless Chromium as a
/// person would: every chart image loaded, with a natural size and with drawn data (pixels of the
/// series' colours, not just axes). Data/stats-sample.log is the start of a real Bochs run's
/// serial log (two swapfill32 VMs, mem.limit=14M, ksm=on, monitor="stats on 1"), GRUB's escape
/// sequences included.
/// </summary>
public sealed class ReportTests
{
    private static string Sample => File.ReadAllText(Path.Combine(Host.RepoRoot, "tests", "host", "Tandem.Build.Tests", "Data", "stats-sample.log"));

    private static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "tandem-report-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    [Fact]
    public void ParsesTheSampleRun()
    {
        StatsLog log = StatsLog.Parse(Sample);
        Assert.Equal([1, 2], log.VmIds);
        Assert.Equal(log.Vm.Count / 2, log.Mm.Count);
        Assert.True(log.Mm.Count >= 10, $"{log.Mm.Count} mm samples");
        Assert.Contains("exit.ept-violation", log.Keys(StatsKind.Vm));
        Assert.Contains("ratio", log.Keys(StatsKind.Mm));
        StatsSample first = log.Vm[0];
        Assert.Equal(0.068, first.Seconds, 6);
        Assert.Equal("running", first.Values["state"]);
        Assert.Equal([2L], first.List("gens")!);
        // The acknowledgement line quotes the format but is no sample; times only go forward.
        Assert.DoesNotContain(log.Vm, s => s.Values.ContainsKey("every"));
        Assert.True(log.Mm.Zip(log.Mm.Skip(1)).All(p => p.First.Seconds <= p.Second.Seconds));
    }

    [Fact]
    public void ParsesBothMmSpellingsAndSkipsOtherLines()
    {
        string serial = "\x1b[H\x1b[Jmmstats t_ms=2000 free=5 resident=7 gens=1/2/3\r\n" +
            "reclaim: after swapfill32: t_ms=5 free=1\r\n" +
            "stats: on, every 1 s: a line per VM (stats t_ms= vm= ...) and one for the mm core (stats mm ...)\r\n" +
            "[vm 1] stats t_ms=oops\r\n" +
            "stats mm t_ms=1000 free=6 resident=8 ratio=2.50\r\n";
        StatsLog log = StatsLog.Parse(serial);
        Assert.Empty(log.Vm);
        Assert.Equal(2, log.Mm.Count);
        Assert.Equal(1.0, log.Mm[0].Seconds);
        Assert.Equal(2.5, log.Mm[0].Number("ratio"));
        Assert.Equal([1L, 2L, 3L], log.Mm[1].List("gens")!);
        Assert.Null(log.Mm[1].Number("ratio"));
    }

    [Fact]
    public void RatesAreDifferencesOverTime()
    {
        var rate = StatsLog.Rate(([0.0, 1.0, 1.0, 3.0], [10.0, 20.0, 25.0, 45.0]));
        Assert.Equal([1.0, 3.0], rate.X);
        Assert.Equal([10.0, 10.0], rate.Y);
    }

    [Fact]
    public void AbsentKeysAreNamedNotDrawn()
    {
        // An mmstats= run: no VM lines, so nothing per VM and no exits; the aging time is never measured.
        string serial = string.Concat(Enumerable.Range(1, 5).Select(i =>
            $"mmstats t_ms={i * 1000} free=100 resident={i * 10} limit=0 gens=1/{i} aging_passes={i} aged={i * 5} lookaround_promotions=0 evictions={i} refaults=0 merges=0 zero_merges=0 cow_breaks=0\n"));
        string dir = TempDir();
        try
        {
            ReportResult r = ReportWriter.Write(dir, "mm-only", serial, null, null, [], DateTime.UnixEpoch);
            Chart exits = r.Charts.Single(c => c.Id == "exits");
            Assert.Null(exits.Png);
            Assert.False(File.Exists(Path.Combine(dir, "exits.png")));
            Chart swap = r.Charts.Single(c => c.Id == "swap");
            Assert.Null(swap.Png);
            Assert.Contains(swap.Absent, a => a.Contains("pool_frames"));
            Chart resident = r.Charts.Single(c => c.Id == "resident");
            Assert.Equal(5, resident.Points);                     // the mm core's resident only; limit 0 is not drawn
            Assert.Contains(resident.Absent, a => a.Contains("per-VM"));
            Assert.Contains(r.Charts.Single(c => c.Id == "aging").Absent, a => a.Contains("aging-pass time"));
            string html = File.ReadAllText(r.Index);
            Assert.Contains("Absent: aging-pass time", html);
            Assert.DoesNotContain("exits.png", html);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void HistoryGrowsOncePerBenchResult()
    {
        string dir = TempDir();
        try
        {
            string goals = WriteGoalTable(dir, 1.2);
            ReportResult a = ReportWriter.Write(dir, "one", Sample, null, null, [goals], DateTime.UnixEpoch);
            ReportResult b = ReportWriter.Write(dir, "two", Sample, null, null, [goals], DateTime.UnixEpoch);
            Assert.Equal(1, a.HistoryEntries);
            Assert.Equal(1, b.HistoryEntries);                    // the same results are not appended twice
            File.SetLastWriteTimeUtc(goals, DateTime.UtcNow.AddMinutes(1));
            ReportResult c = ReportWriter.Write(dir, "three", Sample, null, null, [goals], DateTime.UnixEpoch);
            Assert.Equal(2, c.HistoryEntries);
            using JsonDocument history = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "history.json")));
            Assert.Equal(2, history.RootElement.GetArrayLength());
            Assert.Equal(1.2, history.RootElement[1].GetProperty("Goals")[0].GetProperty("Ratio").GetDouble());
            GoalRow row = c.Goals[0];
            Assert.Equal(0.8, row.OfGoal!.Value, 6);              // 1.2 against "<= 1.5"
            Assert.Equal(2.0, c.Goals[1].OfGoal!.Value, 6);       // 0.35 against ">= 0.7": missed, beyond 1
            Assert.Null(c.Goals[2].OfGoal);                       // a contrast has no goal
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static string WriteGoalTable(string dir, double ratio)
    {
        string results = Path.Combine(dir, "bench", "results");
        Directory.CreateDirectory(results);
        string file = Path.Combine(results, "Sample-goals.json");
        File.WriteAllText(file, $$"""
            {"title": "sample", "goals": [
              {"label": "aging with look-around / without", "ratio": {{ratio}}, "goal": "<= 1.5", "status": "ok"},
              {"label": "hot set throughput limited / unlimited", "ratio": 0.35, "goal": ">= 0.7", "status": "MISSED"},
              {"label": "wall-clock contrast", "ratio": 1.1, "goal": null, "status": "contrast"}
            ]}
            """);
        return file;
    }

    /// <summary>
    /// The page as a browser shows it: headless Chromium loads a copy of index.html with a script
    /// that, once the page has loaded, reads every img's state and pixels and leaves them as JSON
    /// in the DOM, which --dump-dom prints. Each chart must have loaded with a natural size and
    /// hold at least 100 pixels of strong colour (the series; axes, text and grid are grey).
    /// </summary>
    [FactWithChromium]
    public void EveryChartLoadsWithDataInChromium()
    {
        string dir = TempDir();
        try
        {
            string goals = WriteGoalTable(dir, 1.2);
            ReportResult r = ReportWriter.Write(dir, "sample", Sample, "vm=swapfill32,mem=32M", null, [goals], DateTime.UnixEpoch);
            List<Chart> drawn = [.. r.Charts.Where(c => c.Png != null)];
            Assert.True(drawn.Count >= 8, $"only {drawn.Count} charts drawn from the sample: {string.Join(", ", r.Charts.Where(c => c.Png == null).Select(c => c.Id))} missing");
            string page = File.ReadAllText(r.Index).Replace("</body>", CheckScript + "</body>");
            string check = Path.Combine(dir, "check.html");
            File.WriteAllText(check, page);
            var result = Host.Run(Chromium!, ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                "--user-data-dir=" + Path.Combine(dir, "profile"), "--virtual-time-budget=10000", "--dump-dom", new Uri(check).AbsoluteUri], timeoutSeconds: 120);
            Assert.True(result.Code == 0, $"chromium exited {result.Code}: {result.Stderr}");
            int at = result.Stdout.IndexOf("<pre id=\"tandem-check\">", StringComparison.Ordinal);
            Assert.True(at >= 0, "the check script left no result (did the page load?):\n" + result.Stdout[..Math.Min(2000, result.Stdout.Length)]);
            string json = System.Net.WebUtility.HtmlDecode(result.Stdout[(at + "<pre id=\"tandem-check\">".Length)..result.Stdout.IndexOf("</pre>", at, StringComparison.Ordinal)]);
            using JsonDocument doc = JsonDocument.Parse(json);
            var seen = new List<string>();
            foreach (JsonElement img in doc.RootElement.EnumerateArray())
            {
                string src = img.GetProperty("src").GetString()!;
                seen.Add(src);
                Assert.True(img.GetProperty("error").ValueKind == JsonValueKind.Null, $"{src}: {img.GetProperty("error")}");
                Assert.True(img.GetProperty("complete").GetBoolean(), $"{src} did not finish loading");
                Assert.True(img.GetProperty("w").GetInt32() > 0 && img.GetProperty("h").GetInt32() > 0, $"{src} has no natural size (not loaded)");
                Assert.True(img.GetProperty("colored").GetInt32() >= 100, $"{src} holds {img.GetProperty("colored").GetInt32()} pixels of series colour: a chart without data");
            }
            Assert.Equal(drawn.Select(c => c.Png!).Order(), seen.Order());
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>Chromium on the PATH (Debian's chromium), or null.</summary>
    internal static string? Chromium => Host.Which("chromium") ?? Host.Which("chromium-browser");

    private const string CheckScript = """
        <script>
        window.addEventListener('load', () => {
          const out = [];
          for (const img of document.querySelectorAll('img')) {
            const r = { src: img.getAttribute('src'), complete: img.complete, w: img.naturalWidth, h: img.naturalHeight, colored: 0, error: null };
            try {
              const c = document.createElement('canvas');
              c.width = img.naturalWidth; c.height = img.naturalHeight;
              const g = c.getContext('2d');
              g.drawImage(img, 0, 0);
              const d = g.getImageData(0, 0, c.width, c.height).data;
              for (let i = 0; i < d.length; i += 4) {
                const hi = Math.max(d[i], d[i + 1], d[i + 2]), lo = Math.min(d[i], d[i + 1], d[i + 2]);
                if (hi - lo > 60) r.colored++;
              }
            } catch (e) { r.error = String(e); }
            out.push(r);
          }
          const pre = document.createElement('pre');
          pre.id = 'tandem-check';
          pre.textContent = JSON.stringify(out);
          document.body.appendChild(pre);
        });
        </script>

        """;
}

/// <summary>A fact that needs Chromium: without it the test is reported SKIPPED, never passed.</summary>
public sealed class FactWithChromiumAttribute : FactAttribute
{
    public FactWithChromiumAttribute()
    {
        if (ReportTests.Chromium == null)
            Skip = "SKIPPED, NOT PASSED: chromium is not on the PATH (Debian package chromium; ./build.sh test installs it as root)";
    }
}
