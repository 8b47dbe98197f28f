namespace Tandem.Build;

/// <summary>
/// Guest images that go on the ISO as multiboot modules: the generated test guests and C test
/// kernels (rebuilt with the image, in obj/guests) and the user's own modules (<c>--module
/// PATH[=NAME]</c>, kept in out/modules across rebuilds until removed).
/// </summary>
internal static class Guests
{
    public static string UserDir => Path.Combine(Repo.Out, "modules");

    public static IReadOnlyList<(string Path, string Name)> Modules()
    {
        var all = new List<(string Path, string Name)>();
        foreach (string dir in new[] { Path.Combine(Repo.Obj, "guests"), UserDir })
        {
            if (Directory.Exists(dir))
                all.AddRange(Directory.GetFiles(dir).OrderBy(f => f, StringComparer.Ordinal).Select(f => (f, Path.GetFileName(f))));
        }
        return all;
    }

    /// <summary>
    /// <c>--module PATH[=NAME]</c>: copies each file into out/modules under NAME (default: its file
    /// name), where it stays for later runs. Refuses a missing file, a name GRUB or the kernel's
    /// command line could not carry, and a name a generated guest already has.
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
            if (name == "symbols" || File.Exists(Path.Combine(generated, name)))
                throw new BuildException($"--module {spec}: '{name}' is the name of a built-in module; pick another with PATH=NAME", ExitCodes.Usage);
            Directory.CreateDirectory(UserDir);
            File.Copy(path, Path.Combine(UserDir, name), overwrite: true);
            Console.WriteLine($"module: {path} -> {name} (kept in {Path.GetRelativePath(Repo.Root, UserDir)}/ for later runs; delete it there to drop it)");
        }
    }
}
