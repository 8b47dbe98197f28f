using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Parsing;

namespace Tandem.Build;

/// <summary>
/// The driver's command line (System.CommandLine): verbs, their options, help, version, and usage
/// errors (exit code 64, with a suggestion for a misspelt verb or option). Everything after the
/// first <c>--</c> goes to the emulator unchanged (run only).
/// </summary>
internal static class Cli
{
    private const string ExitCodeHelp = """
        Exit codes:
          0-3  the kernel's own status ("tandem: exit status N": 0 success, 1 test failures,
               2 bad boot information, 3 panic)
          124  timeout: the emulator ran past --timeout and was killed
          125  the emulator ended without the kernel reporting a status
          130  an interactive run stopped with Ctrl-C or Ctrl-A X (129, 143: by SIGHUP, SIGTERM)
          64   usage: a bad verb, option or value (also a limit of the chosen emulator)
          69   a tool the driver needs is missing and could not be installed
          70   a build step or another step of the driver failed
        """;

    private static readonly Option<bool> s_verbose = new("--verbose", "-v")
    {
        Description = "Echo every command the driver runs",
        Recursive = true,
    };

    public static int Execute(string[] args)
    {
        int dashDash = Array.IndexOf(args, "--");
        string[] driverArgs = dashDash < 0 ? args : args[..dashDash];
        string[] extra = dashDash < 0 ? [] : args[(dashDash + 1)..];

        Command root = BuildRoot(extra);
        if (driverArgs.Length == 0)
        {
            root.Parse(["--help"]).Invoke();
            Console.Error.WriteLine("build: error: no verb given (see the list above)");
            return ExitCodes.Usage;
        }
        ParseResult result = root.Parse(driverArgs);
        if (result.Errors.Count > 0)
        {
            ReportErrors(result);
            return ExitCodes.Usage;
        }
        if (dashDash >= 0 && result.CommandResult.Command.Name != "run")
            throw new BuildException($"only 'run' passes arguments after '--' to the emulator (got '-- {string.Join(' ', extra)}')", ExitCodes.Usage);
        Shell.Verbose = result.GetValue(s_verbose);
        if (result.Action is not HelpAction)
            return result.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        // Help goes through HelpText, which shows an option whose value may be left out as it is
        // typed (System.CommandLine 3 has no public way to change an option's label).
        var help = new StringWriter();
        int code = result.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false, Output = help });
        Console.Write(HelpText.ShowOptionalValues(help.ToString(), s_optionalValues));
        if (result.CommandResult.Command.Name == "run")
            Console.WriteLine(ExitCodeHelp);
        return code;
    }

    private static Command BuildRoot(string[] extra)
    {
        var root = new Command("./build.sh", "Tandem's build driver: builds the kernel image, boots it under an emulator, runs the tests and benchmarks. See README.md; the exit codes are in './build.sh run --help'.")
        {
            s_verbose,
            new HelpOption(),
            new VersionOption(),
            ImageCommand(),
            RunCommand(extra),
            TestCommand(),
            BenchCommand(),
            MutateCommand(),
            FuzzCommand(),
            ReportCommand(),
        };
        return root;
    }

    private static Command ImageCommand()
    {
        var module = ModuleOption();
        var debugInfo = DebugInfoOption();
        var image = new Command("image", "Build out/tandem.elf, out/tandem.sym and the hybrid BIOS + UEFI ISO out/tandem.iso, and print their SHA-256 sums (two builds of the same tree are byte-identical).")
        {
            module, debugInfo,
        };
        image.SetAction(r =>
        {
            Repo.DebugInfo = r.GetValue(debugInfo);
            Guests.AddUserModules(r.GetValue(module) ?? []);
            return Driver.Image();
        });
        return image;
    }

    private static Command RunCommand(string[] extra)
    {
        var emulator = new Option<string>("--emulator")
        {
            Description = "auto: QEMU with KVM when /dev/kvm offers VT-x to guests, else Bochs when the command line needs VMX (vm=, or test without vmx=off), else QEMU",
            DefaultValueFactory = _ => "auto",
            HelpName = "auto|qemu|bochs|kvm",
        };
        emulator.AcceptOnlyFromAmong("auto", "qemu", "bochs", "kvm");
        var cmdline = new Option<string?>("--cmdline")
        {
            Description = "The kernel command line, e.g. \"test=timer\" or \"vm=hello32\" (see README.md). Not given: the default guest, Debian's Linux to a shell (vm=linux; hello32 without the Linux modules); \"\": Tandem with nothing to run",
            HelpName = "TEXT",
        };
        var cpus = IntOption("--cpus", "Number of CPUs", 1, 64, 2, "N");
        var memory = new Option<int>("--memory")
        {
            Description = "Guest RAM: a number of MiB, or with a suffix K, M, G (1G, 512M); Bochs takes at most 2048 MiB, QEMU 16384",
            DefaultValueFactory = _ => 512,
            CustomParser = r => Sizes.ParseMiB(r),
            HelpName = "SIZE",
        };
        var uefi = new Option<bool>("--uefi") { Description = "Boot through OVMF (QEMU only)" };
        var timeout = IntOption("--timeout", "Kill the emulator after this many seconds (default 120, 900 under Bochs; none in an interactive run)", 1, 86400, 0, "S");
        var serial = new Option<string?>("--serial")
        {
            Description = "Also write a copy of the serial console to FILE (every run keeps one in out/runs/<time>-<config>/serial.log)",
            HelpName = "FILE",
        };
        var input = new Option<string?>("--input")
        {
            Description = "Send the bytes of FILE ('-': stdin, piped) to the machine's COM1, one every 20 ms, instead of reading keys; output stays line by line",
            HelpName = "FILE|-",
        };
        var inputAfter = new Option<string?>("--input-after")
        {
            Description = "Start sending --input once the serial output shows TEXT (default: as soon as the emulator has connected COM1)",
            HelpName = "TEXT",
        };
        var module = ModuleOption();
        var debugInfo = DebugInfoOption();
        var gdb = new Option<int?>("--gdb")
        {
            Description = "Start QEMU paused with its gdbstub on TCP port PORT (default 1234; QEMU's -gdb tcp::PORT -S) and print how to attach gdb; implies --debug-info, and no timeout unless --timeout gives one. Bochs: not available (Debian's Bochs has no gdbstub)",
            HelpName = "PORT",
            Arity = ArgumentArity.ZeroOrOne,
            CustomParser = r =>
            {
                if (r.Tokens.Count == 0)
                    return DefaultGdbPort;
                string text = r.Tokens[0].Value;
                if (int.TryParse(text, out int n) && n >= 1 && n <= 65535)
                    return n;
                r.AddError($"--gdb needs a TCP port from 1 to 65535 (got '{text}')");
                return null;
            },
        };
        var run = new Command("run", "Build if needed, boot a copy of the ISO with --cmdline, stream the serial console, and exit with the kernel's status (exit codes below). " +
            "On a terminal the run is an interactive console: every key goes to the machine's COM1 and output shows as it comes; Ctrl-C or Ctrl-A X quits, Ctrl-A C sends Ctrl-C (docs/build.md). " +
            "With stdin not a terminal, stdin is not read unless --input - says so. Arguments after '--' go to the emulator unchanged (QEMU: its options; Bochs: bochsrc lines).")
        {
            emulator, cmdline, cpus, memory, uefi, timeout, serial, input, inputAfter, module, debugInfo, gdb,
        };
        run.SetAction(r => RunWithModules(r.GetValue(module), r.GetValue(debugInfo), new RunOptions(
            ParseEmulator(r.GetValue(emulator)!), r.GetValue(cmdline) ?? "", r.GetValue(cpus), r.GetValue(memory),
            r.GetValue(uefi), r.GetValue(timeout), Echo: true)
        {
            Extra = extra,
            SerialCopy = r.GetValue(serial),
            Interactive = r.GetValue(input) == null && SerialConsole.CanBeInteractive,
            InputAfter = r.GetValue(inputAfter),
            GdbPort = r.GetValue(gdb),
        }, r.GetValue(input), defaultGuest: r.GetValue(cmdline) == null));
        return run;
    }

    /// <summary>A run without --cmdline: the default guest (<see cref="DefaultGuest"/>), said on stderr.</summary>
    private static RunOptions WithDefaultGuest(RunOptions o, bool inputGiven)
    {
        bool qemuOnly = o.GdbPort != null || o.Uefi || o.Emulator == EmulatorKind.Qemu;
        string why = o.GdbPort != null ? "--gdb" : o.Uefi ? "--uefi (QEMU, which has no VT-x here)" : "--emulator qemu (no VT-x)";
        DefaultGuest.Choice c = DefaultGuest.Choose(qemuOnly, why, o.Interactive, inputGiven, qemuOnly ? null : LinuxUnavailable());
        foreach (string line in c.Lines)
            Console.Error.WriteLine(line);
        return c.Input == null ? o with { Cmdline = c.Cmdline } : o with { Cmdline = c.Cmdline, Input = c.Input, InputAfter = c.InputAfter };
    }

    /// <summary>Makes the Linux modules if it can (LinuxGuest.Ensure); why they are missing, or null.</summary>
    private static string? LinuxUnavailable()
    {
        LinuxGuest.Ensure();
        if (LinuxGuest.UnavailableReason is string why)
            return why;
        foreach (string name in new[] { LinuxGuest.KernelModule, LinuxGuest.InitrdModule })
        {
            if (!File.Exists(LinuxGuest.PathOf(name)))
                return $"out/obj/linux/{name} is missing";
        }
        return null;
    }

    /// <summary>The options whose value may be left out, as (option, value name): the help shows them as <c>--gdb[=PORT]</c>.</summary>
    private static readonly (string Option, string Value)[] s_optionalValues = [("--gdb", "PORT")];

    /// <summary>QEMU's own default gdbstub port (its -s).</summary>
    public const int DefaultGdbPort = 1234;

    private static Option<bool> DebugInfoOption() => new("--debug-info")
    {
        Description = "Build with DWARF for gdb (ILC's -g, Roslyn's portable PDBs) into out/tandem-debug.elf, .sym and .iso (objects in out/obj/debug), apart from the byte-identical normal image",
    };

    private static int RunWithModules(string[]? modules, bool debugInfo, RunOptions o, string? input, bool defaultGuest = false)
    {
        // gdb without DWARF sees only the symbol names: --gdb boots the debug image.
        Repo.DebugInfo = debugInfo || o.GdbPort != null;
        if (o.InputAfter != null && input == null)
            throw new BuildException("--input-after needs --input (the bytes to send once TEXT shows)", ExitCodes.Usage);
        if (o.InputAfter?.Length == 0)
            throw new BuildException("--input-after needs a non-empty TEXT", ExitCodes.Usage);
        if (input != null)
            o = o with { Input = SerialConsole.LoadInput(input) };
        Guests.AddUserModules(modules ?? []);
        if (defaultGuest)
            o = WithDefaultGuest(o, input != null);
        return Driver.Run(o);
    }

    private static Option<string[]> ModuleOption() => new("--module")
    {
        Description = "Put a file on the ISO as a GRUB module named NAME (default: its file name), for vm=NAME, initrd=NAME or modules=NAME; repeatable. Modules are kept in out/modules/ for later runs.",
        HelpName = "PATH[=NAME]",
        AllowMultipleArgumentsPerToken = false,
    };

    private static Command TestCommand()
    {
        var skipHost = new Option<bool>("--skip-host") { Description = "Skip the host tests, the mutation check and the format check" };
        var skipKernel = new Option<bool>("--skip-kernel") { Description = "Skip the in-kernel tests" };
        var config = new Option<string[]>("--config")
        {
            Description = "Run the in-kernel tests only in this configuration (repeatable): " + string.Join(", ", TestVerb.ConfigNames),
            HelpName = "NAME",
            Arity = ArgumentArity.OneOrMore,
        };
        config.AcceptOnlyFromAmong([.. TestVerb.ConfigNames]);
        var filter = new Option<string?>("--filter")
        {
            Description = "Run only the kernel tests whose name contains PATTERN (the kernel's test=PATTERN); the host tests get it as 'dotnet test --filter PATTERN'. The mutation check is skipped when a filter is given.",
            HelpName = "PATTERN",
        };
        var test = new Command("test", "The whole suite: host tests (dotnet test, TRX), the mutation check, the format check, then the in-kernel tests in five configurations. Writes out/test/results.xml (JUnit) and ends with 'N passed, N failed, N skipped'. Exit code 0 when nothing failed, else 1.")
        {
            skipHost, skipKernel, config, filter,
        };
        test.SetAction(r => TestVerb.Run(new TestOptions(!r.GetValue(skipHost), !r.GetValue(skipKernel),
            r.GetValue(config) ?? [], r.GetValue(filter))));
        return test;
    }

    private static Command BenchCommand()
    {
        var skipKernel = new Option<bool>("--skip-kernel", "--no-kernel") { Description = "Skip the parts under Bochs (the in-kernel figures and the Linux boot)" };
        var filter = new Option<string?>("--filter")
        {
            Description = "Run only the parts whose name contains PATTERN: the projects under tests/bench (e.g. Kvm), in-kernel, linux",
            HelpName = "PATTERN",
        };
        var bench = new Command("bench", "Run the BenchmarkDotNet projects under tests/bench (goals, JSON under out/bench), then under Bochs the in-kernel benchmark and the Linux boot to its shell on plain Bochs and on Tandem. Exit code 1 if a goal is missed or a part fails.")
        {
            skipKernel, filter,
        };
        bench.SetAction(r => BenchVerb.Run(r.GetValue(skipKernel), r.GetValue(filter)));
        return bench;
    }

    private static Command FuzzCommand()
    {
        var exits = new Option<long>("--exits")
        {
            Description = "Run fuzz guests until their VM exits reach N",
            DefaultValueFactory = _ => 1_000_000,
            HelpName = "N",
        };
        var seed = new Option<long>("--seed") { Description = "The first guest's seed (the next ones count up from it)", DefaultValueFactory = _ => 1, HelpName = "N" };
        var emulator = new Option<string>("--emulator")
        {
            Description = "auto: QEMU with KVM when /dev/kvm offers VT-x to guests, else Bochs",
            DefaultValueFactory = _ => "auto",
            HelpName = "auto|bochs|kvm",
        };
        emulator.AcceptOnlyFromAmong("auto", "bochs", "kvm");
        var cpus = IntOption("--cpus", "Number of CPUs", 1, 64, 2, "N");
        var timeout = IntOption("--timeout", "Kill the emulator after this many seconds (default 86400)", 1, 604800, 86400, "S");
        var fuzz = new Command("fuzz", "The guest fuzzer's long campaign (docs/fuzzing.md): boots Tandem with fuzz=SEED:100000000:EXITS, which runs fuzz guests one after another beside a sentinel VM, checks the host after each, and prints exits and stops by reason (every 100 guests and at the end). " +
            "A host failure prints its seed and step; replay one guest with './build.sh run --cmdline \"vm=fuzz,seed=N\"'. Exit code 0 with no host failure, 1 with one.")
        {
            exits, seed, emulator, cpus, timeout,
        };
        fuzz.SetAction(r =>
        {
            long n = r.GetValue(exits), first = r.GetValue(seed);
            if (n < 1 || first < 0)
                throw new BuildException("fuzz: --exits must be at least 1 and --seed at least 0", ExitCodes.Usage);
            return Driver.Run(new RunOptions(ParseEmulator(r.GetValue(emulator)!), $"fuzz={first}:100000000:{n} expect_vmx=yes", r.GetValue(cpus), 512,
                false, r.GetValue(timeout), Echo: true));
        });
        return fuzz;
    }

    private static Command ReportCommand()
    {
        var run = new Argument<string?>("RUN")
        {
            Description = "A run folder: its name under out/runs or a path (default: the newest run whose serial.log has stats lines)",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var report = new Command("report", "Draw a run's stats lines (monitor=\"stats on N\", mmstats=N) and the benchmark goal tables under out/bench into out/report/index.html with PNG charts; " +
            "the goals are appended to out/report/history.json. Exit code 0 with the page written, 1 when the run has no stats lines, 64 when RUN names no run.")
        {
            run,
        };
        report.SetAction(r => ReportVerb.Run(r.GetValue(run)));
        return report;
    }

    private static Command MutateCommand()
    {
        var only = new Option<string?>("--only") { Description = "Run only the mutation named NAME", HelpName = "NAME" };
        var mutate = new Command("mutate", "The mutation check alone (tests/mutations/mutations.txt): killed or SURVIVED per mutation. Exit code 1 if any survives.")
        {
            only,
        };
        mutate.SetAction(r => MutationCheck.Verb(r.GetValue(only)));
        return mutate;
    }

    /// <summary>A whole-number option; a fallback of 0 means "not given" and is not shown as a default.</summary>
    private static Option<int> IntOption(string name, string description, int min, int max, int fallback, string helpName) => new(name)
    {
        Description = description,
        DefaultValueFactory = fallback == 0 ? null : _ => fallback,
        HelpName = helpName,
        CustomParser = r =>
        {
            string text = r.Tokens.Count > 0 ? r.Tokens[0].Value : "";
            if (int.TryParse(text, out int n) && n >= min && n <= max)
                return n;
            r.AddError($"{name} needs a whole number from {min} to {max} (got '{text}')");
            return fallback;
        },
    };

    private static EmulatorKind ParseEmulator(string name) => name switch
    {
        "qemu" => EmulatorKind.Qemu,
        "bochs" => EmulatorKind.Bochs,
        "kvm" => EmulatorKind.Kvm,
        _ => EmulatorKind.Auto,
    };

    /// <summary>Prints each parse error once, with a suggestion for a misspelt verb or option.</summary>
    private static void ReportErrors(ParseResult result)
    {
        Command command = result.CommandResult.Command;
        bool atRoot = command.Parents.FirstOrDefault() == null;
        var unmatched = new HashSet<string>(result.UnmatchedTokens, StringComparer.Ordinal);
        foreach (string token in result.UnmatchedTokens)
        {
            if (atRoot && !token.StartsWith('-'))
            {
                var verbs = Candidates(command, verbs: true).ToList();
                string? verb = Suggest(token, verbs);
                Console.Error.WriteLine($"build: error: unknown verb '{token}'; " +
                    (verb != null ? $"did you mean '{verb}'?" : $"the verbs are {string.Join(", ", verbs)}"));
            }
            else if (token.StartsWith('-'))
            {
                var options = Candidates(command, verbs: false).ToList();
                string? option = Suggest(token, options);
                Console.Error.WriteLine($"build: error: {command.Name}: unknown option '{token}'; " +
                    (option != null ? $"did you mean '{option}'?" : $"it takes {string.Join(", ", options)}"));
            }
            else
            {
                Console.Error.WriteLine($"build: error: {command.Name}: unexpected argument '{token}' ({command.Name} takes no arguments" +
                    (command.Name == "run" ? "; arguments for the emulator go after '--')" : ")"));
            }
        }
        foreach (ParseError e in result.Errors)
        {
            if (e.Message.StartsWith("Unrecognized command or argument", StringComparison.Ordinal) && unmatched.Count > 0)
                continue;
            if (atRoot && e.Message == "Required command was not provided." && unmatched.Count > 0)
                continue;
            Console.Error.WriteLine($"build: error: {e.Message}");
        }
        string path = atRoot ? "./build.sh" : $"./build.sh {command.Name}";
        Console.Error.WriteLine($"(see '{path} --help')");
    }

    /// <summary>The verbs (for a word at the root), else the options the command takes.</summary>
    private static IEnumerable<string> Candidates(Command command, bool verbs)
    {
        if (verbs)
            return command.Subcommands.Select(c => c.Name);
        return command.Options.Where(o => !o.Hidden).Select(o => o.Name)
            .Append(s_verbose.Name).Append("--help").Distinct();
    }

    /// <summary>The nearest name by edit distance, if it is near enough to be a typo.</summary>
    private static string? Suggest(string token, IEnumerable<string> candidates)
    {
        string bare = token.Split('=')[0];
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (string c in candidates)
        {
            int d = Distance(bare.TrimStart('-'), c.TrimStart('-'));
            if (d < bestDistance)
                (best, bestDistance) = (c, d);
        }
        int allowed = Math.Max(2, bare.TrimStart('-').Length / 3);
        return bestDistance <= allowed ? best : null;
    }

    private static int Distance(string a, string b)
    {
        var row = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++)
            row[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                int cost = char.ToLowerInvariant(a[i - 1]) == char.ToLowerInvariant(b[j - 1]) ? 0 : 1;
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + cost);
                diagonal = above;
            }
        }
        return row[b.Length];
    }
}
