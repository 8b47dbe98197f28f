using System.Text;

namespace Tandem.Build;

/// <summary>
/// Writes a cpio archive in the "newc" format (the one the Linux kernel unpacks as an initramfs):
/// per entry a 110-byte ASCII header ("070701" and 13 fields of 8 upper-case hex digits: ino, mode,
/// uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize with the
/// NUL, check), the NUL-terminated name, padding to 4 bytes counted from the header's start, the
/// data, padding to 4; the archive ends with the entry "TRAILER!!!". Entries are written sorted by
/// name (ordinal, so a directory comes before what it holds), with inode numbers 1, 2, ... in that
/// order, owner 0:0 and mtime 0: the same entries always give the same bytes. Names have no leading
/// '/' in the archive; every entry's parent must be a directory of the archive.
/// </summary>
internal sealed class CpioArchive
{
    public const int TypeMask = 0xF000;
    public const int Directory = 0x4000;        // S_IFDIR 040000
    public const int RegularFile = 0x8000;      // S_IFREG 0100000
    public const int Symlink = 0xA000;          // S_IFLNK 0120000
    public const int CharDevice = 0x2000;       // S_IFCHR 020000
    public const string Trailer = "TRAILER!!!";
    public const string Magic = "070701";
    public const int HeaderSize = 110;

    private sealed record Entry(int Mode, byte[] Data, int RdevMajor, int RdevMinor);

    private readonly SortedDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    public int Count => _entries.Count;

    /// <summary>A directory; <paramref name="permissions"/> defaults to 0755.</summary>
    public void AddDirectory(string path, int permissions = 0x1ED) => Add(path, new Entry(Directory | Permissions(permissions), [], 0, 0));

    /// <summary>A regular file; <paramref name="permissions"/> defaults to 0644 (0755 for a script or program).</summary>
    public void AddFile(string path, byte[] data, int permissions = 0x1A4) => Add(path, new Entry(RegularFile | Permissions(permissions), data, 0, 0));

    /// <summary>A symbolic link (mode 0777) whose data is the target.</summary>
    public void AddSymlink(string path, string target)
    {
        if (target.Length == 0)
            throw new ArgumentException("a symlink needs a target", nameof(target));
        Add(path, new Entry(Symlink | 0x1FF, Encoding.UTF8.GetBytes(target), 0, 0));
    }

    /// <summary>A character device node, e.g. /dev/console (5, 1); <paramref name="permissions"/> defaults to 0600.</summary>
    public void AddCharDevice(string path, int major, int minor, int permissions = 0x180) =>
        Add(path, new Entry(CharDevice | Permissions(permissions), [], major, minor));

    private void Add(string path, Entry entry)
    {
        string name = Normalize(path);
        if (!_entries.TryAdd(name, entry))
            throw new ArgumentException($"'{name}' is already in the archive");
    }

    /// <summary>Permission bits only (0 to 07777): anything above would change the entry's type.</summary>
    private static int Permissions(int permissions) =>
        (permissions & ~0xFFF) == 0 ? permissions : throw new ArgumentOutOfRangeException(nameof(permissions), $"0x{permissions:X} is not a set of permission bits");

    private static string Normalize(string path)
    {
        string name = path.TrimStart('/');
        if (name.Length == 0 || name.EndsWith('/') || name.Split('/').Any(p => p is "" or "." or "..") || name.Contains('\0'))
            throw new ArgumentException($"bad archive path '{path}'");
        if (name == Trailer)
            throw new ArgumentException($"'{Trailer}' is the name of the end marker");
        return name;
    }

    /// <summary>The archive's bytes (not padded beyond the trailer's own 4-byte padding).</summary>
    public byte[] ToArray()
    {
        foreach (string name in _entries.Keys)
        {
            int slash = name.LastIndexOf('/');
            if (slash > 0 && !(_entries.TryGetValue(name[..slash], out Entry? parent) && (parent.Mode & TypeMask) == Directory))
                throw new InvalidOperationException($"'{name}': its parent '{name[..slash]}' is not a directory of the archive");
        }
        using var output = new MemoryStream();
        int ino = 1;
        foreach (var (name, e) in _entries)
        {
            int nlink = (e.Mode & TypeMask) == Directory ? 2 : 1;
            WriteEntry(output, name, ino++, e.Mode, nlink, e.Data, e.RdevMajor, e.RdevMinor);
        }
        WriteEntry(output, Trailer, 0, 0, 1, [], 0, 0);
        return output.ToArray();
    }

    private static void WriteEntry(MemoryStream output, string name, int ino, int mode, int nlink, byte[] data, int rdevMajor, int rdevMinor)
    {
        byte[] nameBytes = Encoding.UTF8.GetBytes(name);
        var header = new StringBuilder(HeaderSize);
        header.Append(Magic);
        foreach (long field in new long[] { ino, mode, 0, 0, nlink, 0, data.Length, 0, 0, rdevMajor, rdevMinor, nameBytes.Length + 1, 0 })
            header.Append(field.ToString("X8", System.Globalization.CultureInfo.InvariantCulture));
        output.Write(Encoding.ASCII.GetBytes(header.ToString()));
        output.Write(nameBytes);
        output.WriteByte(0);
        Pad(output);
        output.Write(data);
        Pad(output);
    }

    /// <summary>Zeros up to the next multiple of 4 (the stream starts at the archive's first byte).</summary>
    private static void Pad(MemoryStream output)
    {
        while (output.Length % 4 != 0)
            output.WriteByte(0);
    }
}
