using System.Reflection;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace Tandem.Build;

/// <summary>
/// The Linux guest made from Debian's packages (docs/guests.md, "Linux guest: how it is made"):
/// <c>linux-image-cloud-amd64</c> names the kernel package, which is fetched with
/// <c>busybox-static</c> by <c>apt-get download</c> into out/cache/debian (once: a later build finds
/// the .deb files there and calls no apt), unpacked with <c>dpkg-deb -x</c>, and turned into three
/// modules in out/obj/linux: <c>linux</c> (the bzImage as it is), <c>linux-vmlinux</c> (the
/// uncompressed ELF for the PVH entry, shrunk to what a loader reads) and <c>linux-initrd</c>
/// (busybox and the scripts in tools/Build/Linux, a gzip'd newc cpio). They are remade only when the
/// packages, the scripts or the driver files that make them change. When apt cannot fetch the
/// packages, the build goes on without them and out/obj/linux/UNAVAILABLE says why (the test verb
/// prints it).
/// </summary>
internal static partial class LinuxGuest
{
    public const string MetaPackage = "linux-image-cloud-amd64";
    public const string BusyboxPackage = "busybox-static";

    /// <summary>The module names; <see cref="Guests.AddUserModules"/> refuses them for --module.</summary>
    public const string KernelModule = "linux", VmlinuxModule = "linux-vmlinux", InitrdModule = "linux-initrd";
    public static readonly string[] ModuleNames = [KernelModule, InitrdModule, VmlinuxModule];

    public static string CacheDir => Path.Combine(Repo.Out, "cache", "debian");
    public static string OutDir => Path.Combine(Repo.Obj, "linux");
    public static string UnavailableFile => Path.Combine(OutDir, "UNAVAILABLE");
    private static string StampFile => Path.Combine(OutDir, "inputs.sha256");
    private static string CacheShown => Path.GetRelativePath(Repo.Root, CacheDir);

    private sealed record Packages(string Meta, string Kernel, string Busybox);

    private static bool s_ensured;

    /// <summary>Why the Linux guest is missing (out/obj/linux/UNAVAILABLE), or null.</summary>
    public static string? UnavailableReason =>
        File.Exists(UnavailableFile) ? File.ReadAllText(UnavailableFile).Trim() : null;

    /// <summary>The module path of <paramref name="name"/> in out/obj/linux.</summary>
    public static string PathOf(string name) => Path.Combine(OutDir, name);

    /// <summary>
    /// Makes sure out/obj/linux holds the three modules (once per driver run): from the cached
    /// packages, else from packages apt fetches now; without them, writes UNAVAILABLE and returns.
    /// </summary>
    public static void Ensure()
    {
        if (s_ensured)
            return;
        s_ensured = true;
        Directory.CreateDirectory(OutDir);

        Packages? packages = FindCached();
        if (packages != null)
            Console.WriteLine($"linux guest: using cached packages in {CacheShown}");
        else
        {
            packages = Fetch(out string? why);
            if (packages == null)
            {
                if (ModuleNames.All(n => File.Exists(PathOf(n))) && File.Exists(StampFile))
                {
                    Console.WriteLine($"linux guest: cannot fetch the packages ({why}); keeping the modules already in {Path.GetRelativePath(Repo.Root, OutDir)}");
                    return;
                }
                MarkUnavailable(why!);
                return;
            }
        }

        string stamp = Stamp(packages);
        if (ModuleNames.All(n => File.Exists(PathOf(n))) && File.Exists(StampFile) && File.ReadAllText(StampFile).Trim() == stamp)
        {
            File.Delete(UnavailableFile);
            Console.WriteLine($"linux guest: {Path.GetRelativePath(Repo.Root, OutDir)}/{{{string.Join(',', ModuleNames)}}} up to date");
            return;
        }
        Make(packages);
        WriteAtomically(StampFile, System.Text.Encoding.ASCII.GetBytes(stamp + "\n"));
        File.Delete(UnavailableFile);
    }

