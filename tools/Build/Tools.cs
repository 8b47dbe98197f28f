namespace Tandem.Build;

/// <summary>
/// The Debian tools each verb needs. Missing ones are installed when we run as root on Debian
/// (apt-get update once, then apt-get install -y); otherwise the driver stops and prints the exact
/// command to run.
/// </summary>
internal static class Tools
{
    private sealed record Need(string Package, string ProbePath, bool IsCommand);

    private static readonly Need[] ImageNeeds =
    [
        new("lld", "ld.lld", true),
        new("grub-common", "grub-mkrescue", true),
        new("grub-pc-bin", "/usr/lib/grub/i386-pc/cdboot.img", false),
        new("grub-efi-amd64-bin", "/usr/lib/grub/x86_64-efi/kernel.img", false),
        new("xorriso", "xorriso", true),
        new("mtools", "mformat", true),
        new("gcc", "gcc", true),                 // the C test kernels under tests/guests
    ];

    private static readonly Need[] QemuNeeds = [new("qemu-system-x86", "qemu-system-x86_64", true)];
    private static readonly Need[] UefiNeeds = [new("ovmf", "/usr/share/OVMF/OVMF_CODE_4M.fd", false)];
    private static readonly Need[] BochsNeeds =
    [
        new("bochs", "bochs", true),
        new("bochsbios", "/usr/share/bochs/BIOS-bochs-latest", false),
        new("vgabios", "/usr/share/vgabios/vgabios.bin", false),
        new("bochs-term", "/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_term_gui.so", false),
        new("bsdutils", "script", true),
    ];

    /// <summary>
    /// What the host tests call: iasl and acpiexec cross-check the ACPI tables, GNU cpio the
    /// initramfs writer, headless Chromium looks at ./build.sh report's page (ReportTests).
    /// </summary>
    private static readonly Need[] HostTestNeeds = [new("acpica-tools", "iasl", true), new("cpio", "cpio", true), new("chromium", "chromium", true)];

    /// <summary>apt-get update ran in this driver run (by <see cref="Ensure"/> or for the Linux guest's packages): once is enough.</summary>
    public static bool AptListsUpdated { get; set; }

    public static void EnsureImage() => Ensure(ImageNeeds);
    public static void EnsureQemu(bool uefi) => Ensure(uefi ? [.. QemuNeeds, .. UefiNeeds] : QemuNeeds);
    public static void EnsureBochs() => Ensure(BochsNeeds);
    public static void EnsureHostTests() => Ensure(HostTestNeeds);
    public static void EnsureAll() => Ensure([.. ImageNeeds, .. QemuNeeds, .. UefiNeeds, .. BochsNeeds]);

    private static bool Present(Need n) =>
        n.IsCommand ? Shell.Which(n.ProbePath) != null : File.Exists(n.ProbePath) || Directory.Exists(n.ProbePath);

    private static void Ensure(Need[] needs)
    {
        var missing = needs.Where(n => !Present(n)).Select(n => n.Package).Distinct().ToList();
        if (missing.Count == 0)
            return;
        string command = "apt-get install -y " + string.Join(' ', missing);
        bool root = Environment.UserName == "root";
        bool debian = File.Exists("/etc/debian_version") && Shell.Which("apt-get") != null;
        if (!root || !debian)
            throw new BuildException($"missing tools ({string.Join(", ", missing)}). Install them with:\n  sudo apt-get update && sudo {command}", ExitCodes.MissingTool);
        Console.Error.WriteLine($"build: installing {string.Join(' ', missing)}");
        var env = new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" };
        if (!AptListsUpdated)
        {
            Shell.Check("apt-get", ["update"], "apt-get update", env: env, exitCode: ExitCodes.MissingTool);
            AptListsUpdated = true;
        }
        Shell.Check("apt-get", ["install", "-y", "--no-install-recommends", .. missing], command, env: env, exitCode: ExitCodes.MissingTool);
        var still = needs.Where(n => !Present(n)).Select(n => n.ProbePath).ToList();
        if (still.Count > 0)
            throw new BuildException($"installed packages but still missing: {string.Join(", ", still)}", ExitCodes.MissingTool);
    }
}
