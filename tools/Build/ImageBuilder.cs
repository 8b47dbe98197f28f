using System.Security.Cryptography;
using System.Text;

namespace Tandem.Build;

/// <summary>
/// Builds out/tandem.elf and out/tandem.iso: Roslyn compiles each layer (runtime, arch, mm,
/// kvm, kernel) into its own assembly against the one below, ILC compiles them to one object,
/// StubGen writes the machine-code stubs, ld.lld links with linker.ld, and grub-mkrescue makes a
/// hybrid BIOS + UEFI ISO. Every step is deterministic; see docs/build.md.
/// </summary>
internal static class ImageBuilder
{
    private sealed record Layer(string Name, string[] Sources, string[] References);

    private static readonly Layer[] Layers =
    [
        new("runtime", ["runtime"], []),
        new("arch", ["arch"], ["runtime"]),
        new("mm", ["mm"], ["runtime"]),
        new("kvm", ["kvm"], ["runtime", "arch", "mm"]),
        new("kernel", ["kernel"], ["runtime", "arch", "mm", "kvm"]),
    ];

    public static void BuildElf()
    {
        Tools.EnsureImage();
        Directory.CreateDirectory(Repo.KernelObj);
        foreach (Layer layer in Layers)
            Compile(layer);

        string kernelObject = Path.Combine(Repo.KernelObj, "kernel.o");
        var ilcArgs = new List<string>
        {
            Path.Combine(Repo.KernelObj, "kernel.dll"), $"-o:{kernelObject}",
            "--systemmodule:runtime", "--generateunmanagedentrypoints:runtime",
            "--targetos:linux", "--targetarch:x64", "--nativelib", "-O",
        };
        // --debug-info: DWARF (types, locals, and lines from the layers' PDBs) in kernel.o, which
        // ld.lld keeps (it strips nothing) in out/tandem-debug.elf.
        if (Repo.DebugInfo)
            ilcArgs.Add("-g");
        foreach (Layer layer in Layers.Where(l => l.Name != "kernel"))
            ilcArgs.Add($"-r:{Path.Combine(Repo.KernelObj, layer.Name + ".dll")}");
        Shell.Check(Repo.Ilc, ilcArgs, "ILC (NativeAOT compile)");

        string stubs = Path.Combine(Repo.KernelObj, "stubs.o");
        File.WriteAllBytes(stubs, Tandem.StubGen.StubImage.BuildObject());
        string guests = Path.Combine(Repo.Obj, "guests");
        if (Directory.Exists(guests))
            Directory.Delete(guests, recursive: true);
        Directory.CreateDirectory(guests);
        foreach (var (name, image) in Tandem.StubGen.Guests.TestGuests.All())
            File.WriteAllBytes(Path.Combine(guests, name), image);
        BuildCGuests(guests);

        Shell.Check("ld.lld",
        [
            "--no-pie", "-static", "-nostdlib", "-z", "max-page-size=0x1000", "-z", "norelro", "--build-id=none",
            "-T", Path.Combine(Repo.Root, "linker.ld"), "-o", Repo.Elf, stubs, kernelObject,
        ], "link (ld.lld)");
        SymbolTable.Write(Repo.Elf, Repo.Symbols);
    }

    /// <summary>
    /// The test kernels written in C under <c>tests/guests/NAME/</c> (NAME.c and link.ld), built with
    /// the Debian toolchain the way small hypervisor test kernels are: freestanding, 32-bit, no Tandem
    /// code. Each becomes the module NAME. The output depends only on the sources and the compiler.
    /// </summary>
    private static void BuildCGuests(string guests)
    {
        string root = Path.Combine(Repo.Root, "tests", "guests");
        if (!Directory.Exists(root))
            return;
        foreach (string dir in Directory.GetDirectories(root).OrderBy(d => d, StringComparer.Ordinal))
        {
            string name = Path.GetFileName(dir);
            string source = Path.Combine(dir, name + ".c");
            string script = Path.Combine(dir, "link.ld");
            if (!File.Exists(source) || !File.Exists(script))
                continue;
            Shell.Check("gcc",
            [
                "-m32", "-ffreestanding", "-fno-pie", "-no-pie", "-nostdlib", "-O2", "-fno-stack-protector",
                "-fno-asynchronous-unwind-tables", "-Wall", "-Wextra", "-Werror",
                "-Wl,-T," + script, "-Wl,--build-id=none", "-Wl,--no-warn-rwx-segments",
                "-o", Path.Combine(guests, name), source,
            ], $"gcc (test kernel {name})");
            // Data files beside a test kernel (NAME-*.module) go on the ISO as modules too, under
            // their name without the suffix: what a test hands the kernel (fw_cfg files, say).
            foreach (string data in Directory.GetFiles(dir, name + "-*.module").OrderBy(d => d, StringComparer.Ordinal))
                File.Copy(data, Path.Combine(guests, Path.GetFileNameWithoutExtension(data)), overwrite: true);
        }
    }

