using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Tandem.Build;

/// <summary>
/// The terminal in raw mode without echo (stty), for the interactive console: every key reaches
/// the driver at once, Ctrl-C included. <see cref="Restore"/> puts back the settings saved when
/// it started; it runs once, from whichever comes first: the end of the run, the process exiting,
/// an unhandled exception.
/// </summary>
internal sealed class RawTerminal
{
    private readonly string _device;
    private readonly string _saved;
    private int _restored;

    private RawTerminal(string device, string saved)
    {
        _device = device;
        _saved = saved;
    }

    /// <summary>Puts the terminal on stdin into raw mode; null (with a warning) when stty cannot.</summary>
    public static RawTerminal? Enter()
    {
        string device = StdinDevice();
        (int code, string saved) = Stty(device, "-g");
        if (code != 0 || saved.Length == 0)
        {
            Console.Error.WriteLine($"run: warning: 'stty -F {device} -g' failed ({code}); the terminal stays as it is (keys go by line, Ctrl-C is a signal)");
            return null;
        }
        var t = new RawTerminal(device, saved);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => t.Restore();
        AppDomain.CurrentDomain.UnhandledException += (_, _) => t.Restore();
        (code, _) = Stty(device, "raw", "-echo");
        if (code != 0)
        {
            t.Restore();
            Console.Error.WriteLine($"run: warning: 'stty -F {device} raw -echo' failed ({code}); the terminal stays as it is");
            return null;
        }
        return t;
    }

    public void Restore()
    {
        if (Interlocked.Exchange(ref _restored, 1) == 0)
            Stty(_device, _saved);
    }

    /// <summary>The terminal stdin is (/proc/self/fd/0's target), else the controlling terminal.</summary>
    private static string StdinDevice()
    {
        try
        {
            string? target = new FileInfo("/proc/self/fd/0").LinkTarget;
            if (target != null && target.StartsWith("/dev/", StringComparison.Ordinal))
                return target;
        }
        catch (IOException)
        {
        }
        return "/dev/tty";
    }

    /// <summary>
    /// Runs stty on the device with every standard stream redirected: .NET leaves the terminal alone
    /// for a child that does not share it (one that does would get the terminal's settings from
    /// when the driver started, and the driver would re-apply its own when the child exits).
    /// </summary>
    private static (int Code, string Output) Stty(string device, params string[] args)
    {
        var psi = new ProcessStartInfo("stty")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("-F");
        psi.ArgumentList.Add(device);
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(psi);
            if (p == null)
                return (-1, "");
            p.StandardInput.Close();
            Task<string> output = p.StandardOutput.ReadToEndAsync();
            Task<string> error = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(5000))
            {
                try { p.Kill(); } catch (InvalidOperationException) { }
                return (-1, "");
            }
            Task.WaitAll([output, error], 1000);
            return (p.ExitCode, output.IsCompletedSuccessfully ? output.Result.Trim() : "");
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return (-1, "");
        }
    }
}

/// <summary>
/// The machine's COM1 as a TCP connection: the driver listens on a free loopback port and the
/// emulator connects to it (QEMU <c>-chardev socket</c>, Bochs <c>com1: mode=socket-client</c>),
/// so there is no port to race for and no connect to retry. Serial output goes line by line to the
/// run's log (and the status scan), and, in an interactive run, byte by byte to the terminal; what
/// goes to COM1 is the keys typed (interactive) or the --input bytes (scripted).
/// </summary>
internal sealed class SerialConsole : IDisposable
{
    /// <summary>How long the emulator may take to connect to the serial socket.</summary>
    public const int ConnectSeconds = 60;

    /// <summary>How long the emulator may keep running after the kernel reported its status.</summary>
    public const int AfterStatusSeconds = 10;

    /// <summary>The pause between two bytes of --input.</summary>
    public const int InputByteMilliseconds = 20;

    private readonly TcpListener _listener;
    private readonly RunOptions _options;
    private readonly object _sendLock = new();
    private readonly object _termLock = new();
    private readonly List<byte> _pending = [];
    private readonly ManualResetEventSlim _connected = new();
    private readonly ManualResetEventSlim _markerSeen = new();
    private readonly ManualResetEventSlim _finished = new();
    private readonly RawNewlines _newlines = new();
    private readonly Stream? _terminal;
    private MarkerWatch? _marker;
    private LineSplitter? _lines;
    private TcpClient? _client;
    private NetworkStream? _stream;
    private Thread? _pump;
    private RawTerminal? _raw;
    private PosixSignalRegistration? _sigterm;
    private PosixSignalRegistration? _sighup;
    private ConsoleCancelEventHandler? _cancel;
    private volatile string? _stopReason;
    private int _stopExitCode;
    private int _inputSent;

