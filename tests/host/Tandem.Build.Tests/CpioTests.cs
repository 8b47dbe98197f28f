using System.Text;
using Xunit;

namespace Tandem.Build.Tests;

/// <summary>tools/Build/Cpio.cs: the newc writer the initramfs is made with.</summary>
public class CpioTests
{
    [Fact]
    public void OneFileArchiveHasTheHandComputedBytes()
    {
        var cpio = new CpioArchive();
        cpio.AddFile("a", "hi"u8.ToArray());
        // Entry: magic, ino 1, mode 0100644, uid, gid, nlink 1, mtime 0, filesize 2, devmajor, devminor,
        // rdevmajor, rdevminor, namesize 2 ("a" and its NUL), check; 110 + 2 = 112 bytes (aligned);
        // then "hi" and 2 bytes of padding (116).
        string expected =
            "070701" + "00000001" + "000081A4" + "00000000" + "00000000" + "00000001" + "00000000" + "00000002" +
            "00000000" + "00000000" + "00000000" + "00000000" + "00000002" + "00000000" + "a\0" +
            "hi\0\0" +
            // Trailer: ino 0, mode 0, nlink 1, namesize 11; 110 + 11 = 121, padded to 124.
            "070701" + "00000000" + "00000000" + "00000000" + "00000000" + "00000001" + "00000000" + "00000000" +
            "00000000" + "00000000" + "00000000" + "00000000" + "0000000B" + "00000000" + "TRAILER!!!\0" + "\0\0\0";
        byte[] bytes = cpio.ToArray();
        Assert.Equal(240, bytes.Length);
        Assert.Equal(expected, Encoding.ASCII.GetString(bytes));
    }

    [Theory]
    // name length n: header (110) + name + NUL, padded to 4, is where the data starts.
    [InlineData(1, 112)]
    [InlineData(2, 116)]
    [InlineData(3, 116)]
    [InlineData(4, 116)]
    [InlineData(5, 116)]
    [InlineData(6, 120)]
    [InlineData(7, 120)]
    [InlineData(8, 120)]
    public void NameAndDataArePaddedToFourBytes(int nameLength, int dataOffset)
    {
        for (int dataLength = 0; dataLength <= 5; dataLength++)
        {
            var cpio = new CpioArchive();
            string name = new('n', nameLength);
            byte[] data = Enumerable.Range(1, dataLength).Select(i => (byte)i).ToArray();
            cpio.AddFile(name, data);
            byte[] bytes = cpio.ToArray();
            NewcEntry e = Assert.Single(NewcReader.Read(bytes));
            Assert.Equal(name, e.Name);
            Assert.Equal(dataOffset, e.DataOffset);
            Assert.Equal(data, e.Data);
            int trailer = NewcReader.Align4(dataOffset + dataLength);
            Assert.Equal("070701", Encoding.ASCII.GetString(bytes, trailer, 6));
            Assert.Equal(trailer + 124, bytes.Length);
        }
    }

    [Fact]
    public void EveryKindOfEntryRoundTrips()
    {
        var cpio = new CpioArchive();
        cpio.AddDirectory("/bin");
        cpio.AddDirectory("dev");
        cpio.AddDirectory("tmp", 0x3FF);
        cpio.AddFile("/bin/busybox", Enumerable.Range(0, 1001).Select(i => (byte)(i * 7)).ToArray(), 0x1ED);
        cpio.AddSymlink("bin/sh", "busybox");
        cpio.AddCharDevice("/dev/console", 5, 1);
        cpio.AddCharDevice("dev/ttyS0", 4, 64, 0x1B0);
        cpio.AddFile("init", "#!/bin/sh\n"u8.ToArray(), 0x1ED);
        cpio.AddFile("empty", []);

        List<NewcEntry> entries = NewcReader.Read(cpio.ToArray());
        Assert.Equal(["bin", "bin/busybox", "bin/sh", "dev", "dev/console", "dev/ttyS0", "empty", "init", "tmp"], entries.Select(e => e.Name));
        Assert.Equal(Enumerable.Range(1, entries.Count), entries.Select(e => e.Ino));
        Assert.All(entries, e => Assert.Equal((0, 0, 0, 0, 0), (e.Uid, e.Gid, e.Mtime, e.DevMajor, e.DevMinor)));
        NewcEntry Get(string name) => entries.Single(e => e.Name == name);

        Assert.Equal(0x41ED, Get("bin").Mode);                   // 040755
        Assert.Equal(2, Get("bin").Nlink);
        Assert.Empty(Get("bin").Data);
        Assert.Equal(0x43FF, Get("tmp").Mode);                   // 041777
        Assert.Equal(0x81ED, Get("bin/busybox").Mode);           // 0100755
        Assert.Equal(1, Get("bin/busybox").Nlink);
        Assert.Equal(Enumerable.Range(0, 1001).Select(i => (byte)(i * 7)), Get("bin/busybox").Data);
        Assert.Equal(0xA1FF, Get("bin/sh").Mode);                // 0120777
        Assert.Equal("busybox", Encoding.UTF8.GetString(Get("bin/sh").Data));
        Assert.Equal(0x2180, Get("dev/console").Mode);           // 020600
        Assert.Equal((5, 1), (Get("dev/console").RdevMajor, Get("dev/console").RdevMinor));
        Assert.Equal(0x21B0, Get("dev/ttyS0").Mode);             // 020660
        Assert.Equal((4, 64), (Get("dev/ttyS0").RdevMajor, Get("dev/ttyS0").RdevMinor));
        Assert.Equal(0x81A4, Get("empty").Mode);
        Assert.Empty(Get("empty").Data);
    }

