namespace Tandem.Build;

/// <summary>Where things are: the repository, its output folder, the SDK and the NuGet cache.</summary>
internal static class Repo
{
    public static readonly string Root = FindRoot();
    public static string Out => Path.Combine(Root, "out");
    public static string Obj => Path.Combine(Out, "obj");

    /// <summary>
    /// --debug-info: the image is built with DWARF (ILC's -g, Roslyn's portable PDBs) into files of
    /// its own (out/tandem-debug.elf, .sym, .iso; its objects under out/obj/debug), so that it is
    /// never taken for the deterministic normal image, and each has its own rebuild check.
    /// </summary>
    public static bool DebugInfo { get; set; }

    /// <summary>Where the kernel's layers, kernel.o and stubs.o go: out/obj, or out/obj/debug with --debug-info.</summary>
    public static string KernelObj => DebugInfo ? Path.Combine(Obj, "debug") : Obj;
    private static string ImageName => DebugInfo ? "tandem-debug" : "tandem";
    public static string Elf => Path.Combine(Out, ImageName + ".elf");
    public static string Iso => Path.Combine(Out, ImageName + ".iso");
    public static string Symbols => Path.Combine(Out, ImageName + ".sym");

    private static string FindRoot()
    {
        string? dir = Directory.GetCurrentDirectory();
        while (dir != null && !File.Exists(Path.Combine(dir, "linker.ld")))
            dir = Path.GetDirectoryName(dir);
        if (dir == null)
            throw new BuildException("run this from inside the Tandem repository (no linker.ld found above the current directory)", ExitCodes.Usage);
        return dir;
    }

    public static string NuGetPackages =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p
            ? p
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    public static string Ilc
    {
        get
        {
            string path = Path.Combine(NuGetPackages, "runtime.linux-x64.microsoft.dotnet.ilcompiler", "10.0.14", "tools", "ilc");
            if (!File.Exists(path))
                throw new BuildException($"ILC 10.0.14 not found at {path}; run 'dotnet restore tools/Build' first", ExitCodes.MissingTool);
            return path;
        }
    }

    /// <summary>
    /// csc.dll of the SDK that global.json selects for the repository (what <c>dotnet --version</c>
    /// reports there): the kernel's bytes depend on this Roslyn, so it is the pinned one, not merely
    /// the newest installed.
    /// </summary>
    public static string Csc => s_csc ??= FindCsc();

    private static string? s_csc;

    private static string FindCsc()
    {
        string dotnetRoot = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(
            Path.GetDirectoryName(typeof(object).Assembly.Location)!)!)!)!;
        var lines = new List<string>();
        int code = Shell.Run("dotnet", ["--version"], Root, quiet: true, onLine: l => { lock (lines) lines.Add(l); });
        string version = lines.LastOrDefault(l => l.Trim().Length > 0)?.Trim() ?? "";
        if (code != 0 || version.Length == 0)
            throw new BuildException($"'dotnet --version' in {Root} failed (exit code {code}): the SDK that global.json asks for is not installed?\n{string.Join('\n', lines)}", ExitCodes.MissingTool);
        string csc = Path.Combine(dotnetRoot, "sdk", version, "Roslyn", "bincore", "csc.dll");
        if (!File.Exists(csc))
            throw new BuildException($"no Roslyn compiler at {csc} (the SDK {version} that global.json selects)", ExitCodes.MissingTool);
        return csc;
    }
}

/// <summary>
/// A failure with a message meant for the user; the driver prints it and exits with
/// <see cref="ExitCode"/> (a failed step unless said otherwise; see <see cref="ExitCodes"/>).
/// </summary>
internal sealed class BuildException(string message, int exitCode = ExitCodes.StepFailed) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}
