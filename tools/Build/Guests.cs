namespace Tandem.Build;

/// <summary>
/// Guest images that go on the ISO as multiboot modules: the generated test guests and C test
/// kernels (rebuilt with the image, in obj/guests), the Linux guest made from Debian's packages
/// (obj/linux, <see cref="LinuxGuest"/>) and the user's own modules (<c>--module PATH[=NAME]</c>,
/// kept in out/modules across rebuilds until removed).
/// </summary>
internal static class Guests
{
    public static string UserDir => Path.Combine(Repo.Out, "modules");

    /// <summary>
    /// The modules for an ISO whose kernel command line is <paramref name="cmdline"/>. The Linux
    /// guest's <c>linux</c> and <c>linux-initrd</c> go on every ISO when they exist;
    /// <c>linux-vmlinux</c> (tens of MB) only when the command line names it or
    /// <paramref name="vmlinux"/> asks for it. Makes the Linux guest first if needed (once per run).
    /// </summary>
    public static IReadOnlyList<(string Path, string Name)> Modules(string cmdline, bool vmlinux = false)
    {
        LinuxGuest.Ensure();
        var all = new List<(string Path, string Name)>();
        string generated = Path.Combine(Repo.Obj, "guests");
        if (Directory.Exists(generated))
            all.AddRange(Directory.GetFiles(generated).OrderBy(f => f, StringComparer.Ordinal).Select(f => (f, Path.GetFileName(f))));
        foreach (string name in LinuxGuest.ModuleNames)
        {
            bool wanted = name != LinuxGuest.VmlinuxModule || vmlinux || cmdline.Contains(LinuxGuest.VmlinuxModule, StringComparison.Ordinal);
            if (wanted && File.Exists(LinuxGuest.PathOf(name)))
                all.Add((LinuxGuest.PathOf(name), name));
        }
        if (Directory.Exists(UserDir))
        {
            foreach (string f in Directory.GetFiles(UserDir).OrderBy(f => f, StringComparer.Ordinal))
            {
                // A module kept from before a name became built-in: the built-in one wins.
                if (IsBuiltInName(Path.GetFileName(f)) || all.Any(m => m.Name == Path.GetFileName(f)))
                    Console.WriteLine($"module: ignoring {Path.GetRelativePath(Repo.Root, f)}: '{Path.GetFileName(f)}' is a built-in module's name (rename or delete it)");
                else
                    all.Add((f, Path.GetFileName(f)));
            }
        }
        return all;
    }

    /// <summary>Names no --module may take: the symbol table's and the Linux guest's (whether built or not).</summary>
    public static bool IsBuiltInName(string name) => name == "symbols" || LinuxGuest.ModuleNames.Contains(name);

    /// <summary>
    /// <c>--module PATH[=NAME]</c>: copies each file into out/modules under NAME (default: its file
    /// name), where it stays for later runs. Refuses a missing file, a name GRUB or the kernel's
    /// command line could not carry, and a built-in module's name (a generated guest's, "symbols",
    /// and the Linux guest's "linux", "linux-initrd", "linux-vmlinux").
    /// </summary>
    public static void AddUserModules(IEnumerable<string> specs)
    {
        string generated = Path.Combine(Repo.Obj, "guests");
        foreach (string spec in specs)
        {
            int eq = spec.LastIndexOf('=');
            string path = eq > 0 ? spec[..eq] : spec;
            string name = eq > 0 ? spec[(eq + 1)..] : Path.GetFileName(spec);
            if (!File.Exists(path))
                throw new BuildException($"--module {spec}: no such file '{path}'", ExitCodes.Usage);
            if (name.Length == 0 || name.Length > 63 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
                throw new BuildException($"--module {spec}: the module name '{name}' must be 1 to 63 of A-Z a-z 0-9 . _ - (name it with PATH=NAME)", ExitCodes.Usage);
            if (LinuxGuest.ModuleNames.Contains(name))
                throw new BuildException($"--module {spec}: '{name}' is the name of a module of the Linux guest made from Debian's packages (out/obj/linux); " +
                    "to boot your own kernel or initramfs, give it another name with PATH=NAME and use that name on the command line", ExitCodes.Usage);
            if (IsBuiltInName(name) || File.Exists(Path.Combine(generated, name)))
                throw new BuildException($"--module {spec}: '{name}' is the name of a built-in module; pick another with PATH=NAME", ExitCodes.Usage);
            Directory.CreateDirectory(UserDir);
            File.Copy(path, Path.Combine(UserDir, name), overwrite: true);
            Console.WriteLine($"module: {path} -> {name} (kept in {Path.GetRelativePath(Repo.Root, UserDir)}/ for later runs; delete it there to drop it)");
        }
    }
}