    private static void MarkUnavailable(string why)
    {
        foreach (string n in ModuleNames)
            File.Delete(PathOf(n));
        File.Delete(StampFile);
        File.WriteAllText(UnavailableFile, why + "\n");
        Console.WriteLine($"linux guest: unavailable, building without it: {why}");
    }

    // ---- The packages: out/cache/debian, or apt-get download ----

    /// <summary>The three .deb files when the cache has them (the kernel package the meta package names, exactly).</summary>
    private static Packages? FindCached()
    {
        string? meta = Newest(CacheDir, MetaPackage);
        string? busybox = Newest(CacheDir, BusyboxPackage);
        if (meta == null || busybox == null || Shell.Which("dpkg-deb") == null)
            return null;
        var (name, version) = KernelDependency(meta);
        if (name == null)
            return null;
        string prefix = version != null ? $"{name}_{DebVersion(version)}_" : $"{name}_";
        string? kernel = Directory.GetFiles(CacheDir, prefix + "*.deb").OrderBy(f => f, StringComparer.Ordinal).LastOrDefault();
        return kernel == null ? null : new Packages(meta, kernel, busybox);
    }

    /// <summary>The newest cached NAME_*.deb.</summary>
    private static string? Newest(string dir, string package) =>
        Directory.Exists(dir)
            ? Directory.GetFiles(dir, package + "_*.deb").OrderBy(File.GetLastWriteTimeUtc).ThenBy(f => f, StringComparer.Ordinal).LastOrDefault()
            : null;

    /// <summary>apt-get download writes an epoch's ':' as "%3a" in file names.</summary>
    private static string DebVersion(string version) => version.Replace(":", "%3a");

    /// <summary>The first linux-image-* package in the meta package's Depends, with its "(= VERSION)".</summary>
    private static (string? Name, string? Version) KernelDependency(string metaDeb)
    {
        var lines = new List<string>();
        int code = Shell.Run("dpkg-deb", ["-f", metaDeb, "Depends"], quiet: true, onLine: l => { lock (lines) lines.Add(l); });
        if (code != 0)
            return (null, null);
        Match m = DependsEntry().Match(string.Join(' ', lines));
        return m.Success ? (m.Groups[1].Value, m.Groups[2].Success ? m.Groups[2].Value : null) : (null, null);
    }

    [GeneratedRegex(@"(?:^|,)\s*(linux-image-[A-Za-z0-9.+-]+)\s*(?:\(\s*=\s*([^)\s]+)\s*\))?")]
    private static partial Regex DependsEntry();

