using System.Text.RegularExpressions;

namespace Tandem.Build;

/// <summary>
/// The kernel's verdict in a serial log: its own line "tandem: exit status N", at the start of a
/// line, the last one. A guest's console lines reach the log prefixed "[vm N] " (kvm/Vmx/Vm.cs), so
/// a guest that prints the same words cannot forge the verdict.
/// </summary>
internal static partial class SerialStatus
{
    [GeneratedRegex(@"^tandem: exit status (\d+)\r?$", RegexOptions.Multiline)]
    private static partial Regex StatusLine();

    /// <summary>The status, or null when the kernel printed none.</summary>
    public static int? Parse(string serial)
    {
        MatchCollection all = StatusLine().Matches(serial);
        return all.Count == 0 ? null : int.Parse(all[^1].Groups[1].Value);
    }

    /// <summary>True when <paramref name="line"/> (one line of the log) is the kernel's verdict.</summary>
    public static bool IsStatusLine(string line) => StatusLine().IsMatch(line);
}
