using System.Text;

namespace Tandem.Build;

/// <summary>
/// What <c>./build.sh run</c> boots when no <c>--cmdline</c> is given: Debian's Linux on Tandem to
/// a busybox shell (<c>vm=linux</c>), on the emulator that can run it (QEMU with KVM where the
/// host offers nested VT-x, else Bochs). On a terminal the shell is yours (<c>poweroff</c> ends
/// the VM, Ctrl-A X quits); without one the shell gets <c>poweroff</c> once it is ready, so the run
/// ends with the VM's own power-off. Without the Linux modules (no network on the first build),
/// the test guest hello32. <c>--cmdline ""</c> boots Tandem with nothing to run.
/// </summary>
internal static class DefaultGuest
{
    public const string LinuxCmdline = "vm=linux";
    public const string FallbackCmdline = "vm=hello32";

    /// <summary>What the Linux guest's /init prints once its shell reads the console (docs/guests.md).</summary>
    public const string ShellReady = "TANDEM-SHELL-READY";

    /// <summary>The command line, the bytes to type (and after what), and the lines that say so.</summary>
    public sealed record Choice(string Cmdline, byte[]? Input, string? InputAfter, IReadOnlyList<string> Lines);

    /// <summary>
    /// The default guest for a run with these options: <paramref name="qemuOnly"/> when the run
    /// can only be QEMU without VT-x (<c>--gdb</c>, <c>--uefi</c>, <c>--emulator qemu</c>,
    /// named in <paramref name="why"/>); <paramref name="linuxUnavailable"/>: why the Linux
    /// modules are missing, or null.
    /// </summary>
    public static Choice Choose(bool qemuOnly, string why, bool interactive, bool inputGiven, string? linuxUnavailable)
    {
        if (qemuOnly)
            return new("", null, null, [$"run: no --cmdline: with {why}, Tandem boots with nothing to run (give --cmdline \"vm=...\" or \"test\")"]);
        if (linuxUnavailable != null)
            return new(FallbackCmdline, null, null,
                [$"run: no --cmdline: Debian's Linux guest is not available ({linuxUnavailable}); booting the test guest hello32 instead ({FallbackCmdline})"]);
        string chosen = $"run: no --cmdline: booting the default guest, Debian's Linux on Tandem to a busybox shell ({LinuxCmdline}; --cmdline \"\" boots Tandem with nothing to run)";
        if (interactive)
            return new(LinuxCmdline, null, null, [chosen, "run: type into the guest's shell once it shows; 'poweroff' ends the VM and the run, Ctrl-A X quits"]);
        if (inputGiven)
            return new(LinuxCmdline, null, null, [chosen]);
        return new(LinuxCmdline, Encoding.ASCII.GetBytes("poweroff\n"), ShellReady,
            [chosen, $"run: not a terminal: the shell gets 'poweroff' once it is ready ({ShellReady})"]);
    }
}
