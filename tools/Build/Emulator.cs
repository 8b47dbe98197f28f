using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Tandem.Build;

internal enum EmulatorKind { Auto, Qemu, Bochs, Kvm }

internal sealed record RunOptions(EmulatorKind Emulator, string Cmdline, int Cpus, int MemoryMiB, bool Uefi, int TimeoutSeconds, bool Echo);

/// <summary>What one boot produced: the kernel's own status (null if it never said) and the serial text.</summary>
internal sealed record RunResult(int? KernelStatus, bool TimedOut, string Serial, string Description, int ProcessExit);

/// <summary>
/// Boots an ISO under QEMU (TCG or KVM) or Bochs, streams the serial console, and reads the
/// kernel's "tandem: exit status N" line. The kernel ends the emulator itself (QEMU's
/// isa-debug-exit, Bochs' magic breakpoint); the timeout only catches hangs.
/// </summary>
internal static partial class Emulator
{
    [GeneratedRegex(@"tandem: exit status (\d+)")]
    private static partial Regex StatusLine();

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
        bool needsVmx = !o.Cmdline.Contains("vmx=off") && (o.Cmdline.Contains("vm=") || Regex.IsMatch(o.Cmdline, @"(^|\s)test(\s|=|$)"));
        return needsVmx && !o.Uefi ? EmulatorKind.Bochs : EmulatorKind.Qemu;
    }

    public static RunResult Run(string iso, RunOptions o, string workDir)
    {
        EmulatorKind kind = Resolve(o);
        Directory.CreateDirectory(workDir);
        return kind == EmulatorKind.Bochs ? RunBochs(iso, o, workDir) : RunQemu(iso, o, workDir, kind == EmulatorKind.Kvm);
    }

    private static RunResult RunQemu(string iso, RunOptions o, string workDir, bool kvm)
    {
        Tools.EnsureQemu(o.Uefi);
        var args = new List<string>
        {
            "-cdrom", iso, "-m", o.MemoryMiB.ToString(), "-smp", o.Cpus.ToString(),
            "-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4",
        };
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
        string name = (kvm ? "QEMU/KVM" : "QEMU") + (o.Uefi ? " UEFI" : " BIOS") + $", {o.Cpus} cpu";
        return Stream("qemu-system-x86_64", args, o, name, serialFile: null);
    }

    private static RunResult RunBochs(string iso, RunOptions o, string workDir)
    {
        Tools.EnsureBochs();
        if (o.Uefi)
            throw new BuildException("--uefi is not supported with Bochs (no OVMF for Bochs here); use --emulator qemu");
        string serial = Path.Combine(workDir, "serial.txt");
        string log = Path.Combine(workDir, "bochs.log");
        string rc = Path.Combine(workDir, "bochs.rc");
        string config = Path.Combine(workDir, "bochsrc");
        File.WriteAllText(serial, "");
        File.WriteAllText(rc, "continue\nquit\n");
        File.WriteAllText(config, $"""
            megs: {o.MemoryMiB}
            cpu: model=tigerlake, count={o.Cpus}, ips=80000000, reset_on_triple_fault=0
            clock: sync=none, time0=1767225600
            romimage: file=/usr/share/bochs/BIOS-bochs-latest
            vgaromimage: file=/usr/share/vgabios/vgabios.bin
            ata0-master: type=cdrom, path={iso}, status=inserted
            boot: cdrom
            com1: enabled=1, mode=file, dev={serial}
            display_library: term
            magic_break: enabled=1
            speaker: enabled=0
            sound: driver=dummy
            log: {log}
            error: action=report
            panic: action=fatal
            debugger_log: -

            """);
        string command = $"bochs -q -f {config} -rc {rc}";
        string name = $"Bochs tigerlake, {o.Cpus} cpu";
        return Stream("script", ["-qec", command, "/dev/null"], o, name, serial);
    }

    /// <summary>Runs the emulator, echoing serial lines as they come, until it exits or times out.</summary>
    private static RunResult Stream(string file, List<string> args, RunOptions o, string name, string? serialFile)
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
        var sync = new object();
        void Emit(string line)
        {
            line = Ansi().Replace(line, "").TrimEnd('\r');
            lock (sync)
            {
                text.Append(line).Append('\n');
                if (o.Echo)
                    Console.WriteLine(line);
            }
        }
        if (o.Echo)
            Console.Error.WriteLine($"run: booting on {name} (timeout {o.TimeoutSeconds} s)");
        using var p = Process.Start(psi) ?? throw new BuildException($"could not start {file}");
        p.StandardInput.Close();
        var stderr = new System.Text.StringBuilder();
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (stderr) stderr.AppendLine(e.Data); };
        p.BeginErrorReadLine();
        if (serialFile == null)
        {
            p.OutputDataReceived += (_, e) => { if (e.Data != null) Emit(e.Data); };
            p.BeginOutputReadLine();
        }
        else
        {
            p.OutputDataReceived += (_, _) => { };
            p.BeginOutputReadLine();
        }
        var watch = Stopwatch.StartNew();
        long serialPos = 0;
        string partial = "";
        bool timedOut = false;
        while (!p.WaitForExit(200))
        {
            if (serialFile != null)
                (serialPos, partial) = Tail(serialFile, serialPos, partial, Emit);
            if (watch.Elapsed.TotalSeconds > o.TimeoutSeconds)
            {
                timedOut = true;
                try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                p.WaitForExit();
                break;
            }
        }
        p.WaitForExit();
        if (serialFile != null)
        {
            (serialPos, partial) = Tail(serialFile, serialPos, partial, Emit);
            if (partial.Length > 0)
                Emit(partial);
        }
        string serialText;
        lock (sync)
            serialText = text.ToString();
        var m = StatusLine().Match(serialText);
        int? status = m.Success ? int.Parse(m.Groups[1].Value) : null;
        if (timedOut)
            Console.Error.WriteLine($"run: TIMEOUT after {o.TimeoutSeconds} s on {name}: the kernel did not end the run (hang?); killed the emulator");
        else if (status == null)
        {
            Console.Error.WriteLine($"run: {name} exited (code {p.ExitCode}) without the kernel reporting a status");
            string err = stderr.ToString().Trim();
            if (err.Length > 0)
                Console.Error.WriteLine(err.Length > 2000 ? err[^2000..] : err);
        }
        return new RunResult(status, timedOut, serialText, name, timedOut ? -1 : p.ExitCode);
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

    [GeneratedRegex(@"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|[\x00-\x08\x0b\x0c\x0e-\x1f]")]
    private static partial Regex Ansi();
}
