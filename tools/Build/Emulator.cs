using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Tandem.Build;

internal enum EmulatorKind { Auto, Qemu, Bochs, Kvm }

internal sealed record RunOptions(EmulatorKind Emulator, string Cmdline, int Cpus, int MemoryMiB, bool Uefi, int TimeoutSeconds, bool Echo)
{
    /// <summary>Arguments after '--': QEMU options, or bochsrc lines for Bochs.</summary>
    public IReadOnlyList<string> Extra { get; init; } = [];

    /// <summary>--serial FILE: a copy of the serial console.</summary>
    public string? SerialCopy { get; init; }

    /// <summary>
    /// An interactive run (run on a terminal): keys go to COM1, output reaches the terminal byte by
    /// byte, and a TimeoutSeconds of 0 means no timeout.
    /// </summary>
    public bool Interactive { get; init; }

    /// <summary>--input: bytes to send to COM1, one every 20 ms, once <see cref="InputAfter"/> has shown.</summary>
    public byte[]? Input { get; init; }

    /// <summary>--input-after TEXT: the serial output that starts the --input (null: at once).</summary>
    public string? InputAfter { get; init; }

    /// <summary>--gdb[=PORT]: QEMU starts paused with its gdbstub on this TCP port (null: no gdbstub).</summary>
    public int? GdbPort { get; init; }
}

/// <summary>
/// What one boot produced: the kernel's own status (null if it never said), the serial text, and
/// the run folder with its logs (serial.log, the emulator's own output and log).
/// </summary>
internal sealed record RunResult(int? KernelStatus, bool TimedOut, string Serial, string Description, int ProcessExit, string RunDir)
{
    /// <summary>Each serial line with the seconds since boot at which the host saw it.</summary>
    public IReadOnlyList<(double Seconds, string Line)> Lines { get; init; } = [];

    public string SerialLog => Path.Combine(RunDir, "serial.log");

    /// <summary>Set when the user or a signal stopped an interactive or scripted run ("Ctrl-C", "SIGTERM").</summary>
    public string? StoppedBy { get; init; }

    /// <summary>The driver's exit code for a stopped run (130 for Ctrl-C, 128 + the signal otherwise).</summary>
    public int StopExitCode { get; init; }
}

/// <summary>
/// Boots an ISO under QEMU (TCG or KVM) or Bochs, streams the serial console, and reads the
/// kernel's "tandem: exit status N" line. The kernel ends the emulator itself (QEMU's
/// isa-debug-exit, Bochs' magic breakpoint); the timeout only catches hangs. Without input the
/// serial console is QEMU's stdout or Bochs' com1 file; an interactive run or one with --input
/// connects COM1 to a TCP socket of the driver's instead (<see cref="SerialConsole"/>).
/// </summary>
internal static partial class Emulator
{
    /// <summary>True only when /dev/kvm exists and its guests really get VT-x (nested on Intel).</summary>
    public static bool KvmOffersVmx(out string why)
    {
        if (!File.Exists("/dev/kvm"))
        {
            why = "no /dev/kvm";
            return false;
        }
        string nested = "/sys/module/kvm_intel/parameters/nested";
        if (!File.Exists(nested))
        {
            why = "/dev/kvm is not kvm_intel (no nested VT-x for guests)";
            return false;
        }
        string value = File.ReadAllText(nested).Trim();
        if (value != "Y" && value != "1")
        {
            why = "kvm_intel nested virtualisation is off";
            return false;
        }
        why = "kvm_intel with nested VT-x";
        return true;
    }

    public static EmulatorKind Resolve(RunOptions o)
    {
        if (o.Emulator != EmulatorKind.Auto)
            return o.Emulator;
        if (KvmOffersVmx(out _))
            return EmulatorKind.Kvm;
        // Bochs has no gdbstub here (BochsHasNoGdbstub): --gdb always takes QEMU.
        return NeedsVmx(o) && !o.Uefi && o.GdbPort == null ? EmulatorKind.Bochs : EmulatorKind.Qemu;
    }

    /// <summary>The command line runs a VM (vm=) or the in-kernel tests without vmx=off.</summary>
    public static bool NeedsVmx(RunOptions o) =>
        !o.Cmdline.Contains("vmx=off") && (o.Cmdline.Contains("vm=") || o.Cmdline.Contains("fuzz=") || Regex.IsMatch(o.Cmdline, @"(^|\s)test(\s|=|$)"));

