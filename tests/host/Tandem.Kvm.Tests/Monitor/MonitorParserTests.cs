using System;
using System.Diagnostics;
using System.Linq;
using System.Text;
using System.Threading;
using CsCheck;
using Tandem.Kvm.Monitor;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kvm.Tests.Monitor;

/// <summary>The monitor's command parser (kvm/Monitor/MonitorCommand.cs, docs/monitor.md).</summary>
public sealed class MonitorParserTests
{
    private readonly ITestOutputHelper _out;
    public MonitorParserTests(ITestOutputHelper output) { _out = output; }

    private static MonitorCommand Parse(string line) => MonitorParser.Parse(Encoding.Latin1.GetBytes(line));

    [Theory]
    [InlineData("help", MonitorVerb.Help)]
    [InlineData("?", MonitorVerb.Help)]
    [InlineData("info vms", MonitorVerb.InfoVms)]
    [InlineData("info vcpus", MonitorVerb.InfoVcpus)]
    [InlineData("info mem", MonitorVerb.InfoMem)]
    [InlineData("info exits", MonitorVerb.InfoExits)]
    [InlineData("info aging", MonitorVerb.InfoAging)]
    [InlineData("info swap", MonitorVerb.InfoSwap)]
    [InlineData("INFO  VMS\r\n", MonitorVerb.InfoVms)]
    [InlineData("\tinfo\tmem ", MonitorVerb.InfoMem)]
    [InlineData("stats off", MonitorVerb.StatsOff)]
    [InlineData("", MonitorVerb.Empty)]
    [InlineData("   ", MonitorVerb.Empty)]
    public void CommandsWithoutArgumentsParse(string line, MonitorVerb verb)
    {
        MonitorCommand c = Parse(line);
        Assert.True(c.Ok, c.ErrorText);
        Assert.Null(c.ErrorText);
        Assert.Equal(verb, c.Verb);
        Assert.Equal(0, c.Vm);
    }

    [Theory]
    [InlineData("pause 3", MonitorVerb.Pause, 3)]
    [InlineData("resume 12", MonitorVerb.Resume, 12)]
    [InlineData("cont 12", MonitorVerb.Resume, 12)]
    [InlineData("stop 1", MonitorVerb.Stop, 1)]
    [InlineData("focus 1000000", MonitorVerb.Focus, 1000000)]
    [InlineData("move 2", MonitorVerb.Move, 2)]
    [InlineData("MIGRATE 5", MonitorVerb.Move, 5)]
    [InlineData("info exits 7", MonitorVerb.InfoExits, 7)]
    public void CommandsNamingAVmParse(string line, MonitorVerb verb, int vm)
    {
        MonitorCommand c = Parse(line);
        Assert.True(c.Ok, c.ErrorText);
        Assert.Equal(verb, c.Verb);
        Assert.Equal(vm, c.Vm);
    }

    [Theory]
    [InlineData("dump 2 0x500000 16", 2, 0x500000UL, 16)]
    [InlineData("dump 2 4096 4096", 2, 4096UL, 4096)]
    [InlineData("xp 9 0XFFFF 0x10", 9, 0xFFFFUL, 16)]
    [InlineData("dump 1 0xffffffffefff 4096", 1, 0xffffffffefffUL, 4096)]
    public void DumpParses(string line, int vm, ulong gpa, int length)
    {
        MonitorCommand c = Parse(line);
        Assert.True(c.Ok, c.ErrorText);
        Assert.Equal(MonitorVerb.Dump, c.Verb);
        Assert.Equal(vm, c.Vm);
        Assert.Equal(gpa, c.Gpa);
        Assert.Equal(length, c.Length);
    }

    [Fact]
    public void StatsOnTakesSeconds()
    {
        MonitorCommand c = Parse("stats on 5");
        Assert.True(c.Ok, c.ErrorText);
        Assert.Equal(MonitorVerb.StatsOn, c.Verb);
        Assert.Equal(5, c.IntervalSeconds);
        Assert.Equal(3600, Parse("stats on 3600").IntervalSeconds);
    }

