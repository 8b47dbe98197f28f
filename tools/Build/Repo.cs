namespace Tandem.Build;

/// <summary>Where things are: the repository, its output folder, the SDK and the NuGet cache.</summary>
internal static class Repo
{
    public static readonly string Root = FindRoot();
    public static string Out => Path.Combine(Root, "out");
    public static string Obj => Path.Combine(Out, "obj");
    public static string Elf => Path.Combine(Out, "tandem.elf");
    public static string Iso => Path.Combine(Out, "tandem.iso");
    public static string Symbols => Path.Combine(Out, "tandem.sym");

    private static string FindRoot()
    {
        string? dir = Directory.GetCurrentDirectory();
        while (dir != null && !File.Exists(Path.Combine(dir, "linker.ld")))
            dir = Path.GetDirectoryName(dir);
        if (dir == null)
            throw new BuildException("run this from inside the Tandem repository (no linker.ld found above the current directory)");
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
                throw new BuildException($"ILC 10.0.14 not found at {path}; run 'dotnet restore tools/Build' first");
            return path;
        }
    }

    /// <summary>csc.dll from the SDK that runs this driver.</summary>
    public static string Csc
    {
        get
        {
            string dotnetRoot = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(
                Path.GetDirectoryName(typeof(object).Assembly.Location)!)!)!)!;
            string sdkDir = Path.Combine(dotnetRoot, "sdk");
            string? best = Directory.Exists(sdkDir)
                ? Directory.GetDirectories(sdkDir).Where(d => File.Exists(Path.Combine(d, "Roslyn", "bincore", "csc.dll")))
                    .OrderBy(d => Version.TryParse(Path.GetFileName(d).Split('-')[0], out var v) ? v : new Version(0, 0)).LastOrDefault()
                : null;
            if (best == null)
                throw new BuildException($"no Roslyn compiler (sdk/*/Roslyn/bincore/csc.dll) under {dotnetRoot}");
            return Path.Combine(best, "Roslyn", "bincore", "csc.dll");
        }
    }
}

/// <summary>A failure with a message meant for the user; the driver prints it and exits non-zero.</summary>
internal sealed class BuildException(string message, int exitCode = 2) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}