    private SerialConsole(RunOptions o)
    {
        _options = o;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start(1);
        if (o.Interactive)
            _terminal = Console.OpenStandardOutput();
    }

    /// <summary>A console for this run, or null when it needs none (no terminal to type on, no --input).</summary>
    public static SerialConsole? For(RunOptions o) => o.Interactive || o.Input != null ? new SerialConsole(o) : null;

    /// <summary>The loopback port the emulator connects its COM1 to.</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public bool Connected => _connected.IsSet;

    /// <summary>Set when the user quit (Ctrl-C, Ctrl-A X) or a signal asked the driver to stop.</summary>
    public string? StopReason => _stopReason;

    /// <summary>The driver's exit code for a stopped run: 128 + the signal (130 for Ctrl-C).</summary>
    public int StopExitCode => _stopExitCode;

    /// <summary>The seconds (of the run's stopwatch) at which the kernel's status line came, if it did.</summary>
    public double? StatusSeenAt { get; set; }

    /// <summary>
    /// Starts the session once the emulator runs: accepts its connection and pumps serial output to
    /// <paramref name="line"/> (whole lines, for the log) and, interactive, to the terminal; puts the
    /// terminal in raw mode and reads keys, or sends the --input bytes after the marker.
    /// </summary>
    public void Start(Action<string> line)
    {
        _lines = new LineSplitter(line);
        _marker = new MarkerWatch(_options.InputAfter ?? "");
        if (_marker.Seen)
            _markerSeen.Set();
        _cancel = (_, e) =>
        {
            e.Cancel = true;
            RequestStop("Ctrl-C", ExitCodes.Interrupted);
        };
        Console.CancelKeyPress += _cancel;
        if (!OperatingSystem.IsWindows())
        {
            _sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; RequestStop("SIGTERM", 128 + 15); });
            _sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c => { c.Cancel = true; RequestStop("SIGHUP", 128 + 1); });
        }
        _pump = new Thread(Pump) { IsBackground = true, Name = "serial pump" };
        _pump.Start();
        if (_options.Interactive)
        {
            _raw = RawTerminal.Enter();
            new Thread(ReadKeys) { IsBackground = true, Name = "console keys" }.Start();
        }
        else if (_options.Input != null)
            new Thread(SendInput) { IsBackground = true, Name = "console input" }.Start();
    }

    public void RequestStop(string reason, int exitCode)
    {
        if (_stopReason != null)
            return;
        _stopExitCode = exitCode;
        _stopReason = reason;
    }

    /// <summary>Accepts the emulator's connection, then copies what it sends until it closes.</summary>
    private void Pump()
    {
        try
        {
            TcpClient client = _listener.AcceptTcpClient();
            client.NoDelay = true;
            lock (_sendLock)
            {
                _client = client;
                _stream = client.GetStream();
                if (_pending.Count > 0)
                    _stream.Write([.. _pending]);
                _pending.Clear();
            }
            _connected.Set();
            var buffer = new byte[4096];
            while (true)
            {
                int n = _stream.Read(buffer);
                if (n <= 0)
                    break;
                Received(buffer.AsSpan(0, n));
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
        }
        finally
        {
            _finished.Set();
        }
    }

    private void Received(ReadOnlySpan<byte> chunk)
    {
        if (_terminal != null)
        {
            byte[] bytes = _newlines.Convert(chunk);
            lock (_termLock)
            {
                try
                {
                    _terminal.Write(bytes);
                    _terminal.Flush();
                }
                catch (IOException)
                {
                }
            }
        }
        if (_marker!.Feed(chunk))
            _markerSeen.Set();
        _lines!.Feed(chunk);
    }

    /// <summary>Sends bytes to COM1, or keeps them until the emulator has connected.</summary>
    private void Send(ReadOnlySpan<byte> bytes)
    {
        lock (_sendLock)
        {
            if (_stream == null)
            {
                _pending.AddRange(bytes);
                return;
            }
            try
            {
                _stream.Write(bytes);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
            }
        }
    }

    /// <summary>Reads the terminal byte by byte (not through System.Console, which would edit lines).</summary>
    private void ReadKeys()
    {
        var keys = new ConsoleKeys();
        var send = new List<byte>();
        var buffer = new byte[256];
        using var stdin = new FileStream(new SafeFileHandle(0, ownsHandle: false), FileAccess.Read, bufferSize: 0);
        try
        {
            while (_stopReason == null && !_finished.IsSet)
            {
                int n = stdin.Read(buffer);
                if (n <= 0)
                    return;
                send.Clear();
                ConsoleAction action = keys.Feed(buffer.AsSpan(0, n), send);
                if (send.Count > 0)
                    Send([.. send]);
                if (action == ConsoleAction.Quit)
                {
                    RequestStop("Ctrl-C", ExitCodes.Interrupted);
                    return;
                }
                if (action == ConsoleAction.Help)
                    Say(ConsoleKeys.Help);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
        }
    }

    /// <summary>--input: once connected and the marker has shown, one byte every 20 ms.</summary>
    private void SendInput()
    {
        byte[] input = _options.Input!;
        _connected.Wait();
        if (WaitHandle.WaitAny([_markerSeen.WaitHandle, _finished.WaitHandle]) != 0)
            return;
        Console.Error.WriteLine($"run: --input: sending {input.Length} bytes to COM1" +
            (_options.InputAfter != null ? $" (after '{_options.InputAfter}')" : ""));
        foreach (byte b in input)
        {
            if (_stopReason != null || _finished.IsSet)
                return;
            Send([b]);
            Interlocked.Increment(ref _inputSent);
            Thread.Sleep(InputByteMilliseconds);
        }
    }

    /// <summary>A line of the driver's own on the terminal during the session (raw mode: "\r\n").</summary>
    private void Say(string text)
    {
        if (_terminal == null)
            return;
        lock (_termLock)
        {
            try
            {
                string prefix = _newlines.AtLineStart ? "" : "\r\n";
                _terminal.Write(System.Text.Encoding.UTF8.GetBytes($"{prefix}run: {text}\r\n"));
                _terminal.Flush();
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>
    /// Ends the session after the emulator has exited: the rest of the output (the last unfinished
    /// line goes to the log as a line), the terminal restored and on a line of its own, the signal
    /// handlers gone; says whether --input was sent in full.
    /// </summary>
    public void Finish()
    {
        _listener.Stop();
        if (!_finished.Wait(TimeSpan.FromSeconds(2)))
        {
            lock (_sendLock)
                _client?.Close();
            _finished.Wait(TimeSpan.FromSeconds(2));
        }
        _lines?.Flush();
        _raw?.Restore();
        if (_terminal != null && !_newlines.AtLineStart)
        {
            lock (_termLock)
            {
                try
                {
                    _terminal.Write("\n"u8);
                    _terminal.Flush();
                }
                catch (IOException)
                {
                }
            }
        }
        if (_options.Input != null && _stopReason == null)
        {
            if (!_markerSeen.IsSet)
                Console.Error.WriteLine($"run: --input: '{_options.InputAfter}' never appeared on the serial console; sent nothing");
            else if (_inputSent < _options.Input.Length)
                Console.Error.WriteLine($"run: --input: the run ended after {_inputSent} of {_options.Input.Length} bytes");
        }
        Unhook();
    }

    private void Unhook()
    {
        if (_cancel != null)
            Console.CancelKeyPress -= _cancel;
        _cancel = null;
        _sigterm?.Dispose();
        _sighup?.Dispose();
        _sigterm = _sighup = null;
    }

    public void Dispose()
    {
        _listener.Stop();
        _raw?.Restore();
        Unhook();
        lock (_sendLock)
            _client?.Dispose();
    }

    /// <summary>
    /// --input FILE, or '-' for stdin when it is redirected: the bytes to send to COM1, read before
    /// the build so that a bad path is a usage error.
    /// </summary>
    public static byte[] LoadInput(string spec)
    {
        if (spec == "-")
        {
            if (!Console.IsInputRedirected)
                throw new BuildException("--input -: stdin is a terminal; type to the machine instead (run without --input), or pipe the input in", ExitCodes.Usage);
            using Stream stdin = Console.OpenStandardInput();
            using var bytes = new MemoryStream();
            stdin.CopyTo(bytes);
            return bytes.ToArray();
        }
        if (!File.Exists(spec))
            throw new BuildException($"--input {spec}: no such file", ExitCodes.Usage);
        return File.ReadAllBytes(spec);
    }

    /// <summary>An interactive run: stdin is a terminal (on Linux, where stty puts it in raw mode) and no --input.</summary>
    public static bool CanBeInteractive => !Console.IsInputRedirected && OperatingSystem.IsLinux();
}