    [Fact]
    public void TheOrderOfAddingDoesNotChangeTheBytes()
    {
        var a = new CpioArchive();
        a.AddDirectory("x");
        a.AddFile("x/1", [1]);
        a.AddFile("x/2", [2, 2]);
        a.AddSymlink("y", "x/1");
        var b = new CpioArchive();
        b.AddSymlink("y", "x/1");
        b.AddFile("x/2", [2, 2]);
        b.AddFile("x/1", [1]);
        b.AddDirectory("x");
        Assert.Equal(a.ToArray(), b.ToArray());
    }

    [Fact]
    public void BadEntriesAreRefused()
    {
        var cpio = new CpioArchive();
        cpio.AddFile("f", []);
        Assert.Throws<ArgumentException>(() => cpio.AddFile("/f", []));                 // the same name
        Assert.Throws<ArgumentException>(() => cpio.AddFile("", []));
        Assert.Throws<ArgumentException>(() => cpio.AddFile("a/../b", []));
        Assert.Throws<ArgumentException>(() => cpio.AddFile("a//b", []));
        Assert.Throws<ArgumentException>(() => cpio.AddFile("dir/", []));
        Assert.Throws<ArgumentException>(() => cpio.AddFile("TRAILER!!!", []));
        Assert.Throws<ArgumentException>(() => cpio.AddSymlink("l", ""));
        Assert.Throws<ArgumentOutOfRangeException>(() => cpio.AddFile("g", [], 0x1000));
        cpio.AddFile("orphan/file", []);
        Assert.Throws<InvalidOperationException>(() => cpio.ToArray());                // no directory "orphan"
        var notDir = new CpioArchive();
        notDir.AddFile("f", []);
        notDir.AddFile("f/g", []);
        Assert.Throws<InvalidOperationException>(() => notDir.ToArray());              // "f" is a file
    }

    /// <summary>GNU cpio lists the archive and extracts its files and symlinks as written.</summary>
    [FactWithCpio]
    public void GnuCpioReadsTheArchive()
    {
        string dir = Directory.CreateTempSubdirectory("tandem-cpio-").FullName;
        try
        {
            var cpio = new CpioArchive();
            cpio.AddDirectory("bin");
            cpio.AddDirectory("etc");
            cpio.AddFile("bin/prog", Enumerable.Range(0, 5000).Select(i => (byte)(i % 251)).ToArray(), 0x1ED);
            cpio.AddFile("etc/profile", "export PS1='x# '\n"u8.ToArray());
            cpio.AddSymlink("bin/sh", "prog");
            byte[] withoutNodes = cpio.ToArray();
            cpio.AddDirectory("dev");
            cpio.AddCharDevice("dev/console", 5, 1);
            byte[] withNodes = cpio.ToArray();

            var (code, listing, err) = Host.Run("cpio", ["-itv"], dir, stdin: withNodes);
            Assert.True(code == 0, err);
            string[] lines = listing.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(["bin", "bin/prog", "bin/sh", "dev", "dev/console", "etc", "etc/profile"],
                lines.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Select(w => w[Array.IndexOf(w, "->") is int i and > 0 ? i - 1 : w.Length - 1]));
            Assert.StartsWith("crw-------", lines.Single(l => l.EndsWith("dev/console", StringComparison.Ordinal)));
            Assert.Contains("bin/sh -> prog", listing);

            string root = Path.Combine(dir, "x");
            Directory.CreateDirectory(root);
            (code, _, err) = Host.Run("cpio", ["-id", "--no-absolute-filenames"], root, stdin: withoutNodes);
            Assert.True(code == 0, err);
            Assert.Equal(Enumerable.Range(0, 5000).Select(i => (byte)(i % 251)), File.ReadAllBytes(Path.Combine(root, "bin", "prog")));
            Assert.Equal("export PS1='x# '\n", File.ReadAllText(Path.Combine(root, "etc", "profile")));
            Assert.Equal("prog", new FileInfo(Path.Combine(root, "bin", "sh")).LinkTarget);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead |
                UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute, File.GetUnixFileMode(Path.Combine(root, "bin", "prog")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
