using System.Text.RegularExpressions;
using Tandem.Build;

// Tandem's build driver. ./build.sh VERB [options] (Linux) and build.ps1 VERB [options] (Windows)
// both run this program. Verbs: image, run, test, bench, mutate. See README.md.
try
{
    return Driver.Dispatch(args);
}
catch (BuildException e)
{
    Console.Error.WriteLine($"build: error: {e.Message}");
    return e.ExitCode;
}

namespace Tandem.Build
{
    internal static partial class Driver
    {
        private const string Usage = """
            usage: ./build.sh VERB [options]
              image                          build out/tandem.elf and out/tandem.iso, print their SHA-256
              run [--emulator auto|qemu|bochs|kvm] [--cmdline "..."] [--cpus N] [--memory MiB] [--uefi] [--timeout S]
                                             build if needed, boot, stream the serial console, exit with the kernel's status
              test [--skip-host] [--skip-kernel]
                                             host tests, mutation check, format check, in-kernel tests on QEMU BIOS 1/2 CPUs, QEMU UEFI, Bochs
              bench [--skip-kernel]          host benchmarks (BenchmarkDotNet; goals, JSON under out/bench) and in-kernel figures
              mutate [--only NAME]           the mutation check alone (tests/mutations/mutations.txt): killed or SURVIVED per mutation
            options for every verb: -v (echo the commands run)
            """;

        public static int Dispatch(string[] args)
        {
            var list = args.ToList();
            if (list.Remove("-v"))
                Shell.Verbose = true;
            if (list.Count == 0 || list[0] is "-h" or "--help" or "help")
            {
                Console.WriteLine(Usage);
                return list.Count == 0 ? 2 : 0;
            }
            string verb = list[0];
            var rest = list.Skip(1).ToList();
            return verb switch
            {
                "image" => Image(rest),
                "run" => Run(rest),
                "test" => TestVerb.Run(rest),
                "bench" => BenchVerb.Run(rest),
                "mutate" => MutationCheck.Verb(rest),
                _ => throw new BuildException($"unknown verb '{verb}'\n{Usage}"),
            };
        }

        private static int Image(List<string> args)
        {
            if (args.Count > 0)
                throw new BuildException($"'image' takes no options (got '{args[0]}')");
            ImageBuilder.BuildElf();
            ImageBuilder.BuildIso(Repo.Iso, "", menu: true, Guests.Modules());
            Console.WriteLine($"sha256 {ImageBuilder.Sha256(Repo.Elf)}  out/tandem.elf");
            Console.WriteLine($"sha256 {ImageBuilder.Sha256(Repo.Iso)}  out/tandem.iso");
            return 0;
        }

        /// <summary>Rebuilds the ELF when any source is newer than it.</summary>
        public static void BuildIfNeeded()
        {
            if (File.Exists(Repo.Elf) && File.Exists(Repo.Symbols))
            {
                DateTime built = File.GetLastWriteTimeUtc(Repo.Elf);
                bool stale = new[] { "runtime", "arch", "mm", "kvm", "kernel", "boot", "tools/StubGen", "tools/Build" }
                    .Select(d => Path.Combine(Repo.Root, d)).Where(Directory.Exists)
                    .SelectMany(d => Directory.EnumerateFiles(d, "*.cs", SearchOption.AllDirectories))
                    .Where(f => !f.Contains("/obj/") && !f.Contains("/bin/"))
                    .Append(Path.Combine(Repo.Root, "linker.ld"))
                    .Any(f => File.GetLastWriteTimeUtc(f) > built);
                if (!stale)
                    return;
            }
            ImageBuilder.BuildElf();
        }

        private static int Run(List<string> args)
        {
            var o = ParseRun(args);
            BuildIfNeeded();
            string iso = Path.Combine(Repo.Out, "run", "tandem-run.iso");
            Directory.CreateDirectory(Path.GetDirectoryName(iso)!);
            ImageBuilder.BuildIso(iso, o.Cmdline, menu: false, Guests.Modules());
            RunResult result = Emulator.Run(iso, o, Path.Combine(Repo.Out, "run"));
            if (result.TimedOut)
                return 124;
            if (result.KernelStatus == null)
                return 125;
            return result.KernelStatus.Value;
        }

        private static RunOptions ParseRun(List<string> args)
        {
            var emulator = EmulatorKind.Auto;
            string cmdline = "";
            int cpus = 2, memory = 512, timeout = 0;
            bool uefi = false;
            for (int i = 0; i < args.Count; i++)
            {
                string a = args[i];
                string Value()
                {
                    if (i + 1 >= args.Count)
                        throw new BuildException($"option {a} needs a value");
                    return args[++i];
                }
                int Number(int min, int max)
                {
                    string v = Value();
                    if (!int.TryParse(v, out int n) || n < min || n > max)
                        throw new BuildException($"option {a} needs a number from {min} to {max} (got '{v}')");
                    return n;
                }
                switch (a)
                {
                    case "--emulator":
                        string e = Value();
                        emulator = e switch
                        {
                            "auto" => EmulatorKind.Auto,
                            "qemu" => EmulatorKind.Qemu,
                            "bochs" => EmulatorKind.Bochs,
                            "kvm" => EmulatorKind.Kvm,
                            _ => throw new BuildException($"--emulator must be auto, qemu, bochs or kvm (got '{e}')"),
                        };
                        break;
                    case "--cmdline": cmdline = Value(); break;
                    case "--cpus": cpus = Number(1, 64); break;
                    case "--memory": memory = Number(32, 16384); break;
                    case "--uefi": uefi = true; break;
                    case "--timeout": timeout = Number(1, 86400); break;
                    default: throw new BuildException($"unknown option '{a}' for run\n{Usage}");
                }
            }
            if (emulator == EmulatorKind.Kvm && !Emulator.KvmOffersVmx(out string why))
                throw new BuildException($"--emulator kvm: KVM here cannot give guests VT-x ({why}); use --emulator bochs for VMX or qemu without it");
            if (cmdline.IndexOfAny(['"', '\'', '\n', ';', '{', '}']) >= 0)
                throw new BuildException("--cmdline may not contain quotes, newlines, ';' or braces (it goes into grub.cfg)");
            var o = new RunOptions(emulator, cmdline, cpus, memory, uefi, timeout, Echo: true);
            if (timeout == 0)
                o = o with { TimeoutSeconds = Emulator.Resolve(o) == EmulatorKind.Bochs ? 900 : 120 };
            return o;
        }

        [GeneratedRegex(@"^(\d+) passed, (\d+) failed, (\d+) skipped$", RegexOptions.Multiline)]
        public static partial Regex SummaryLine();
    }
}
