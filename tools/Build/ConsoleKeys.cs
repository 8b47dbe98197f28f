using System;
using System.Collections.Generic;
using System.Text;

namespace Tandem.Build;

/// <summary>What a typed key asks of the interactive console besides the bytes it sends.</summary>
internal enum ConsoleAction { None, Quit, Help }

/// <summary>
/// The interactive console's keys (QEMU's conventions): every byte typed goes to the machine's
/// COM1, except Ctrl-C, which quits, and Ctrl-A, which starts a two-key command: Ctrl-A X quits,
/// Ctrl-A C sends a Ctrl-C, Ctrl-A Ctrl-A sends a Ctrl-A, Ctrl-A H (or ?) shows the keys. Ctrl-A
/// and any other key send both bytes, so that nothing typed is lost. Ctrl-C quits even after a
/// Ctrl-A. Pure (no I/O), so that the host tests can drive it byte by byte.
/// </summary>
internal sealed class ConsoleKeys
{
    public const byte CtrlA = 0x01;
    public const byte CtrlC = 0x03;

    public const string Hint = "interactive console: type to the machine's COM1; Ctrl-C or Ctrl-A X quits, Ctrl-A C sends Ctrl-C";

    public const string Help = "keys: Ctrl-C or Ctrl-A X quit; Ctrl-A C sends Ctrl-C; Ctrl-A Ctrl-A sends Ctrl-A; Ctrl-A H shows this";

    private bool _afterCtrlA;

    /// <summary>True after a Ctrl-A, while the console waits for the command's second key.</summary>
    public bool AfterCtrlA => _afterCtrlA;

    /// <summary>Takes one typed byte: appends what goes to COM1 to <paramref name="send"/> and says what else to do.</summary>
    public ConsoleAction Feed(byte b, List<byte> send)
    {
        if (b == CtrlC)
        {
            _afterCtrlA = false;
            return ConsoleAction.Quit;
        }
        if (!_afterCtrlA)
        {
            if (b == CtrlA)
                _afterCtrlA = true;
            else
                send.Add(b);
            return ConsoleAction.None;
        }
        _afterCtrlA = false;
        switch (b)
        {
            case (byte)'x' or (byte)'X':
                return ConsoleAction.Quit;
            case (byte)'c' or (byte)'C':
                send.Add(CtrlC);
                return ConsoleAction.None;
            case CtrlA:
                send.Add(CtrlA);
                return ConsoleAction.None;
            case (byte)'h' or (byte)'H' or (byte)'?':
                return ConsoleAction.Help;
            default:
                send.Add(CtrlA);
                send.Add(b);
                return ConsoleAction.None;
        }
    }

    /// <summary>
    /// Takes the bytes of one read: appends what goes to COM1 and returns at the first Quit (the
    /// rest is dropped), else the last Help, else None.
    /// </summary>
    public ConsoleAction Feed(ReadOnlySpan<byte> input, List<byte> send)
    {
        ConsoleAction result = ConsoleAction.None;
        foreach (byte b in input)
        {
            ConsoleAction a = Feed(b, send);
            if (a == ConsoleAction.Quit)
                return a;
            if (a == ConsoleAction.Help)
                result = a;
        }
        return result;
    }
}

/// <summary>
/// Serial output for a terminal in raw mode, which no longer turns "\n" into "\r\n": a line feed
/// not already after a carriage return gets one. Remembers the last byte across chunks.
/// </summary>
internal sealed class RawNewlines
{
    private byte _last = (byte)'\n';

    /// <summary>True when the last byte written ended a line (the cursor is in column 0).</summary>
    public bool AtLineStart => _last == (byte)'\n';

    public byte[] Convert(ReadOnlySpan<byte> chunk)
    {
        var output = new List<byte>(chunk.Length + 8);
        foreach (byte b in chunk)
        {
            if (b == (byte)'\n' && _last != (byte)'\r')
                output.Add((byte)'\r');
            output.Add(b);
            _last = b;
        }
        return [.. output];
    }
}

/// <summary>
/// Watches a byte stream for a marker (the --input-after text), which may be split across chunks
/// and may end a line that is not finished (a prompt).
/// </summary>
internal sealed class MarkerWatch(string marker)
{
    private readonly StringBuilder _window = new();

    public bool Seen { get; private set; } = marker.Length == 0;

    /// <summary>Takes the next chunk; true once the marker has appeared.</summary>
    public bool Feed(ReadOnlySpan<byte> chunk)
    {
        if (Seen)
            return true;
        _window.Append(Encoding.Latin1.GetString(chunk));
        if (_window.ToString().Contains(marker, StringComparison.Ordinal))
        {
            Seen = true;
            _window.Clear();
            return true;
        }
        int keep = marker.Length - 1;
        if (_window.Length > keep)
            _window.Remove(0, _window.Length - keep);
        return false;
    }
}

/// <summary>Splits serial bytes into lines ("\n"), decoding UTF-8 across chunk boundaries.</summary>
internal sealed class LineSplitter(Action<string> line)
{
    private readonly Decoder _decoder = new UTF8Encoding(false).GetDecoder();
    private readonly StringBuilder _partial = new();

    /// <summary>The text after the last line feed: an unfinished line (a prompt, echoed keys).</summary>
    public string Partial => _partial.ToString();

    public void Feed(ReadOnlySpan<byte> chunk)
    {
        var chars = new char[_decoder.GetCharCount(chunk, flush: false)];
        int n = _decoder.GetChars(chunk, chars, flush: false);
        foreach (char c in chars.AsSpan(0, n))
        {
            if (c == '\n')
            {
                string text = _partial.ToString();
                _partial.Clear();
                line(text);
            }
            else
                _partial.Append(c);
        }
    }

    /// <summary>Emits the unfinished line, if any, as a line of its own.</summary>
    public void Flush()
    {
        if (_partial.Length == 0)
            return;
        string text = _partial.ToString();
        _partial.Clear();
        line(text);
    }
}
