namespace Tandem.Build;

/// <summary>Guest images that go on the ISO as multiboot modules (built by kvm's guest generator when it exists).</summary>
internal static class Guests
{
    public static IReadOnlyList<(string Path, string Name)> Modules()
    {
        string dir = Path.Combine(Repo.Obj, "guests");
        if (!Directory.Exists(dir))
            return [];
        return Directory.GetFiles(dir).OrderBy(f => f, StringComparer.Ordinal).Select(f => (f, Path.GetFileName(f))).ToList();
    }
}
