using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Text;
using System.Threading;
using CsCheck;
using Tandem.Kernel.Console;
using Tandem.Kernel.Parsers;
using Tandem.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Tandem.Kernel.Tests;

/// <summary>The parser's log on the host: the lines, as the kernel would print them.</summary>
public struct ListLog : ICommandLineLog
{
    public List<string> Lines;

    public ListLog() { Lines = new List<string>(); }

    public void Line(string what, string between, ReadOnlySpan<byte> value, string after) =>
        Lines.Add("cmdline: " + what + between + Encoding.Latin1.GetString(value) + after);

    /// <summary>Parses <paramref name="line"/> from the defaults: the options and the lines the parser said.</summary>
    public static (CommandLineOptions Options, ListLog Log) Parse(string line)
    {
        byte[] text = Encoding.Latin1.GetBytes(line);
        CommandLineOptions o = CommandLineOptions.Defaults();
        var log = new ListLog();
        CommandLineParser.Parse(text, ref o, ref log);
        return (o, log);
    }
}

/// <summary>
/// <see cref="CommandLineParser"/> on hostile command lines: 100,000 cases, four in five built from
/// real words (every option, <c>vm=</c> with every suboption, GRUB's quoting) then mutated with
/// bytes that matter to the parser (space, double quote, backslash, comma, equals, plus, NUL),
/// one in five random bytes. The text is a span: a read or write outside it throws. The parser
/// must not throw, must change no byte past the text's end (its first NUL), and every option it
/// accepts must lie inside the text and inside its documented range; what it ignores it reports.
/// </summary>
public sealed class CommandLineFuzzTests
{
    public const int Cases = 100_000;
    private readonly ITestOutputHelper _out;
    public CommandLineFuzzTests(ITestOutputHelper output) { _out = output; }

    private static readonly string[] Words =
    {
        "test", "test=mem", "test=vmx,smp", "bench", "vmx=off", "vmx=on", "expect_vmx=yes", "expect_vmx=no", "swap=64M", "swap=off",
        "swap=1G", "swap=12x", "mem.limit=256M", "mem.limit=0", "ksm=on", "ksm=off", "ksm=maybe", "thp=on", "thp=off", "thp=2M", "mmstats=5", "mmstats=0", "watermarks=4M,8M", "watermarks=8M,4M", "watermarks=0,1M", "watermarks=4M",
        "vm=linux", "vm=linux,mem=256M,cpus=2", "vm=x,mem=3G,cpus=16,pin=0+1+63", "vm=x,cmdline=\"console=ttyS0 quiet\"",
        "\"vm=x,cmdline=\\\"a b\\\"\"", "vm=x,initrd=rd,modules=a+b", "vm=x,budget=none", "vm=x,budget=30", "vm=x,defaults=off",
        "vm=x,fwcfg=opt/a:m1+opt/b:m2", "vm=x,reset=restart", "vm=x,reset=stop", "vm=x,mem=5G", "vm=x,cpus=0", "vm=x,pin=64",
        "vm=,mem=1", "vm=x,", "vm=x,bogus=1", "vm=x,cmdline=\"", "unknown", "a=b=c", "=", "\"\"", "\\\\", "vm=x,mem=1024K",
        "vm=x,mem=99999999999999999999", "vm=x,pin=+", "vm=x,cmdline=\"\"",
        "monitor=help", "monitor=\"info vms;pause 1\"", "monitor=", "monitor=\"\"", "\"monitor=\\\"stop 1\\\"\"", "monitor=\"",
        "loglevel=debug", "loglevel=error", "loglevel=loud", "loglevel=",
    };

    private static readonly byte[] Special = Encoding.ASCII.GetBytes(" \"\\,=+0:\0M");

    public static Gen<byte[]> Inputs()
    {
        Gen<byte[]> words = Gen.Select(Gen.Int[0, Words.Length - 1].Array[0, 12], Gen.Select(Gen.Int[0, 99], Gen.Int[0, int.MaxValue], Gen.Int[0, Special.Length - 1]).Array[0, 5])
            .Select((picks, ops) =>
            {
                var b = new List<byte>(Encoding.ASCII.GetBytes(string.Join(" ", picks.Select(p => Words[p]))));
                foreach (var (kind, at, c) in ops)
                {
                    int p = b.Count == 0 ? 0 : at % (b.Count + 1);
                    if (kind < 40 || b.Count == 0)
                        b.Insert(p, Special[c]);
                    else if (kind < 70 && p < b.Count)
                        b[p] = Special[c];
                    else if (p < b.Count)
                        b.RemoveAt(p);
                }
                return b.ToArray();
            });
        Gen<byte[]> random = Gen.Frequency((1, Gen.Byte.Array[0, 200]), (2, Gen.Int[0, Special.Length - 1].Array[0, 60].Select(a => a.Select(i => Special[i]).ToArray())));
        return Gen.Frequency((4, words), (1, random));
    }