    [Theory]
    [InlineData("frobnicate", MonitorError.ErrorUnknown)]
    [InlineData("info", MonitorError.UsageInfo)]
    [InlineData("info bogus", MonitorError.ErrorInfoTopic)]
    [InlineData("info vms 1", MonitorError.UsageInfo)]
    [InlineData("info exits 1 2", MonitorError.UsageInfo)]
    [InlineData("info exits x", MonitorError.ErrorVmId)]
    [InlineData("help me", MonitorError.UsageHelp)]
    [InlineData("pause", MonitorError.UsagePause)]
    [InlineData("pause 1 2", MonitorError.UsagePause)]
    [InlineData("pause 0", MonitorError.ErrorVmId)]
    [InlineData("pause -1", MonitorError.ErrorVmId)]
    [InlineData("pause 0x3", MonitorError.ErrorVmId)]
    [InlineData("pause 1000001", MonitorError.ErrorVmId)]
    [InlineData("pause 99999999999999999999", MonitorError.ErrorVmId)]
    [InlineData("resume", MonitorError.UsageResume)]
    [InlineData("stop x", MonitorError.ErrorVmId)]
    [InlineData("stop", MonitorError.UsageStop)]
    [InlineData("focus", MonitorError.UsageFocus)]
    [InlineData("move", MonitorError.UsageMove)]
    [InlineData("move 1 2", MonitorError.UsageMove)]
    [InlineData("move one", MonitorError.ErrorVmId)]
    [InlineData("dump 1 0x1000", MonitorError.UsageDump)]
    [InlineData("dump 1 0x1000 16 9", MonitorError.UsageDump)]
    [InlineData("dump a 0x1000 16", MonitorError.ErrorVmId)]
    [InlineData("dump 1 0x 16", MonitorError.ErrorGpa)]
    [InlineData("dump 1 0xg 16", MonitorError.ErrorGpa)]
    [InlineData("dump 1 0x1000000000000 16", MonitorError.ErrorGpa)]
    [InlineData("dump 1 0xfffffffffffff 16", MonitorError.ErrorGpa)]
    [InlineData("dump 1 0xffffffffffff 2", MonitorError.ErrorGpa)]
    [InlineData("dump 1 0x10000000000000000 16", MonitorError.ErrorGpa)]
    [InlineData("dump 1 0x1000 0", MonitorError.ErrorLength)]
    [InlineData("dump 1 0x1000 4097", MonitorError.ErrorLength)]
    [InlineData("dump 1 0x1000 0x1001", MonitorError.ErrorLength)]
    [InlineData("dump 1 0x1000 -1", MonitorError.ErrorLength)]
    [InlineData("stats", MonitorError.UsageStats)]
    [InlineData("stats on", MonitorError.UsageStats)]
    [InlineData("stats maybe 1", MonitorError.UsageStats)]
    [InlineData("stats off 1", MonitorError.UsageStats)]
    [InlineData("stats on 0", MonitorError.ErrorInterval)]
    [InlineData("stats on 3601", MonitorError.ErrorInterval)]
    [InlineData("stats on x", MonitorError.ErrorInterval)]
    [InlineData("a b c d e f g", MonitorError.ErrorUnknown)]
    public void BadLinesGiveTheirOneLineError(string line, MonitorError error)
    {
        MonitorCommand c = Parse(line);
        Assert.False(c.Ok);
        Assert.Equal(error, c.Error);
        string text = c.ErrorText!;
        Assert.False(string.IsNullOrEmpty(text));
        Assert.DoesNotContain('\n', text);
    }

    [Fact]
    public void TooLongALineIsRefused()
    {
        Assert.Equal(MonitorError.ErrorTooLong, Parse("info vms" + new string(' ', MonitorParser.MaxLine)).Error);
        Assert.True(Parse("info vms" + new string(' ', MonitorParser.MaxLine - 8)).Ok);
    }

    [Fact]
    public void EveryErrorHasItsText()
    {
        foreach (MonitorError e in Enum.GetValues<MonitorError>())
        {
            if (e == MonitorError.None)
                Assert.Null(MonitorParser.ErrorText(e));
            else
                Assert.False(string.IsNullOrWhiteSpace(MonitorParser.ErrorText(e)), e.ToString());
        }
    }

    [Fact]
    public void HelpNamesEveryCommand()
    {
        string help = string.Join("\n", Enumerable.Range(0, 40).Select(MonitorParser.HelpLine).TakeWhile(l => l != null));
        foreach (string word in new[] { "info vms", "info vcpus", "info mem", "info exits", "info aging", "info swap", "pause VM", "resume VM", "stop VM", "focus VM", "move VM", "dump VM GPA LEN", "stats on INTERVAL", "stats off", "help", "Ctrl-A C" })
            Assert.Contains(word, help);
    }

    /// <summary>The help says what info exits and info vcpus measure: host time per reason, and a RIP that is a sample with its age.</summary>
    [Fact]
    public void HelpSaysWhatTheInfoCommandsMeasure()
    {
        string[] help = Enumerable.Range(0, 40).Select(MonitorParser.HelpLine).TakeWhile(l => l != null).Select(l => l!).ToArray();
        string exits = Assert.Single(help, l => l.StartsWith("info exits", StringComparison.Ordinal));
        Assert.Contains("host time", exits);
        Assert.Contains("mean", exits);
        string vcpus = Assert.Single(help, l => l.StartsWith("info vcpus", StringComparison.Ordinal));
        Assert.Contains("RIP (sampled at the last exit, with its age)", vcpus);
        Assert.All(help, l => Assert.True(l.Length <= 100, $"a help line is longer than 100 columns: '{l}'"));
    }

