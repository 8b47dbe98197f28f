namespace Tandem.Build;

/// <summary>
/// Touches up System.CommandLine's help text. An option with an optional value (arity zero or
/// one, as --gdb's port) is labelled <c>--gdb &lt;PORT&gt;</c> there, which reads as if the value
/// were required; it becomes <c>--gdb[=PORT]</c>, the form the issue and QEMU users expect. The
/// label keeps its width, so the description column stays aligned.
/// </summary>
internal static class HelpText
{
    /// <summary>
    /// <paramref name="help"/> with each <c>OPTION &lt;VALUE&gt;</c> label of <paramref name="optional"/>
    /// (at the start of an option row) written <c>OPTION[=VALUE]</c>; every other line unchanged.
    /// </summary>
    public static string ShowOptionalValues(string help, IReadOnlyList<(string Option, string Value)> optional)
    {
        string[] lines = help.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            foreach ((string option, string value) in optional)
            {
                string label = $"  {option} <{value}>";
                if (lines[i].StartsWith(label, StringComparison.Ordinal) &&
                    (lines[i].Length == label.Length || lines[i][label.Length] == ' ' || lines[i][label.Length] == '\r'))
                    lines[i] = $"  {option}[={value}]" + lines[i][label.Length..];
            }
        }
        return string.Join('\n', lines);
    }
}