    /// <summary>
    /// Debian's Bochs 2.7 is built with its own debugger (its changelog: "Enable memtype and the x86
    /// debugger"), which excludes the gdbstub (--enable-gdb-stub); /usr/bin/bochs-bin carries the
    /// refusal "Bochs is not compiled with gdbstub support" that a gdbstub: bochsrc line gets.
    /// </summary>
    public const string BochsHasNoGdbstub =
        "--gdb is not available with Bochs: Debian's Bochs 2.7 is built with its internal debugger and without the gdbstub " +
        "(a 'gdbstub:' bochsrc line gets \"Bochs is not compiled with gdbstub support\"); use --emulator qemu (QEMU has no VMX here, so vm= and the VMX tests fail there)";

    /// <summary>The largest guest RAM each emulator takes (Bochs refuses megs/host_size above 2048).</summary>
    public static int MaxMemoryMiB(EmulatorKind kind) => kind == EmulatorKind.Bochs ? 2048 : 16384;

    public static string Name(EmulatorKind kind) => kind switch
    {
        EmulatorKind.Bochs => "Bochs",
        EmulatorKind.Kvm => "QEMU/KVM",
        _ => "QEMU",
    };

    /// <summary>A short name for the run folder, e.g. bochs-2cpu or qemu-uefi-1cpu.</summary>
    public static string ConfigName(RunOptions o, EmulatorKind kind) =>
        $"{kind.ToString().ToLowerInvariant()}{(o.Uefi ? "-uefi" : "")}-{o.Cpus}cpu";

    /// <summary>
    /// Picks the emulator and checks the options against it before anything is built or booted;
    /// a mismatch is a usage error that names the emulator.
    /// </summary>
    public static EmulatorKind Check(RunOptions o)
    {
        if (o.Emulator == EmulatorKind.Kvm && !KvmOffersVmx(out string why))
            throw new BuildException($"--emulator kvm: KVM here cannot give guests VT-x ({why}); use --emulator bochs for VMX or qemu without it", ExitCodes.Usage);
        EmulatorKind kind = Resolve(o);
        string picked = o.Emulator == EmulatorKind.Auto ? $" (picked by --emulator auto{(kind == EmulatorKind.Bochs ? ": the command line needs VMX" : "")})" : "";
        int max = MaxMemoryMiB(kind);
        if (o.MemoryMiB > max)
            throw new BuildException($"--memory {o.MemoryMiB} MiB: {Name(kind)}{picked} takes at most {max} MiB" +
                (kind == EmulatorKind.Bochs ? " (it refuses a larger megs/host_size)" : ""), ExitCodes.Usage);
        if (o.Uefi && kind == EmulatorKind.Bochs)
            throw new BuildException($"--uefi is not supported with Bochs{picked} (no OVMF for Bochs here); use --emulator qemu", ExitCodes.Usage);
        if (o.GdbPort != null && kind == EmulatorKind.Bochs)
            throw new BuildException(BochsHasNoGdbstub, ExitCodes.Usage);
        return kind;
    }

    public static RunResult Run(string iso, RunOptions o, string workDir)
    {
        EmulatorKind kind = Check(o);
        Directory.CreateDirectory(workDir);
        using SerialConsole? console = SerialConsole.For(o);
        return kind == EmulatorKind.Bochs ? RunBochs(iso, o, workDir, console) : RunQemu(iso, o, workDir, kind == EmulatorKind.Kvm, console);
    }

