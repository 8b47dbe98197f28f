using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Tandem.Build;

/// <summary>
/// The Linux part of <c>bench</c> (issue 10 §5): how long Debian's kernel takes to reach its shell
/// (the initramfs's TANDEM-SHELL-READY) on plain Bochs and on Tandem under the same Bochs, with 1
/// and with 2 vCPUs (Bochs gets as many CPUs as the guest has vCPUs). Six boots, each in a run
/// folder of its own, in this order for each vCPU count so that a change in the machine's load
/// hits all three alike:
/// <list type="number">
/// <item>plain Bochs: an ISO whose GRUB boots the module <c>linux</c> with <c>linux-initrd</c> and
/// Tandem's default Linux command line (kernel/Virt/GuestRunner.cs, read from the source), plus
/// <see cref="PlainExtra"/>; 256 MiB, what the guest gets on Tandem. GRUB prints a line of ours just
/// before it boots Linux: the hand-over.</item>
/// <item>Tandem, bzImage: <c>vm=linux,cpus=N</c>, from the kernel's "vm: starting" line.</item>
/// <item>Tandem, PVH: <c>vm=linux-vmlinux,initrd=linux-initrd,cpus=N</c>, the same points.</item>
/// </list>
/// After the marker the driver types <c>poweroff -f</c> (the run's --input machinery), so Tandem
/// prints the VM's exit counts and ends, and plain Bochs ends on the ACPI power-off. Each moment is
/// taken in three clocks (<see cref="BenchClock"/>): the run's timestamped serial lines
/// (<see cref="RunResult.Lines"/>, wall), Bochs' CPU time when those lines appear
/// (<see cref="BochsCpuWatch"/>) and Bochs' emulated time of their last byte (bochs.log with
/// <see cref="SerialDebug"/>); <see cref="LinuxBenchReport"/> makes the table.
/// </summary>
internal static partial class LinuxBench
{
    public const string Marker = "TANDEM-SHELL-READY";
    public const string VmStarting = "vm: starting '";
    public const string GrubLoading = "linux-bench: grub: loading linux and linux-initrd";
    public const string GrubHandover = "linux-bench: grub: handing over to Linux";

    /// <summary>
    /// Added to plain Bochs' command line only, each because of what Bochs' tigerlake does that
    /// Tandem's guest platform does not:
    /// <list type="bullet">
    /// <item><c>clearcpuid=580</c> clears X86_FEATURE_FSRM (word 18, bit 4). Bochs has no
    /// IA32_MISC_ENABLE, so Linux takes fast strings as off and drops ERMS, and 6.1's memmove with
    /// FSRM but without ERMS corrupts the kernel, which triple-faults right after "LSM: Security
    /// Framework initializing". (Tandem's MISC_ENABLE reads with fast strings on.)</item>
    /// <item><c>tsc_early_khz=80000</c>: Bochs' CPUID leaves 0x15/0x16 claim a 2.4 GHz TSC while its
    /// TSC counts instructions (80,000,000 a second of emulated time: ips in Emulator.RunBochs), so
    /// Linux's clock would run 30 times slow: a timer tick every 120 ms of emulated time instead of 4,
    /// udelay() 30 times too short. Tandem reports the TSC it measured (80 MHz) in those leaves;
    /// with this the plain guest gets the same, and refines it to 80.000 MHz itself.</item>
    /// </list>
    /// </summary>
    public const string PlainExtra = "clearcpuid=580 tsc_early_khz=80000";

    public const int PlainMiB = 256, TandemMiB = 1024, TimeoutSeconds = 1800;

    /// <summary>
    /// A bochsrc line for every boot: Bochs logs each COM1 register access with its tick count
    /// (about 100,000 lines a boot, mostly the line-status polls), from which
    /// <see cref="LinuxBenchReport.EmulatedSecondsAt"/> finds the emulated time of each mark.
    /// </summary>
    public const string SerialDebug = "debug: action=ignore, serial=report";
    public static readonly int[] VcpuCounts = [1, 2];
    private static readonly byte[] Poweroff = "poweroff -f\n"u8.ToArray();

