using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using Tandem.Build;
using Xunit;

// Not Tandem.Console.Tests: a namespace named Console would hide System.Console from the linked driver sources.
namespace Tandem.ConsoleTests;

/// <summary>The interactive console's keys: typed bytes in, bytes for COM1 and actions out.</summary>
public class ConsoleKeysTests
{
    private const byte CtrlA = 0x01;
    private const byte CtrlC = 0x03;

    /// <summary>Feeds the bytes one at a time, as a terminal in raw mode delivers them.</summary>
    private static (byte[] Sent, List<ConsoleAction> Actions) Type(params byte[] keys)
    {
        var machine = new ConsoleKeys();
        var sent = new List<byte>();
        var actions = new List<ConsoleAction>();
        foreach (byte b in keys)
        {
            ConsoleAction a = machine.Feed(b, sent);
            if (a != ConsoleAction.None)
                actions.Add(a);
        }
        return ([.. sent], actions);
    }

    private static byte[] Ascii(string s) => Encoding.ASCII.GetBytes(s);

    [Fact]
    public void OrdinaryKeysGoThroughUnchanged()
    {
        // Letters, Enter (CR in raw mode), backspace, tab, escape sequences (an arrow key), Ctrl-D, Ctrl-Z.
        byte[] keys = [.. Ascii("echo hi\r"), 0x7f, 0x08, (byte)'\t', 0x1b, (byte)'[', (byte)'A', 0x04, 0x1a, 0xff];
        (byte[] sent, List<ConsoleAction> actions) = Type(keys);
        Assert.Equal(keys, sent);
        Assert.Empty(actions);
    }

    [Fact]
    public void CtrlCQuitsAndSendsNothing()
    {
        (byte[] sent, List<ConsoleAction> actions) = Type(CtrlC);
        Assert.Empty(sent);
        Assert.Equal([ConsoleAction.Quit], actions);
    }

    [Theory]
    [InlineData((byte)'x')]
    [InlineData((byte)'X')]
    public void CtrlAXQuits(byte x)
    {
        (byte[] sent, List<ConsoleAction> actions) = Type(CtrlA, x);
        Assert.Empty(sent);
        Assert.Equal([ConsoleAction.Quit], actions);
    }

    [Theory]
    [InlineData((byte)'c')]
    [InlineData((byte)'C')]
    public void CtrlACSendsCtrlC(byte c)
    {
        (byte[] sent, List<ConsoleAction> actions) = Type(CtrlA, c);
        Assert.Equal([CtrlC], sent);
        Assert.Empty(actions);
    }

    [Fact]
    public void CtrlACtrlASendsOneCtrlA()
    {
        (byte[] sent, List<ConsoleAction> actions) = Type(CtrlA, CtrlA);
        Assert.Equal([CtrlA], sent);
        Assert.Empty(actions);
        // Twice: two literal Ctrl-A, not a Ctrl-A that starts a new command.
        (sent, _) = Type(CtrlA, CtrlA, CtrlA, CtrlA, (byte)'x');
        Assert.Equal([CtrlA, CtrlA, (byte)'x'], sent);
    }

    [Theory]
    [InlineData((byte)'h')]
    [InlineData((byte)'H')]
    [InlineData((byte)'?')]
    public void CtrlAHShowsTheKeys(byte h)
    {
        (byte[] sent, List<ConsoleAction> actions) = Type(CtrlA, h);
        Assert.Empty(sent);
        Assert.Equal([ConsoleAction.Help], actions);
    }

    [Fact]
    public void CtrlAWithAnotherKeySendsBoth()
    {
        (byte[] sent, List<ConsoleAction> actions) = Type(CtrlA, (byte)'e', (byte)'z');
        Assert.Equal([CtrlA, (byte)'e', (byte)'z'], sent);
        Assert.Empty(actions);
    }

    [Fact]
    public void CtrlCQuitsEvenAfterCtrlA()
    {
        (byte[] sent, List<ConsoleAction> actions) = Type(CtrlA, CtrlC);
        Assert.Empty(sent);
        Assert.Equal([ConsoleAction.Quit], actions);
    }

    [Fact]
    public void TheEscapeStateSpansReads()
    {
        var machine = new ConsoleKeys();
        var sent = new List<byte>();
        Assert.Equal(ConsoleAction.None, machine.Feed([(byte)'a', CtrlA], sent));
        Assert.True(machine.AfterCtrlA);
        Assert.Equal(ConsoleAction.None, machine.Feed([(byte)'c', (byte)'b'], sent));
        Assert.False(machine.AfterCtrlA);
        Assert.Equal([(byte)'a', CtrlC, (byte)'b'], sent.ToArray());
    }

    [Fact]
    public void ABufferStopsAtQuit()
    {
        var machine = new ConsoleKeys();
        var sent = new List<byte>();
        ConsoleAction a = machine.Feed([(byte)'l', (byte)'s', CtrlA, (byte)'x', (byte)'m', (byte)'o'], sent);
        Assert.Equal(ConsoleAction.Quit, a);
        Assert.Equal(Ascii("ls"), sent.ToArray());
    }

    [Fact]
    public void ABufferReportsHelpAndKeepsSending()
    {
        var machine = new ConsoleKeys();
        var sent = new List<byte>();
        ConsoleAction a = machine.Feed([(byte)'a', CtrlA, (byte)'h', (byte)'b'], sent);
        Assert.Equal(ConsoleAction.Help, a);
        Assert.Equal(Ascii("ab"), sent.ToArray());
    }

