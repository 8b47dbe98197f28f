namespace Tandem.Build;

/// <summary>
/// Every boot gets a folder of its own, out/runs/&lt;timestamp&gt;-&lt;config&gt;/, holding its ISO,
/// serial log, emulator log and configuration, so that parallel runs never share a file and a
/// log shown after a failure is always this run's.
/// </summary>
internal static class RunFolder
{
    public static string Root => Path.Combine(Repo.Out, "runs");

    public static string Create(string config)
    {
        Directory.CreateDirectory(Root);
        string stamp = DateTime.Now.ToString("yyyyMMdd-HHmmss", System.Globalization.CultureInfo.InvariantCulture);
        for (int n = 1; ; n++)
        {
            string name = n == 1 ? $"{stamp}-{config}" : $"{stamp}-{config}-{n}";
            string path = Path.Combine(Root, name);
            try
            {
                // CreateDirectory succeeds on an existing folder, so claim the name with a marker
                // file that only one process can create.
                Directory.CreateDirectory(path);
                using (new FileStream(Path.Combine(path, ".claimed"), FileMode.CreateNew)) { }
                return path;
            }
            catch (IOException) when (File.Exists(Path.Combine(path, ".claimed")))
            {
            }
        }
    }
}