    public static string ResultsDir => Path.Combine(Repo.Out, "bench", "linux", "results");

    [GeneratedRegex(@"command line ""([^""]*)""")]
    private static partial Regex StartingCmdline();

    /// <summary>Tandem's default command line for a Linux guest, as the kernel's source states it.</summary>
    public static string DefaultCmdline()
    {
        string source = Path.Combine(Repo.Root, "kernel", "Virt", "GuestRunner.cs");
        return (File.Exists(source) ? LinuxBenchReport.DefaultCmdline(File.ReadAllText(source)) : null)
            ?? throw new BuildException($"no LinuxDefaultCmdline = \"...\" in {Path.GetRelativePath(Repo.Root, source)}: the Linux bench boots plain Bochs with that command line");
    }

    /// <summary>Runs the six boots and prints the table; returns the boots (empty when the guest is unavailable) and the table's lines.</summary>
    public static (IReadOnlyList<LinuxBoot> Boots, IReadOnlyList<string> Table, string? Json) Run()
    {
        Console.WriteLine("=== bench: Linux boot to " + Marker + " (Bochs tigerlake: plain, Tandem bzImage, Tandem PVH; 1 and 2 vCPUs)");
        Tools.EnsureAll();
        Driver.BuildIfNeeded();
        LinuxGuest.Ensure();
        if (Directory.Exists(ResultsDir))
            Directory.Delete(ResultsDir, recursive: true);
        string? missing = LinuxGuest.UnavailableReason
            ?? LinuxGuest.ModuleNames.Where(n => !File.Exists(LinuxGuest.PathOf(n))).Select(n => $"no module {n} in {Path.GetRelativePath(Repo.Root, LinuxGuest.OutDir)}").FirstOrDefault();
        if (missing != null)
        {
            string line = $"linux: not run: the Linux guest is unavailable ({missing})";
            Console.WriteLine(line);
            return ([], [line], null);
        }
        string cmdline = DefaultCmdline();
        var plan = VcpuCounts.SelectMany(n => new[] { (LinuxBootKind.Plain, n), (LinuxBootKind.BzImage, n), (LinuxBootKind.Pvh, n) }).ToList();
        Console.WriteLine($"linux: {plan.Count} boots of half a minute to 2 minutes each (longer while other emulators share the CPUs); " +
            $"plain Bochs gets '{cmdline} {PlainExtra}' from GRUB ('{PlainExtra}' for what Bochs differs in: see LinuxBench.PlainExtra), Tandem its default line; " +
            $"after the marker the driver types 'poweroff -f'");
        var boots = new List<LinuxBoot>();
        for (int i = 0; i < plan.Count; i++)
            boots.Add(Boot(plan[i].Item1, plan[i].Item2, i + 1, plan.Count, cmdline));

        var table = LinuxBenchReport.Table(boots);
        Console.WriteLine();
        Console.WriteLine("linux: boot to " + Marker + ", Bochs tigerlake (ips=80000000, clock sync=none)");
        foreach (string l in table)
            Console.WriteLine(l);
        Directory.CreateDirectory(ResultsDir);
        string json = Path.Combine(ResultsDir, "linux-boot.json");
        File.WriteAllText(json, LinuxBenchReport.Json(boots, "Bochs 2.7 tigerlake, ips=80000000, clock sync=none", cmdline, PlainExtra));
        return (boots, table, json);
    }