    private static RunResult RunQemu(string iso, RunOptions o, string workDir, bool kvm, SerialConsole? console)
    {
        Tools.EnsureQemu(o.Uefi);
        var args = new List<string> { "-cdrom", iso, "-m", o.MemoryMiB.ToString(), "-smp", o.Cpus.ToString() };
        // With a console, QEMU connects COM1 to the driver's socket (a client: the driver listens).
        if (console != null)
            args.AddRange(["-chardev", $"socket,id=com1,host=127.0.0.1,port={console.Port},nodelay=on", "-serial", "chardev:com1"]);
        else
            args.AddRange(["-serial", "stdio"]);
        args.AddRange(["-display", "none", "-monitor", "none", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4"]);
        if (kvm)
            args.AddRange(["-enable-kvm", "-cpu", "host"]);
        else
            args.AddRange(["-cpu", "max"]);
        if (o.Uefi)
        {
            string vars = Path.Combine(workDir, "OVMF_VARS.fd");
            File.Copy("/usr/share/OVMF/OVMF_VARS_4M.fd", vars, overwrite: true);
            args.AddRange(["-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                "-drive", $"if=pflash,format=raw,file={vars}"]);
        }
        if (o.GdbPort is int port)
            args.AddRange(["-gdb", $"tcp::{port}", "-S"]);
        args.AddRange(o.Extra);
        string name = (kvm ? "QEMU/KVM" : "QEMU") + (o.Uefi ? " UEFI" : " BIOS") + $", {o.Cpus} cpu";
        File.WriteAllText(Path.Combine(workDir, "command.txt"), "qemu-system-x86_64 " + string.Join(' ', args.Select(ShellQuote)) + "\n");
        return Stream("qemu-system-x86_64", args, o, name, workDir, serialFile: null, emulatorLog: null, console);
    }

    private static RunResult RunBochs(string iso, RunOptions o, string workDir, SerialConsole? console)
    {
        Tools.EnsureBochs();
        string serial = Path.Combine(workDir, "serial.log");
        string log = Path.Combine(workDir, "bochs.log");
        string rc = Path.Combine(workDir, "bochs.rc");
        string config = Path.Combine(workDir, "bochsrc");
        File.WriteAllText(serial, "");
        File.WriteAllText(rc, "continue\nquit\n");
        // With a console, Bochs connects COM1 to the driver's socket (socket-client: the driver
        // listens, so Bochs finds it at start-up); without, COM1 goes to serial.log, which the
        // driver tails.
        string com1 = console != null ? $"mode=socket-client, dev=127.0.0.1:{console.Port}" : $"mode=file, dev={serial}";
        File.WriteAllText(config, $"""
            megs: {o.MemoryMiB}
            cpu: model=tigerlake, count={o.Cpus}, ips=80000000, reset_on_triple_fault=0
            clock: sync=none, time0=1767225600
            romimage: file=/usr/share/bochs/BIOS-bochs-latest
            vgaromimage: file=/usr/share/vgabios/vgabios.bin
            ata0-master: type=cdrom, path={iso}, status=inserted
            boot: cdrom
            com1: enabled=1, {com1}
            display_library: term
            magic_break: enabled=1
            speaker: enabled=0
            sound: driver=dummy
            log: {log}
            error: action=report
            panic: action=fatal
            debugger_log: -

            """);
        // Bochs takes bochsrc lines after its options: the '-- EXTRA' arguments go there.
        string command = $"bochs -q -f {ShellQuote(config)} -rc {ShellQuote(rc)}" + string.Concat(o.Extra.Select(e => " " + ShellQuote(e)));
        File.WriteAllText(Path.Combine(workDir, "command.txt"), command + "\n");
        string name = $"Bochs tigerlake, {o.Cpus} cpu";
        return Stream("script", ["-qec", command, "/dev/null"], o, name, workDir, console != null ? null : serial, log, console);
    }

    private static string ShellQuote(string s) =>
        s.Length > 0 && s.All(c => char.IsAsciiLetterOrDigit(c) || "/._-=:,+@%".Contains(c)) ? s : "'" + s.Replace("'", "'\\''") + "'";

    /// <summary>
    /// Runs the emulator, echoing serial lines as they come, until it exits or times out. The
    /// serial text goes to the run folder's serial.log (and the --serial copy); the emulator's own
    /// output goes to emulator.out; when the kernel reported no status, both that output and the
    /// tail of the emulator's log are shown. With a console, the serial text comes from its socket
    /// (an interactive run echoes it byte by byte instead of by line), the run ends once the kernel
    /// has reported its status even if the emulator lingers, and Ctrl-C or a signal stops it.
    /// </summary>
    private static RunResult Stream(string file, List<string> args, RunOptions o, string name, string workDir, string? serialFile, string? emulatorLog,
        SerialConsole? console)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        var text = new System.Text.StringBuilder();
        var timed = new List<(double, string)>();
        var sync = new object();
        var watch = Stopwatch.StartNew();
        // An interactive run shows the serial bytes as they come (the console writes them); every
        // other run shows whole lines.
        bool echoLines = o.Echo && !(console != null && o.Interactive);
        // "run: still running: QEMU BIOS (1 cpu), 20 s" after 10 s without a line shown, on a
        // terminal or not (CI logs too); not in an interactive session, whose terminal is the guest's.
        Heartbeat? heartbeat = console != null && o.Interactive ? null
            : new Heartbeat(name.Contains(", ") ? name.Replace(", ", " (") + ")" : name, () => watch.Elapsed);
        // QEMU without a console writes the serial console to stdout, and the console's socket is
        // read here too, so serial.log is ours to write; Bochs without a console writes its own
        // serial.log (com1 mode=file) and only the --serial copy is ours.
        using StreamWriter? serialLog = serialFile == null ? new StreamWriter(Path.Combine(workDir, "serial.log")) : null;
        using StreamWriter? serialCopy = o.SerialCopy != null ? new StreamWriter(Path.GetFullPath(o.SerialCopy)) : null;
        void Emit(string line)
        {
            line = Ansi().Replace(line, "").TrimEnd('\r');
            lock (sync)
            {
                text.Append(line).Append('\n');
                timed.Add((watch.Elapsed.TotalSeconds, line));
                serialLog?.WriteLine(line);
                serialLog?.Flush();
                serialCopy?.WriteLine(line);
                serialCopy?.Flush();
                if (echoLines)
                {
                    Console.WriteLine(line);
                    heartbeat?.Shown();
                }
                if (console != null && console.StatusSeenAt == null && SerialStatus.IsStatusLine(line))
                    console.StatusSeenAt = watch.Elapsed.TotalSeconds;
            }
        }
        if (o.Echo)
        {
            string timeout = o.TimeoutSeconds > 0 ? $"timeout {o.TimeoutSeconds} s" : "no timeout";
            Console.Error.WriteLine($"run: booting on {name} ({timeout}; logs in {Path.GetRelativePath(Repo.Root, workDir)}/)");
            if (console != null && o.Interactive)
                Console.Error.WriteLine("run: " + ConsoleKeys.Hint);
        }
        if (Shell.Verbose)
            Console.Error.WriteLine($"+ {file} {string.Join(' ', args.Select(ShellQuote))}");
        using var p = Shell.Start(psi);
        p.StandardInput.Close();
        // The emulator's own output: QEMU's stderr, or everything Bochs prints on its terminal.
        using var own = new StreamWriter(Path.Combine(workDir, "emulator.out"));
        var ownLines = new List<string>();
        void Own(string? line)
        {
            if (line == null)
                return;
            line = Ansi().Replace(line, "").TrimEnd('\r');
            lock (ownLines)
            {
                ownLines.Add(line);
                own.WriteLine(line);
            }
            Match screen = BochsScreen().Match(line);
            if (screen.Success)
                DrainScreen(screen.Groups[1].Value);
        }
        p.ErrorDataReceived += (_, e) => Own(e.Data);
        p.BeginErrorReadLine();
        if (serialFile == null && console == null)
            p.OutputDataReceived += (_, e) => { if (e.Data != null) Emit(e.Data); };
        else
            p.OutputDataReceived += (_, e) => Own(e.Data);
        p.BeginOutputReadLine();
        long serialPos = 0;
        string partial = "";
        bool timedOut = false;
        string? lingered = null;
        try
        {
            console?.Start(Emit);
            while (!p.WaitForExit(200))
            {
                if (serialFile != null)
                    (serialPos, partial) = Tail(serialFile, serialPos, partial, Emit);
                if (heartbeat?.Poll() is string beat)
                    lock (sync)
                        Console.Error.WriteLine("run: " + beat);
                double elapsed = watch.Elapsed.TotalSeconds;
                if (console != null)
                {
                    if (console.StopReason != null)
                        lingered = "";
                    else if (!console.Connected && elapsed > SerialConsole.ConnectSeconds)
                        lingered = $"{name} did not connect its COM1 to the driver's socket within {SerialConsole.ConnectSeconds} s; killed it";
                    else if (console.StatusSeenAt is double at && elapsed > at + SerialConsole.AfterStatusSeconds)
                        lingered = $"{name} kept running {SerialConsole.AfterStatusSeconds} s after the kernel reported its status; killed it";
                    if (lingered != null)
                    {
                        Kill(p);
                        break;
                    }
                }
                if (o.TimeoutSeconds > 0 && elapsed > o.TimeoutSeconds)
                {
                    timedOut = true;
                    Kill(p);
                    break;
                }
            }
            p.WaitForExit();
        }
        finally
        {
            // Restores the terminal before anything else is printed.
            console?.Finish();
        }
        if (serialFile != null)
        {
            (serialPos, partial) = Tail(serialFile, serialPos, partial, Emit);
            if (partial.Length > 0)
                Emit(partial);
        }
        string serialText;
        lock (sync)
            serialText = text.ToString();
        int? status = SerialStatus.Parse(serialText);
        lock (ownLines)
            own.Flush();
        List<(double, string)> lines;
        lock (sync)
            lines = [.. timed];
        if (console?.StopReason is string reason)
        {
            Console.Error.WriteLine($"run: stopped by {reason}");
            return new RunResult(status, false, serialText, name, p.ExitCode, workDir) { Lines = lines, StoppedBy = reason, StopExitCode = console.StopExitCode };
        }
        if (!string.IsNullOrEmpty(lingered))
            Console.Error.WriteLine($"run: {lingered}");
        if (timedOut)
            Console.Error.WriteLine($"run: TIMEOUT after {o.TimeoutSeconds} s on {name}: the kernel did not end the run (hang?); killed the emulator");
        else if (status == null)
        {
            Console.Error.WriteLine($"run: {name} exited (code {p.ExitCode}) without the kernel reporting a status");
            ShowTail($"{name}'s own output", Path.Combine(workDir, "emulator.out"), ownLines.Where(l => l.Trim().Length > 0).ToList(), 30);
            if (emulatorLog != null)
                ShowTail($"{name}'s log", emulatorLog, File.Exists(emulatorLog) ? File.ReadAllLines(emulatorLog).ToList() : [], 30);
        }
        return new RunResult(status, timedOut, serialText, name, timedOut ? -1 : p.ExitCode, workDir) { Lines = lines };
    }

    private static void Kill(Process p)
    {
        try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        p.WaitForExit();
    }

    private static void ShowTail(string what, string path, List<string> lines, int count)
    {
        string rel = Path.GetRelativePath(Repo.Root, path);
        if (lines.Count == 0)
        {
            Console.Error.WriteLine($"run: {what} is empty ({rel})");
            return;
        }
        Console.Error.WriteLine($"run: {what}{(lines.Count > count ? $", last {count} of {lines.Count} lines" : "")} ({rel}):");
        foreach (string l in lines.TakeLast(count))
            Console.Error.WriteLine("  | " + l);
    }

    private static (long, string) Tail(string path, long position, string partial, Action<string> emit)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        if (f.Length <= position)
            return (position, partial);
        f.Seek(position, SeekOrigin.Begin);
        var buffer = new byte[f.Length - position];
        int read = f.Read(buffer, 0, buffer.Length);
        string chunk = partial + System.Text.Encoding.ASCII.GetString(buffer, 0, read);
        string[] lines = chunk.Split('\n');
        for (int i = 0; i < lines.Length - 1; i++)
            emit(lines[i]);
        return (position + read, lines[^1]);
    }

    /// <summary>
    /// Debian's Bochs (built with its debugger) draws the guest's screen on a pseudo-terminal of its
    /// own and says which. Nobody reads it otherwise, and once its buffer is full (a few KiB of screen
    /// updates, the IPS figure each wall-clock second among them) Bochs blocks in a write and the run
    /// stands still until the timeout: a long run on a loaded machine hung that way. A background
    /// thread reads it and throws the bytes away.
    /// </summary>
    private static void DrainScreen(string path)
    {
        var t = new Thread(() =>
        {
            try
            {
                using var screen = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
                byte[] buffer = new byte[4096];
                while (screen.Read(buffer, 0, buffer.Length) > 0)
                {
                }
            }
            catch (IOException)
            {
                // The emulator closed its end: the run is over.
            }
            catch (UnauthorizedAccessException e)
            {
                Console.Error.WriteLine($"run: cannot read Bochs' screen terminal {path} ({e.Message}); a long run may stall when its buffer fills");
            }
        })
        { IsBackground = true, Name = "bochs-screen" };
        t.Start();
    }

    [GeneratedRegex("Bochs connected to screen \"(/dev/pts/[0-9]+)\"")]
    private static partial Regex BochsScreen();

    [GeneratedRegex(@"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|[\x00-\x08\x0b\x0c\x0e-\x1f]")]
    private static partial Regex Ansi();
}