    /// <summary>
    /// apt-get download into a scratch folder, then into the cache (replacing older versions of the
    /// same packages). On a failure it runs apt-get update once (as root) and tries again, since a
    /// fresh machine has no package lists and old lists name versions the mirror no longer has.
    /// Returns null with apt's own error when it cannot.
    /// </summary>
    private static Packages? Fetch(out string? why)
    {
        why = null;
        if (Shell.Which("apt-get") == null || Shell.Which("dpkg-deb") == null)
        {
            why = "apt-get and dpkg-deb are needed to fetch Debian's packages (not a Debian machine?)";
            return null;
        }
        // Folders and temporary files of this process only: two drivers may share out/ (parallel runs).
        string scratch = Path.Combine(Repo.Out, "cache", $"debian-download-{Environment.ProcessId}");
        if (Directory.Exists(scratch))
            Directory.Delete(scratch, recursive: true);
        Directory.CreateDirectory(scratch);
        try
        {
            if (!AptDownload(scratch, [MetaPackage], out why))
                return null;
            string meta = Directory.GetFiles(scratch, MetaPackage + "_*.deb").Single();
            var (name, version) = KernelDependency(meta);
            if (name == null)
            {
                why = $"{Path.GetFileName(meta)} names no linux-image-* package in its Depends";
                return null;
            }
            string spec = version != null ? $"{name}={version}" : name;
            if (!AptDownload(scratch, [spec, BusyboxPackage], out why))
                return null;
            Directory.CreateDirectory(CacheDir);
            foreach (string package in new[] { MetaPackage, name, BusyboxPackage })
            {
                string file = Directory.GetFiles(scratch, package + "_*.deb").Single();
                foreach (string old in Directory.GetFiles(CacheDir, package + "_*.deb"))
                    File.Delete(old);
                string cached = Path.Combine(CacheDir, Path.GetFileName(file));
                File.Move(file, cached, overwrite: true);
                Console.WriteLine($"linux guest: fetched {Path.GetFileName(cached)} ({Size(new FileInfo(cached).Length)}) into {CacheShown}");
            }
            return FindCached() ?? throw new BuildException($"the packages fetched into {CacheShown} were not found there again");
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static bool AptDownload(string dir, string[] packages, out string? why)
    {
        string what = "apt-get download " + string.Join(' ', packages);
        string? error = RunApt(["download", .. packages], dir);
        if (error == null)
        {
            why = null;
            return true;
        }
        if (Tools.AptListsUpdated || Environment.UserName != "root")
        {
            why = $"{what} failed: {error}";
            return false;
        }
        Console.WriteLine($"linux guest: {what} failed ({error}); running apt-get update once and trying again");
        string? updateError = RunApt(["update"], dir);
        if (updateError != null)
        {
            why = $"{what} failed: {error}; apt-get update failed too: {updateError}";
            return false;
        }
        Tools.AptListsUpdated = true;
        error = RunApt(["download", .. packages], dir);
        why = error == null ? null : $"{what} failed: {error}";
        return error == null;
    }

    /// <summary>Runs apt-get in <paramref name="dir"/>; null on success, else apt's own error (its first "E:" line).</summary>
    private static string? RunApt(string[] args, string dir)
    {
        var lines = new List<string>();
        var env = new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" };
        int code;
        try
        {
            code = Shell.Run("apt-get", args, dir, quiet: true, env: env, onLine: l => { lock (lines) lines.Add(l); });
        }
        catch (BuildException e)
        {
            return e.Message;
        }
        if (code == 0)
            return null;
        // apt-get download as root warns that it runs "unsandboxed": never the reason.
        string? e1 = lines.FirstOrDefault(l => l.StartsWith("E: ", StringComparison.Ordinal));
        string? last = lines.LastOrDefault(l => l.Trim().Length > 0 && !l.Contains("unsandboxed", StringComparison.Ordinal));
        return (e1 ?? last ?? $"exit code {code}").Trim();
    }

    // ---- The modules ----

    /// <summary>The driver's files that decide what the modules hold (the scripts are embedded from tools/Build/Linux).</summary>
    private static readonly string[] RecipeFiles = ["LinuxGuest.cs", "LinuxImage.cs", "Initramfs.cs", "Cpio.cs", "DebugExitProgram.cs"];

    /// <summary>
    /// What the modules are made from: both packages, the scripts, and the driver's source files
    /// that make them (not the whole driver: its assembly changes with every commit, through the
    /// source link in its PDB's checksum, which would remake the modules each time).
    /// </summary>
    private static string Stamp(Packages p)
    {
        static string Hash(byte[] b) => Convert.ToHexString(SHA256.HashData(b)).ToLowerInvariant();
        var recipe = new List<byte>();
        foreach (var (_, source, _) in Initramfs.Scripts)
            recipe.AddRange(System.Text.Encoding.UTF8.GetBytes(source + "\0" + Script(source) + "\0"));
        foreach (string name in RecipeFiles)
        {
            string path = Path.Combine(Repo.Root, "tools", "Build", name);
            recipe.AddRange(File.Exists(path) ? File.ReadAllBytes(path) : System.Text.Encoding.UTF8.GetBytes("missing " + name));
        }
        return string.Join(' ', Hash(File.ReadAllBytes(p.Kernel)), Hash(File.ReadAllBytes(p.Busybox)), Hash([.. recipe]));
    }

    private static void Make(Packages p)
    {
        string unpack = Path.Combine(Repo.Out, "cache", $"unpack-{Environment.ProcessId}");
        if (Directory.Exists(unpack))
            Directory.Delete(unpack, recursive: true);
        try
        {
            string kernelRoot = Path.Combine(unpack, "kernel"), busyboxRoot = Path.Combine(unpack, "busybox");
            foreach (var (deb, root) in new[] { (p.Kernel, kernelRoot), (p.Busybox, busyboxRoot) })
            {
                Directory.CreateDirectory(root);
                Shell.Check("dpkg-deb", ["-x", deb, root],
                    $"dpkg-deb -x {Path.GetRelativePath(Repo.Root, deb)} (a damaged download? delete {CacheShown} to fetch the packages again)");
            }
            string[] vmlinuz = Directory.Exists(Path.Combine(kernelRoot, "boot")) ? Directory.GetFiles(Path.Combine(kernelRoot, "boot"), "vmlinuz-*") : [];
            if (vmlinuz.Length != 1)
                throw new BuildException($"{Path.GetFileName(p.Kernel)} holds {vmlinuz.Length} /boot/vmlinuz-* files (1 expected)");
            string release = Path.GetFileName(vmlinuz[0])["vmlinuz-".Length..];
            string busyboxPath = Path.Combine(busyboxRoot, "bin", "busybox");
            if (!File.Exists(busyboxPath))
                throw new BuildException($"{Path.GetFileName(p.Busybox)} has no /bin/busybox");

            byte[] bzImage = File.ReadAllBytes(vmlinuz[0]);
            byte[] vmlinux;
            ulong entry;
            try
            {
                (vmlinux, entry, long full) = Vmlinux.FromBzImage(bzImage);
                Console.WriteLine($"linux guest: vmlinux {Size(full)} from the LZ4 payload, {Size(vmlinux.Length)} without sections; PVH entry (Xen note 18) 0x{entry:X}");
            }
            catch (InvalidDataException e)
            {
                throw new BuildException($"linux-vmlinux from {Path.GetFileName(vmlinuz[0])}: {e.Message}");
            }
            byte[] initrd = Initramfs.Build(File.ReadAllBytes(busyboxPath), Script);

            WriteAtomically(PathOf(KernelModule), bzImage);
            WriteAtomically(PathOf(VmlinuxModule), vmlinux);
            WriteAtomically(PathOf(InitrdModule), initrd);
            Console.WriteLine($"linux guest: {Path.GetRelativePath(Repo.Root, OutDir)}/: {KernelModule} (bzImage {release}, {Size(bzImage.Length)}), " +
                $"{VmlinuxModule} ({Size(vmlinux.Length)}), {InitrdModule} (busybox {Uri.UnescapeDataString(Path.GetFileName(p.Busybox).Split('_')[1])}, {Size(initrd.Length)})");
        }
        finally
        {
            if (Directory.Exists(unpack))
                Directory.Delete(unpack, recursive: true);
        }
    }

    /// <summary>A script of tools/Build/Linux, embedded in the driver.</summary>
    public static string Script(string name)
    {
        using Stream s = Assembly.GetExecutingAssembly().GetManifestResourceStream("Linux/" + name)
            ?? throw new BuildException($"the driver has no embedded script Linux/{name}");
        using var reader = new StreamReader(s);
        return reader.ReadToEnd();
    }

    private static void WriteAtomically(string path, byte[] bytes)
    {
        string temp = $"{path}.{Environment.ProcessId}.tmp";
        File.WriteAllBytes(temp, bytes);
        File.Move(temp, path, overwrite: true);
    }

    public static string Size(long bytes) =>
        bytes >= 1 << 20 ? $"{bytes / 1048576.0:F1} MiB" : bytes >= 1 << 10 ? $"{bytes / 1024.0:F1} KiB" : $"{bytes} bytes";
}