    private static LinuxBoot Boot(LinuxBootKind kind, int vcpus, int index, int count, string defaults)
    {
        var boot = new LinuxBoot(kind, vcpus);
        string name = kind switch { LinuxBootKind.Plain => "plain", LinuxBootKind.BzImage => "bzimage", _ => "pvh" };
        string dir = RunFolder.Create($"bench-linux-{name}-bochs-{vcpus}cpu");
        boot.RunDir = Path.GetRelativePath(Repo.Root, dir);
        string cmdline = kind switch
        {
            LinuxBootKind.Plain => $"{defaults} {PlainExtra}",
            LinuxBootKind.BzImage => $"vm={LinuxGuest.KernelModule},cpus={vcpus}",
            _ => $"vm={LinuxGuest.VmlinuxModule},initrd={LinuxGuest.InitrdModule},cpus={vcpus}",
        };
        int memory = kind == LinuxBootKind.Plain ? PlainMiB : TandemMiB;
        string iso = Path.Combine(dir, kind == LinuxBootKind.Plain ? "linux.iso" : "tandem.iso");
        if (kind == LinuxBootKind.Plain)
            BuildPlainIso(iso, cmdline);
        else
            ImageBuilder.BuildIso(iso, cmdline, menu: false, Guests.Modules(cmdline));
        string[] marks = kind == LinuxBootKind.Plain ? [GrubHandover, Marker] : [VmStarting, Marker];
        Console.WriteLine($"linux: boot {index}/{count}: {boot.Label}, {vcpus} vCPU{(vcpus == 1 ? "" : "s")} (Bochs --cpus {vcpus}, {memory} MiB, " +
            $"{(kind == LinuxBootKind.Plain ? "GRUB: linux " : "Tandem: ")}{cmdline}), logs in {boot.RunDir}/ ...");

        var o = new RunOptions(EmulatorKind.Bochs, kind == LinuxBootKind.Plain ? "" : cmdline, vcpus, memory, false, TimeoutSeconds, Echo: false)
        {
            Input = Poweroff,
            InputAfter = Marker,
            Extra = [SerialDebug],
        };
        // The emulator runner reports on stderr what is routine here (plain Bochs ends without a
        // Tandem status; --input starts): keep it, and show it only when the boot went wrong.
        var captured = new StringWriter();
        TextWriter stderr = Console.Error;
        RunResult r;
        double?[] cpuAt;
        using (var watch = new BochsCpuWatch(dir, marks))
        {
            Console.SetError(TextWriter.Synchronized(captured));
            try
            {
                r = Emulator.Run(iso, o, dir);
            }
            finally
            {
                Console.SetError(stderr);
            }
            cpuAt = watch.Finish();
        }
        if (r.StoppedBy != null)
            throw new BuildException($"the Linux bench was stopped by {r.StoppedBy}", r.StopExitCode);

        double? At(string text) => r.Lines.Where(l => l.Line.Contains(text, StringComparison.Ordinal)).Select(l => (double?)l.Seconds).FirstOrDefault();
        double?[] emulatedAt = EmulatedAt(dir, marks);
        if (kind == LinuxBootKind.Plain)
        {
            boot.Start = new Moment(0, 0, 0);
            boot.Handover = new Moment(cpuAt[0], At(GrubHandover), emulatedAt[0]);
        }
        else
            boot.Start = new Moment(cpuAt[0], At(VmStarting), emulatedAt[0]);
        boot.Ready = new Moment(cpuAt[1], At(Marker), emulatedAt[1]);

        var problems = new List<string>();
        if (boot.Ready.Wall == null)
            problems.Add(r.TimedOut ? $"no {Marker} within {TimeoutSeconds} s" : $"the run ended without {Marker}");
        else if (boot.Seconds(BenchClock.Wall) == null)
            problems.Add($"no {(kind == LinuxBootKind.Plain ? "'" + GrubHandover + "'" : "'" + VmStarting.TrimEnd('\'', ' ') + "'")} line");
        if (kind == LinuxBootKind.Plain)
        {
            if (boot.Ready.Wall != null && r.TimedOut)
                problems.Add($"Bochs did not end after poweroff -f (killed after {TimeoutSeconds} s)");
        }
        else
        {
            boot.Exits = VmExitCounts.Find(r.Serial);
            string? starting = r.Lines.Select(l => l.Line).FirstOrDefault(l => l.Contains(VmStarting, StringComparison.Ordinal));
            Match passed = starting != null ? StartingCmdline().Match(starting) : Match.Empty;
            if (passed.Success && passed.Groups[1].Value != defaults)
                problems.Add($"Tandem passed \"{passed.Groups[1].Value}\" to Linux, plain Bochs got \"{defaults}\"");
            if (boot.Exits == null)
                problems.Add("no 'vm N: exit status' line");
            if (r.KernelStatus != 0)
                problems.Add(r.KernelStatus == null ? "Tandem reported no status" : $"Tandem's status {r.KernelStatus}");
        }
        if (problems.Count > 0)
            boot.Problem = string.Join("; ", problems);

        string Fmt(double? s, string format = "F1") => s.HasValue ? s.Value.ToString(format, CultureInfo.InvariantCulture) + " s" : "-";
        Console.WriteLine(boot.Ready.Wall.HasValue
            ? $"linux:   {Marker} {Fmt(boot.Seconds(BenchClock.Cpu))} of Bochs CPU after {boot.From} (wall {Fmt(boot.Seconds(BenchClock.Wall))}, " +
                $"emulated {Fmt(boot.Seconds(BenchClock.Emulated), "F2")}; {boot.From} at {Fmt(boot.BeforeGuest(BenchClock.Wall))} wall)" +
                (boot.Exits != null ? $"; {boot.Exits.Exits} exits, top {boot.Exits.Top(3)}" : "")
            : $"linux:   FAILED: {boot.Problem}");
        if (boot.Problem != null)
        {
            if (boot.Ready.Wall.HasValue)
                Console.WriteLine($"linux:   note: {boot.Problem}");
            foreach (string l in captured.ToString().Split('\n').Where(l => l.Trim().Length > 0).TakeLast(40))
                Console.WriteLine("  | " + l.TrimEnd('\r'));
            Console.WriteLine($"linux:   last serial lines ({boot.RunDir}/serial.log):");
            foreach (var (_, l) in r.Lines.TakeLast(15))
                Console.WriteLine("  | " + l);
        }
        return boot;
    }

    [GeneratedRegex(@"\bips=(\d+)")]
    private static partial Regex Ips();

    /// <summary>The emulated seconds of each mark, from the run's bochs.log and the ips of its bochsrc (nulls without them).</summary>
    private static double?[] EmulatedAt(string dir, string[] marks)
    {
        string log = Path.Combine(dir, "bochs.log"), config = Path.Combine(dir, "bochsrc");
        Match ips = File.Exists(config) ? Ips().Match(File.ReadAllText(config)) : Match.Empty;
        if (!File.Exists(log) || !ips.Success)
            return new double?[marks.Length];
        return LinuxBenchReport.EmulatedSecondsAt(File.ReadLines(log), marks, double.Parse(ips.Groups[1].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// An ISO whose GRUB boots Linux itself, as ImageBuilder.BuildIso's does Tandem: the same serial
    /// console and settings, the modules <c>linux</c> and <c>linux-initrd</c> as /boot/linux and
    /// /boot/linux-initrd, and a line before loading them and one just before <c>boot</c>.
    /// </summary>
    private static void BuildPlainIso(string iso, string cmdline)
    {
        string stage = Path.Combine(Path.GetDirectoryName(iso)!, "iso-stage");
        Directory.CreateDirectory(Path.Combine(stage, "boot", "grub"));
        File.Copy(LinuxGuest.PathOf(LinuxGuest.KernelModule), Path.Combine(stage, "boot", LinuxGuest.KernelModule));
        File.Copy(LinuxGuest.PathOf(LinuxGuest.InitrdModule), Path.Combine(stage, "boot", LinuxGuest.InitrdModule));
        var cfg = new StringBuilder();
        cfg.Append("serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n");
        cfg.Append("set timeout=0\nset gfxpayload=text\n");
        cfg.Append("menuentry \"Linux (plain Bochs, Tandem's Linux bench)\" {\n");
        cfg.Append($"  echo '{GrubLoading}'\n");
        cfg.Append($"  linux /boot/{LinuxGuest.KernelModule} {ImageBuilder.GrubQuote(cmdline)}\n");
        cfg.Append($"  initrd /boot/{LinuxGuest.InitrdModule}\n");
        cfg.Append($"  echo '{GrubHandover}'\n");
        cfg.Append("  boot\n}\n");
        File.WriteAllText(Path.Combine(stage, "boot", "grub", "grub.cfg"), cfg.ToString());
        var env = new Dictionary<string, string> { ["SOURCE_DATE_EPOCH"] = "1767225600" };
        Shell.Check("grub-mkrescue", ["-o", iso, stage], "grub-mkrescue (the Linux bench's plain ISO)", env: env);
        Directory.Delete(stage, recursive: true);
    }
}

/// <summary>
/// Watches one Bochs run from the side (the emulator runner is left as it is): tails the run
/// folder's serial.log, which the runner writes line by line, and when a line first contains one of
/// the marks, reads the Bochs process's CPU time (utime + stime in /proc/PID/stat, in the kernel's
/// 100 Hz clock ticks). Bochs runs every emulated CPU on one host thread, so its CPU time is what
/// the wall clock would show on an idle machine, whatever else shares the CPUs. The process is the
/// bochs-bin whose command line names the run folder's bochsrc.
/// </summary>
internal sealed class BochsCpuWatch : IDisposable
{
    private const double ClockTicksPerSecond = 100;

    private readonly string _serial;
    private readonly string _bochsrc;
    private readonly string[] _marks;
    private readonly double?[] _seen;
    private readonly Thread _thread;
    private volatile bool _stop;
    private int _pid = -1;
    private long _position;
    private string _partial = "";

    public BochsCpuWatch(string runDir, string[] marks)
    {
        _serial = Path.Combine(runDir, "serial.log");
        _bochsrc = Path.Combine(runDir, "bochsrc");
        _marks = marks;
        _seen = new double?[marks.Length];
        _thread = new Thread(Loop) { IsBackground = true, Name = "bochs cpu watch" };
        _thread.Start();
    }

    /// <summary>Stops watching; the CPU seconds at each mark (null: not seen, or Bochs not found).</summary>
    public double?[] Finish()
    {
        _stop = true;
        _thread.Join();
        return (double?[])_seen.Clone();
    }

    public void Dispose()
    {
        _stop = true;
        _thread.Join();
    }

    private void Loop()
    {
        while (!_stop)
        {
            try
            {
                Poll();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
            {
            }
            Thread.Sleep(50);
        }
    }

    private void Poll()
    {
        if (_pid < 0)
            _pid = FindBochs();
        if (!File.Exists(_serial))
            return;
        using var f = new FileStream(_serial, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        if (f.Length < _position)
            (_position, _partial) = (0, "");
        if (f.Length == _position)
            return;
        f.Seek(_position, SeekOrigin.Begin);
        var buffer = new byte[f.Length - _position];
        int read = f.Read(buffer, 0, buffer.Length);
        _position += read;
        string[] lines = (_partial + Encoding.UTF8.GetString(buffer, 0, read)).Split('\n');
        _partial = lines[^1];
        for (int i = 0; i < lines.Length - 1; i++)
        {
            for (int m = 0; m < _marks.Length; m++)
            {
                if (_seen[m] == null && lines[i].Contains(_marks[m], StringComparison.Ordinal) && _pid > 0)
                    _seen[m] = CpuSeconds(_pid);
            }
        }
    }

    private int FindBochs()
    {
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid))
                continue;
            try
            {
                string[] argv = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0');
                if (argv.Length > 0 && Path.GetFileName(argv[0]) == "bochs-bin" && argv.Contains(_bochsrc))
                    return pid;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        return -1;
    }

    private static double? CpuSeconds(int pid)
    {
        try
        {
            string stat = File.ReadAllText($"/proc/{pid}/stat");
            // Fields after "(comm) ": state is field 3, utime 14, stime 15.
            string[] f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return (long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture)) / ClockTicksPerSecond;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }
}
