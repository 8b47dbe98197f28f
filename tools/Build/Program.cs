using System.Text.RegularExpressions;
using Tandem.Build;

// Tandem's build driver. ./build.sh VERB [options] (Linux) and build.ps1 VERB [options] (Windows)
// both run this program. Verbs: image, run, test, bench, mutate (tools/Build/Cli.cs). See README.md.
try
{
    return Cli.Execute(args);
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
        public static int Image()
        {
            ImageBuilder.BuildElf();
            ImageBuilder.BuildIso(Repo.Iso, "", menu: true, Guests.Modules(""));
            Console.WriteLine($"sha256 {ImageBuilder.Sha256(Repo.Elf)}  {Path.GetRelativePath(Repo.Root, Repo.Elf)}");
            Console.WriteLine($"sha256 {ImageBuilder.Sha256(Repo.Iso)}  {Path.GetRelativePath(Repo.Root, Repo.Iso)}");
            return ExitCodes.Success;
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

        /// <summary>
        /// The run verb: checks the options against the emulator that will run them (before any
        /// build), builds if needed, boots in a run folder of its own, and maps the outcome to the
        /// exit code (the kernel's status, 124 timeout, 125 no status, 130 stopped by Ctrl-C).
        /// </summary>
        public static int Run(RunOptions o)
        {
            // The command line goes into grub.cfg as one single-quoted word (ImageBuilder.GrubQuote):
            // quotes, ';' and braces are safe there, line breaks are not.
            if (o.Cmdline.IndexOfAny(['\n', '\r']) >= 0)
                throw new BuildException("--cmdline may not contain line breaks (it goes into grub.cfg)", ExitCodes.Usage);
            EmulatorKind kind = Emulator.Check(o);
            // An interactive run is a user's session, and so is one that waits for gdb: no timeout
            // unless --timeout gave one.
            if (o.TimeoutSeconds == 0 && !o.Interactive && o.GdbPort == null)
                o = o with { TimeoutSeconds = kind == EmulatorKind.Bochs ? 900 : 120 };
            BuildIfNeeded();
            string dir = RunFolder.Create("run-" + Emulator.ConfigName(o, kind));
            // The kernel's command line, for the record (./build.sh report shows it; the ISO's grub.cfg holds it quoted).
            File.WriteAllText(Path.Combine(dir, "cmdline.txt"), o.Cmdline + "\n");
            string iso = Path.Combine(dir, "tandem.iso");
            ImageBuilder.BuildIso(iso, o.Cmdline, menu: false, Guests.Modules(o.Cmdline));
            if (o.GdbPort is int port)
            {
                if (o.Emulator == EmulatorKind.Auto && kind != EmulatorKind.Kvm && Emulator.NeedsVmx(o) && !o.Uefi)
                    Console.Error.WriteLine("run: --gdb: --emulator auto picked QEMU, not Bochs, though the command line needs VMX: Debian's Bochs has no gdbstub, " +
                        "and QEMU here has no VMX, so vm= and the VMX tests fail under it");
                Console.Error.WriteLine($"run: {Emulator.Name(kind)} starts paused for gdb; attach with: " +
                    $"gdb {Path.GetRelativePath(Repo.Root, Repo.Elf)} -ex 'target remote :{port}'");
            }
            RunResult result = Emulator.Run(iso, o, dir);
            if (result.StoppedBy == null && (result.TimedOut || result.KernelStatus is null or not 0))
                PrintCrashReport(result.Serial);
            if (result.StoppedBy != null)
                return result.StopExitCode;
            if (result.TimedOut)
                return ExitCodes.Timeout;
            if (result.KernelStatus == null)
                return ExitCodes.NoStatus;
            return result.KernelStatus.Value;
        }

        /// <summary>After a run that ended badly: the kernel's backtraces demangled and its code lines disassembled.</summary>
        public static void PrintCrashReport(string serial)
        {
            string? decoded = CrashReport.Decode(serial, Repo.DebugInfo ? Repo.Elf : null);
            if (decoded == null)
                return;
            Console.WriteLine("run: the crash report decoded (tools/Build/CrashReport.cs):");
            Console.Write(decoded);
        }

        [GeneratedRegex(@"^(\d+) passed, (\d+) failed, (\d+) skipped$", RegexOptions.Multiline)]
        public static partial Regex SummaryLine();
    }
}