    [Fact]
    public void ScriptsSplitAtSemicolons()
    {
        byte[] script = Encoding.ASCII.GetBytes("info vms;pause 3;;dump 3 0x1000 16");
        var parts = new System.Collections.Generic.List<string>();
        int at = 0;
        while (MonitorParser.NextCommand(script, ref at, out int start, out int length))
            parts.Add(Encoding.ASCII.GetString(script, start, length));
        Assert.Equal(new[] { "info vms", "pause 3", "", "dump 3 0x1000 16" }, parts);
        at = 0;
        Assert.False(MonitorParser.NextCommand(ReadOnlySpan<byte>.Empty, ref at, out _, out _));
        at = 0;
        byte[] trailing = Encoding.ASCII.GetBytes("help;");
        Assert.True(MonitorParser.NextCommand(trailing, ref at, out _, out int n));
        Assert.Equal(4, n);
        Assert.False(MonitorParser.NextCommand(trailing, ref at, out _, out _));
    }

    private static readonly string[] Words =
    {
        "info", "vms", "vcpus", "mem", "exits", "aging", "swap", "pause", "resume", "cont", "stop", "focus", "dump", "xp", "stats", "on",
        "off", "help", "?", "1", "0", "7", "1000000", "1000001", "0x500000", "0x", "0xffffffffffff", "4096", "4097", "16", "-1",
        "99999999999999999999", "0x10000000000000000",
    };

    private static readonly byte[] Special = Encoding.ASCII.GetBytes(" \t\r\n;0x\0\u00ff");

    private static Gen<byte[]> Lines() =>
        Gen.Frequency(
            (4, Gen.Int[0, Words.Length - 1].Array[0, 7].Select(p => Encoding.Latin1.GetBytes(string.Join(" ", p.Select(i => Words[i]))))),
            (1, Gen.Int[0, Special.Length - 1].Array[0, 40].Select(a => a.Select(i => Special[i]).ToArray())),
            (1, Gen.Byte.Array[0, 260]));

    /// <summary>
    /// 100,000 random lines (words of the language, its separators, random bytes, too-long lines):
    /// the parser never throws and never hangs; a line it accepts has arguments in range, and one it
    /// refuses has its one-line error.
    /// </summary>
    [Fact]
    public void RandomLinesParseOrGiveTheOneLineError()
    {
        const int Cases = 100_000;
        long accepted = 0, refused = 0;
        var clock = Stopwatch.StartNew();
        Lines().Sample(line =>
        {
            var watch = Stopwatch.StartNew();
            MonitorCommand c = MonitorParser.Parse(line);
            Assert.True(watch.ElapsedMilliseconds < 1000, "the parser took a second for one line");
            if (c.Ok)
            {
                Interlocked.Increment(ref accepted);
                Assert.InRange(c.Vm, 0, MonitorParser.MaxVmId);
                if (c.Verb == MonitorVerb.Dump)
                {
                    Assert.InRange(c.Length, 1, MonitorParser.MaxDump);
                    Assert.True(c.Gpa + (ulong)c.Length <= MonitorParser.GpaLimit);
                    Assert.True(c.Vm >= 1);
                }
                if (c.Verb is MonitorVerb.Pause or MonitorVerb.Resume or MonitorVerb.Stop or MonitorVerb.Focus)
                    Assert.True(c.Vm >= 1);
                Assert.True(c.Verb == MonitorVerb.StatsOn ? c.IntervalSeconds is >= 1 and <= MonitorParser.MaxInterval : c.IntervalSeconds == 0);
            }
            else
            {
                Interlocked.Increment(ref refused);
                string? text = c.ErrorText;
                Assert.False(string.IsNullOrEmpty(text));
                Assert.DoesNotContain('\n', text);
            }
            // The script splitter walks any bytes to their end.
            int at = 0, parts = 0;
            while (MonitorParser.NextCommand(line, ref at, out int start, out int length))
            {
                Assert.True(start >= 0 && length >= 0 && start + length <= line.Length);
                Assert.True(++parts <= line.Length + 1, "the splitter does not advance");
            }
        }, seed: TestSeed.FromEnvironment()!, iter: Cases, writeLine: _out.WriteLine, print: l => "\"" + Encoding.Latin1.GetString(l) + "\"");
        _out.WriteLine($"{Cases} lines in {clock.Elapsed.TotalSeconds:F1} s: {accepted} accepted, {refused} refused");
        Assert.True(accepted > Cases / 20, "few lines accepted: " + accepted);
        Assert.True(refused > Cases / 2, "few lines refused: " + refused);
    }
}
