using System.Diagnostics;
using System.Text;
using Xunit;

// The scripts and programs tested here are Linux's (sh, busybox, cpio, file modes).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

namespace Tandem.Build.Tests;

/// <summary>One entry of a newc archive as <see cref="NewcReader"/> read it.</summary>
internal sealed record NewcEntry(string Name, int Ino, int Mode, int Uid, int Gid, int Nlink, int Mtime,
    int DevMajor, int DevMinor, int RdevMajor, int RdevMinor, byte[] Data, int HeaderOffset, int DataOffset);

/// <summary>
/// A newc reader written for the tests, independently of the writer: it checks every rule the
/// kernel's unpacker relies on (magic, hex digits, the NUL after the name, 4-byte alignment of each
/// header and each data block, zero padding, check field 0) and stops at "TRAILER!!!".
/// </summary>
internal static class NewcReader
{
    public static List<NewcEntry> Read(byte[] archive, bool includeTrailer = false)
    {
        var entries = new List<NewcEntry>();
        int at = 0;
        while (true)
        {
            Assert.True(at % 4 == 0, $"header at {at} is not 4-byte aligned");
            Assert.True(at + 110 <= archive.Length, $"archive ends inside the header at {at}");
            Assert.Equal("070701", Encoding.ASCII.GetString(archive, at, 6));
            var f = new int[13];
            for (int i = 0; i < 13; i++)
            {
                string hex = Encoding.ASCII.GetString(archive, at + 6 + 8 * i, 8);
                Assert.True(hex.All(Uri.IsHexDigit), $"field {i} at {at} is not hex: '{hex}'");
                f[i] = Convert.ToInt32(hex, 16);
            }
            int namesize = f[11];
            Assert.True(namesize >= 2, "a name has at least one character and its NUL");
            Assert.Equal(0, archive[at + 110 + namesize - 1]);
            string name = Encoding.UTF8.GetString(archive, at + 110, namesize - 1);
            Assert.DoesNotContain('\0', name);
            Assert.Equal(0, f[12]);                         // check: 0 in newc
            int dataOffset = Align4(at + 110 + namesize);
            AssertZero(archive, at + 110 + namesize, dataOffset);
            byte[] data = archive.AsSpan(dataOffset, f[6]).ToArray();
            int next = Align4(dataOffset + f[6]);
            AssertZero(archive, dataOffset + f[6], next);
            var entry = new NewcEntry(name, f[0], f[1], f[2], f[3], f[4], f[5], f[7], f[8], f[9], f[10], data, at, dataOffset);
            at = next;
            if (name == "TRAILER!!!")
            {
                if (includeTrailer)
                    entries.Add(entry);
                AssertZero(archive, at, archive.Length);
                return entries;
            }
            entries.Add(entry);
        }
    }

    public static int Align4(int n) => (n + 3) & ~3;

    private static void AssertZero(byte[] b, int from, int to)
    {
        for (int i = from; i < to; i++)
            Assert.True(b[i] == 0, $"padding byte at {i} is 0x{b[i]:X2}, not 0");
    }
}

internal static class Host
{
    /// <summary>The repository: the folder above the test's binaries that holds linker.ld.</summary>
    public static string RepoRoot { get; } = FindRoot();

    private static string FindRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir != null && !File.Exists(Path.Combine(dir, "linker.ld")))
            dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("no linker.ld above " + AppContext.BaseDirectory);
    }

    public static string Script(string name) => File.ReadAllText(Path.Combine(RepoRoot, "tools", "Build", "Linux", name));

    public static string LinuxModule(string name) => Path.Combine(RepoRoot, "out", "obj", "linux", name);

    public static string? Which(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    /// <summary>Runs a program to its end (at most <paramref name="timeoutSeconds"/>); its exit code and both outputs.</summary>
    public static (int Code, string Stdout, string Stderr) Run(string file, IEnumerable<string> args, string? workDir = null,
        IDictionary<string, string>? env = null, byte[]? stdin = null, int timeoutSeconds = 120)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workDir ?? Environment.CurrentDirectory,
        };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        if (env != null)
        {
            psi.Environment.Clear();
            foreach (var (k, v) in env)
                psi.Environment[k] = v;
        }
        using var p = Process.Start(psi)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
        if (stdin != null)
            p.StandardInput.BaseStream.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} ran past {timeoutSeconds} s");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}

/// <summary>A fact that runs only where GNU cpio is installed (it is not by default; the build never needs it).</summary>
public sealed class FactWithCpioAttribute : FactAttribute
{
    public FactWithCpioAttribute()
    {
        if (Host.Which("cpio") == null)
            Skip = "cpio is not installed (apt-get install cpio): the comparison with GNU cpio is skipped";
    }
}

/// <summary>A fact that needs the Linux guest's modules in out/obj/linux (made by ./build.sh image).</summary>
public sealed class FactWithLinuxGuestAttribute : FactAttribute
{
    public FactWithLinuxGuestAttribute(string module)
    {
        if (!File.Exists(Host.LinuxModule(module)))
        {
            string? why = File.Exists(Host.LinuxModule("UNAVAILABLE")) ? File.ReadAllText(Host.LinuxModule("UNAVAILABLE")).Trim() : null;
            Skip = $"out/obj/linux/{module} is not built" + (why != null ? $" (linux guest unavailable: {why})" : " (./build.sh image makes it)");
        }
    }
}

/// <summary>
/// A fact that needs programs from the PATH (gcc, ld: Debian's build-essential). Without one it is
/// reported as SKIPPED with the missing program named: a skip is not a pass.
/// </summary>
public sealed class FactWithToolsAttribute : FactAttribute
{
    public FactWithToolsAttribute(params string[] tools)
    {
        string[] missing = tools.Where(t => Host.Which(t) == null).ToArray();
        if (missing.Length > 0)
            Skip = $"SKIPPED, NOT PASSED: {string.Join(", ", missing)} not on the PATH (apt-get install binutils gcc): this test needs them to make a real ELF";
    }
}
