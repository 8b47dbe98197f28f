using System.IO.Compression;
using System.Text;

namespace Tandem.Build;

/// <summary>
/// The Linux guest's initramfs (docs/guests.md, "Linux guest: how it is made"): busybox, the
/// directories a busybox system needs, /dev/console and /dev/ttyS0, /bin/tandem-exit
/// (<see cref="DebugExitProgram"/>) and the scripts in tools/Build/Linux (/init, /selftest,
/// /etc/profile), as a newc cpio archive compressed with gzip.
/// </summary>
internal static class Initramfs
{
    public static readonly string[] Directories =
        ["bin", "dev", "etc", "proc", "root", "sbin", "sys", "tmp", "usr", "usr/bin", "usr/sbin"];

    /// <summary>The scripts by their path in the initramfs, with their names in tools/Build/Linux.</summary>
    public static readonly (string Path, string Source, int Permissions)[] Scripts =
    [
        ("init", "init", 0x1ED),                // 0755
        ("selftest", "selftest", 0x1ED),
        ("etc/profile", "profile", 0x1A4),      // 0644
    ];

    public static CpioArchive Archive(byte[] busybox, Func<string, string> script)
    {
        var cpio = new CpioArchive();
        foreach (string d in Directories)
            cpio.AddDirectory(d, d == "tmp" ? 0x3FF : d == "root" ? 0x1C0 : 0x1ED);   // tmp 01777, root 0700
        cpio.AddFile("bin/busybox", busybox, 0x1ED);
        cpio.AddFile("bin/tandem-exit", DebugExitProgram.Build(), 0x1ED);
        cpio.AddCharDevice("dev/console", 5, 1, 0x180);     // 0600
        cpio.AddCharDevice("dev/ttyS0", 4, 64, 0x1B0);      // 0660
        foreach (var (path, source, permissions) in Scripts)
            cpio.AddFile(path, Encoding.UTF8.GetBytes(script(source)), permissions);
        return cpio;
    }

    public static byte[] Build(byte[] busybox, Func<string, string> script) => Gzip(Archive(busybox, script).ToArray());

    /// <summary>
    /// gzip (RFC 1952) with .NET's GZipStream at its smallest size. GZipStream writes no file name
    /// and a modification time of 0, so the same bytes in give the same bytes out.
    /// </summary>
    public static byte[] Gzip(byte[] data)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.SmallestSize, leaveOpen: true))
            gzip.Write(data);
        return output.ToArray();
    }
}