    [Fact]
    public void HostileCommandLinesAreReportedOrReadSanely()
    {
        string? seed = TestSeed.FromEnvironment();
        long vms = 0, lines = 0;
        var clock = Stopwatch.StartNew();
        Inputs().Sample(text =>
        {
            (int v, int l) = Check(text);
            Interlocked.Add(ref vms, v);
            Interlocked.Add(ref lines, l);
        }, seed: seed!, iter: Cases, writeLine: _out.WriteLine, print: t => "\"" + Encoding.Latin1.GetString(t).Replace("\0", "\\0") + "\"");
        _out.WriteLine($"{Cases} cases in {clock.Elapsed.TotalSeconds:F1} s: {vms} VMs accepted, {lines} lines reported");
        Assert.True(vms > Cases / 2, "few vm= options accepted: " + vms);
        Assert.True(lines > Cases / 2, "few refusals reported: " + lines);
    }

    /// <summary>Parses one command line and checks the options; the VMs accepted and the lines reported.</summary>
    public static (int Vms, int Lines) Check(byte[] text)
    {
        byte[] before = (byte[])text.Clone();
        int end = Array.IndexOf(text, (byte)0);
        if (end < 0)
            end = text.Length;
        CommandLineOptions o = CommandLineOptions.Defaults();
        var log = new ListLog();
        CommandLineParser.Parse(text, ref o, ref log);

        Assert.True(text.AsSpan(end).SequenceEqual(before.AsSpan(end)), "bytes past the text's end changed");
        int words = Encoding.Latin1.GetString(before, 0, end).Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;
        Assert.True(log.Lines.Count <= 2 * words, $"{log.Lines.Count} lines for {words} words");
        Assert.True(o.TestPatternOffset < 0 || Inside(o.TestPatternOffset, o.TestPatternLength, end) && o.TestPatternLength > 0, "test pattern");
        Assert.True(o.ExpectVmx is -1 or 0 or 1);
        Assert.True(o.LogLevel is LogLevel.Error or LogLevel.Warn or LogLevel.Info or LogLevel.Debug, "loglevel");
        Assert.True(o.MemLimitMiB == CommandLineOptions.Unset || o.MemLimitMiB > 0, "mem.limit");
        Assert.True(o.MmStatsSeconds == CommandLineOptions.Unset || o.MmStatsSeconds is >= 1 and <= 86400, "mmstats");
        Assert.True(o.WatermarkLowMiB == CommandLineOptions.Unset ? o.WatermarkHighMiB == CommandLineOptions.Unset
            : o.WatermarkLowMiB > 0 && o.WatermarkLowMiB < o.WatermarkHighMiB && o.WatermarkHighMiB != CommandLineOptions.Unset, "watermarks");
        Assert.True(o.MonitorOffset < 0 || Inside(o.MonitorOffset, o.MonitorLength, end) && o.MonitorLength >= 0, "monitor= script outside the command line");
        Assert.InRange(o.VmCount, 0, CommandLineOptions.MaxVms);
        for (int i = 0; i < o.VmCount; i++)
        {
            VmOptions v = o.Vm(i);
            Assert.True(Inside(v.ModuleOffset, v.ModuleLength, end) && v.ModuleLength > 0, "vm module");
            Assert.True(Array.IndexOf(text, (byte)',', v.ModuleOffset, v.ModuleLength) < 0, "a comma in the module name");
            Assert.True(v.MemoryMiB <= CommandLineParser.MaxVmMemoryMiB && v.Cpus is >= 0 and <= 16, "vm mem or cpus");
            Assert.True(v.BudgetSeconds is 0 or <= 1_000_000 || v.BudgetSeconds == CommandLineOptions.NoBudget, "vm budget");
            foreach (var (off, len) in new[] { (v.CmdlineOffset, v.CmdlineLength), (v.InitrdOffset, v.InitrdLength), (v.ModulesOffset, v.ModulesLength), (v.FwCfgOffset, v.FwCfgLength) })
                Assert.True(off < 0 || Inside(off, len, end), "a vm= text outside the command line");
        }
        return (o.VmCount, log.Lines.Count);
    }

    private static bool Inside(int offset, int length, int end) => offset >= 0 && length >= 0 && offset + length <= end;
}