    [Fact]
    public void EveryByteSequenceKeepsOrderAndLosesNothingButTheCommands()
    {
        // Without Ctrl-A and Ctrl-C, every byte value goes through, in order.
        byte[] all = [.. Enumerable.Range(0, 256).Select(i => (byte)i).Where(b => b != CtrlA && b != CtrlC)];
        (byte[] sent, List<ConsoleAction> actions) = Type(all);
        Assert.Equal(all, sent);
        Assert.Empty(actions);
    }

    [Fact]
    public void TheHintNamesTheKeys()
    {
        Assert.Equal("interactive console: type to the machine's COM1; Ctrl-C or Ctrl-A X quits, Ctrl-A C sends Ctrl-C", ConsoleKeys.Hint);
    }
}

/// <summary>Serial output on a raw-mode terminal: a line feed gets its carriage return, once.</summary>
public class RawNewlinesTests
{
    private static string Convert(RawNewlines r, string s) => Encoding.ASCII.GetString(r.Convert(Encoding.ASCII.GetBytes(s)));

    [Fact]
    public void ABareLineFeedGetsACarriageReturn()
    {
        var r = new RawNewlines();
        Assert.Equal("a\r\nb\r\n", Convert(r, "a\nb\n"));
        Assert.True(r.AtLineStart);
    }

    [Fact]
    public void CarriageReturnLineFeedStaysAsItIs()
    {
        Assert.Equal("a\r\nb", Convert(new RawNewlines(), "a\r\nb"));
    }

    [Fact]
    public void ACarriageReturnAtTheEndOfOneChunkCounts()
    {
        var r = new RawNewlines();
        Assert.Equal("a\r", Convert(r, "a\r"));
        Assert.Equal("\nb", Convert(r, "\nb"));
    }

    [Fact]
    public void APromptLeavesTheCursorMidLine()
    {
        var r = new RawNewlines();
        Convert(r, "boot\ntandem-linux:/# ");
        Assert.False(r.AtLineStart);
    }
}

/// <summary>The --input-after marker, anywhere in the output, split across chunks or not.</summary>
public class MarkerWatchTests
{
    private static byte[] B(string s) => Encoding.ASCII.GetBytes(s);

    [Fact]
    public void AnEmptyMarkerIsSeenAtOnce()
    {
        Assert.True(new MarkerWatch("").Seen);
    }

    [Fact]
    public void FindsTheMarkerInOneChunk()
    {
        var m = new MarkerWatch("READY");
        Assert.False(m.Feed(B("booting\n")));
        Assert.True(m.Feed(B("[vm 1] TANDEM-SHELL-READY\n")));
        Assert.True(m.Seen);
    }

    [Fact]
    public void FindsTheMarkerSplitAcrossChunks()
    {
        var m = new MarkerWatch("SHELL-READY");
        Assert.False(m.Feed(B("xx SHE")));
        Assert.False(m.Feed(B("LL-RE")));
        Assert.True(m.Feed(B("ADY")));
    }

    [Fact]
    public void FindsAPromptWithoutANewline()
    {
        var m = new MarkerWatch("/ # ");
        Assert.False(m.Feed(B("/ ")));
        Assert.True(m.Feed(B("# ")));
    }

    [Fact]
    public void OneByteAtATime()
    {
        var m = new MarkerWatch("abc");
        string text = "xxabxabyabc";
        for (int i = 0; i < text.Length; i++)
            Assert.Equal(i == text.Length - 1, m.Feed(B(text[i].ToString())));
    }
}

/// <summary>Serial bytes into lines for serial.log and the status scan.</summary>
public class LineSplitterTests
{
    [Fact]
    public void SplitsOnLineFeedsAndKeepsTheUnfinishedLine()
    {
        var lines = new List<string>();
        var s = new LineSplitter(lines.Add);
        s.Feed(Encoding.ASCII.GetBytes("tandem: booting\n[vm 1] tandem-linux:/# "));
        Assert.Equal(["tandem: booting"], lines);
        Assert.Equal("[vm 1] tandem-linux:/# ", s.Partial);
        s.Feed(Encoding.ASCII.GetBytes("echo hi\r\nhi\r\ntandem: exit"));
        s.Feed(Encoding.ASCII.GetBytes(" status 0\n"));
        Assert.Equal(["tandem: booting", "[vm 1] tandem-linux:/# echo hi\r", "hi\r", "tandem: exit status 0"], lines);
        s.Flush();
        Assert.Equal(4, lines.Count);
    }

    [Fact]
    public void FlushEmitsTheUnfinishedLine()
    {
        var lines = new List<string>();
        var s = new LineSplitter(lines.Add);
        s.Feed(Encoding.ASCII.GetBytes("a\nprompt# "));
        s.Flush();
        Assert.Equal(["a", "prompt# "], lines);
        Assert.Equal("", s.Partial);
    }

    [Fact]
    public void DecodesUtf8SplitAcrossChunks()
    {
        var lines = new List<string>();
        var s = new LineSplitter(lines.Add);
        byte[] text = Encoding.UTF8.GetBytes("µs\n");
        s.Feed(text.AsSpan(0, 1));
        s.Feed(text.AsSpan(1));
        Assert.Equal(["µs"], lines);
    }
}
