using System.CommandLine.Parsing;
using System.Globalization;

namespace Tandem.Build;

/// <summary>Memory sizes on the command line: a plain number is MiB; K, M, G (or KiB, MiB, GiB) are binary units.</summary>
internal static class Sizes
{
    /// <summary>The System.CommandLine parser of --memory: the size in MiB, or an error on the result.</summary>
    public static int ParseMiB(ArgumentResult result)
    {
        string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (TryParseMiB(text, out int mib, out string? error))
            return mib;
        result.AddError(error!);
        return 0;
    }

    public static bool TryParseMiB(string text, out int mib, out string? error)
    {
        mib = 0;
        error = null;
        string t = text.Trim();
        int digits = 0;
        while (digits < t.Length && char.IsAsciiDigit(t[digits]))
            digits++;
        string unit = t[digits..].ToUpperInvariant();
        if (unit.EndsWith("IB", StringComparison.Ordinal))
            unit = unit[..^2];
        else if (unit.EndsWith('B'))
            unit = unit[..^1];
        long kib = unit switch { "" or "M" => 1024, "K" => 1, "G" => 1024 * 1024, _ => -1 };
        if (digits == 0 || kib < 0 || !long.TryParse(t[..digits], NumberStyles.None, CultureInfo.InvariantCulture, out long n) || n > (1L << 40))
        {
            error = $"--memory needs a size such as 512, 512M or 1G (plain numbers are MiB; got '{text}')";
            return false;
        }
        long total = n * kib;
        if (total % 1024 != 0 || total / 1024 > int.MaxValue)
        {
            error = $"--memory {text} is not a whole number of MiB";
            return false;
        }
        mib = (int)(total / 1024);
        if (mib < 32)
        {
            error = $"--memory {text}: Tandem needs at least 32 MiB";
            return false;
        }
        return true;
    }
}