    private static void Compile(Layer layer)
    {
        var sources = layer.Sources
            .Select(s => Path.Combine(Repo.Root, s))
            .Where(Directory.Exists)
            .SelectMany(d => Directory.EnumerateFiles(d, "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") &&
                        !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
            .Select(f => Path.GetRelativePath(Repo.Root, f))
            .OrderBy(f => f, StringComparer.Ordinal)
            .ToList();
        string output = Path.Combine(Repo.KernelObj, layer.Name + ".dll");
        var args = new List<string>
        {
            Repo.Csc, "-nologo", "-noconfig", "-unsafe", "-nullable:enable", "-langversion:latest",
            "-deterministic", "-optimize+", "-target:library", "-warnaserror+", "-nowarn:CS0649,CS0169",
            "-runtimemetadataversion:v4.0.30319",
            // The normal image maps the repository to /tandem (its bytes do not depend on where
            // the tree is); the debug image keeps real paths and writes a portable PDB beside each
            // assembly, where ILC finds the line numbers and local names for its DWARF, so that
            // gdb finds the sources without a substitute-path.
            Repo.DebugInfo ? "-debug:portable" : $"-pathmap:{Repo.Root}=/tandem",
            $"-out:{output}",
        };
        if (layer.Name == "runtime")
            args.Add("-nostdlib");
        else
        {
            args.Add("-nostdlib");
            foreach (string r in layer.References)
                args.Add($"-r:{Path.Combine(Repo.KernelObj, r + ".dll")}");
        }
        if (sources.Count == 0)
        {
            // An empty layer still gets an assembly so the ones above can reference it.
            string empty = Path.Combine(Repo.KernelObj, layer.Name + ".empty.cs");
            File.WriteAllText(empty, $"// {layer.Name} has no sources yet\n");
            sources.Add(Path.GetRelativePath(Repo.Root, empty));
        }
        args.AddRange(sources);
        Shell.Check("dotnet", ["exec", .. args], $"compile {layer.Name} (Roslyn)", workDir: Repo.Root);
    }

    /// <summary>
    /// The command line as GRUB words: split at spaces outside double quotes (as the kernel splits
    /// it), each word single-quoted (a ' inside becomes '\''), so GRUB keeps the spaces and double
    /// quotes inside a word (<c>vm=x,cmdline="console=ttyS0 quiet"</c>). GRUB then passes a word with
    /// spaces to the kernel in double quotes with its own quotes escaped, which the kernel's
    /// command-line parser undoes.
    /// </summary>
    public static string GrubQuote(string cmdline)
    {
        var words = new List<string>();
        var word = new StringBuilder();
        bool quoted = false;
        foreach (char c in cmdline)
        {
            if (c == '"')
                quoted = !quoted;
            if (c == ' ' && !quoted)
            {
                if (word.Length > 0)
                    words.Add(word.ToString());
                word.Clear();
                continue;
            }
            word.Append(c);
        }
        if (word.Length > 0)
            words.Add(word.ToString());
        return string.Join(' ', words.Select(w => "'" + w.Replace("'", "'\\''") + "'"));
    }

    /// <summary>Writes a GRUB ISO whose menu boots Tandem with <paramref name="cmdline"/>.</summary>
    public static void BuildIso(string isoPath, string cmdline, bool menu, IReadOnlyList<(string Path, string Name)> modules)
    {
        // One staging folder per ISO path (out/tandem.iso: obj/iso-tandem; a run's ISO:
        // obj/iso-runs_<run>_tandem), so that parallel runs do not share one.
        string stage = Path.Combine(Repo.Obj, "iso-" + Path.GetRelativePath(Repo.Out, Path.ChangeExtension(Path.GetFullPath(isoPath), null))
            .Replace(Path.DirectorySeparatorChar, '_').Replace("..", "_"));
        if (Directory.Exists(stage))
            Directory.Delete(stage, recursive: true);
        Directory.CreateDirectory(Path.Combine(stage, "boot", "grub"));
        File.Copy(Repo.Elf, Path.Combine(stage, "boot", "tandem.elf"));
        File.Copy(Repo.Symbols, Path.Combine(stage, "boot", "tandem.sym"));
        var moduleLines = new StringBuilder();
        moduleLines.Append("  module2 /boot/tandem.sym symbols\n");
        foreach (var (path, name) in modules)
        {
            File.Copy(path, Path.Combine(stage, "boot", name));
            moduleLines.Append($"  module2 /boot/{name} {name}\n");
        }
        var cfg = new StringBuilder();
        cfg.Append("serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n");
        cfg.Append(menu ? "set timeout=5\n" : "set timeout=0\n");
        cfg.Append("set gfxpayload=text\n");                // Tandem uses the serial port and text mode
        cfg.Append($"menuentry \"Tandem {Version}\" {{\n  multiboot2 /boot/tandem.elf {GrubQuote(cmdline)}\n{moduleLines}  boot\n}}\n");
        if (menu)
            cfg.Append($"menuentry \"Tandem {Version} self-tests\" {{\n  multiboot2 /boot/tandem.elf test\n{moduleLines}  boot\n}}\n");
        File.WriteAllText(Path.Combine(stage, "boot", "grub", "grub.cfg"), cfg.ToString());
        foreach (string f in Directory.EnumerateFileSystemEntries(stage, "*", SearchOption.AllDirectories).Append(stage))
            File.SetLastWriteTimeUtc(f, FixedDate);

        var env = new Dictionary<string, string> { ["SOURCE_DATE_EPOCH"] = "1767225600" };
        Shell.Check("grub-mkrescue",
        [
            "-o", isoPath, stage, "--",
            "-volume_date", "all_file_dates", "=1767225600",
            "-volume_date", "uuid", "2026010100000000",
            "-volume_date", "c", "=1767225600",
            "-volume_date", "m", "=1767225600",
        ], "grub-mkrescue", env: env);
        FixFatSerials(isoPath);
        Directory.Delete(stage, recursive: true);
    }

    /// <summary>The version in the GRUB menu: the driver's own (Build.csproj), printed by --version.</summary>
    public static readonly string Version = typeof(ImageBuilder).Assembly.GetName().Version!.ToString(3);
    private static readonly DateTime FixedDate = new(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    /// <summary>
    /// mformat gives the EFI boot image's FAT a random volume serial (boot sector offset 39). Find
    /// every FAT boot sector on a 2 KiB boundary in the ISO and give it a fixed serial.
    /// </summary>
    private static void FixFatSerials(string isoPath)
    {
        byte[] iso = File.ReadAllBytes(isoPath);
        int patched = 0;
        for (int at = 0; at + 512 <= iso.Length; at += 2048)
        {
            bool signature = iso[at + 510] == 0x55 && iso[at + 511] == 0xAA;
            bool fat = Encoding.ASCII.GetString(iso, at + 54, 5) == "FAT12" || Encoding.ASCII.GetString(iso, at + 54, 5) == "FAT16"
                || Encoding.ASCII.GetString(iso, at + 82, 5) == "FAT32";
            if (!signature || !fat)
                continue;
            int serialOffset = Encoding.ASCII.GetString(iso, at + 82, 5) == "FAT32" ? 67 : 39;
            iso[at + serialOffset] = 0x54; iso[at + serialOffset + 1] = 0x44; iso[at + serialOffset + 2] = 0x4D; iso[at + serialOffset + 3] = 0x31;
            patched++;
        }
        if (patched == 0)
            throw new BuildException("no FAT boot sector found in the ISO to make reproducible");
        File.WriteAllBytes(isoPath, iso);
    }

    public static string Sha256(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path))).ToLowerInvariant();
}
