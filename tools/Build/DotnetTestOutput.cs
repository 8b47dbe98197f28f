using System.Text.RegularExpressions;

namespace Tandem.Build;

/// <summary>
/// What the mutation check reads from the console output of one <c>dotnet test</c> run: the
/// failing tests (theory cases with their arguments), the total, a build error, and the blame
/// collector's report of a hang or a crashed test host with the test that was running.
/// </summary>
internal static partial class DotnetTestOutput
{
    public sealed record Reading(List<string> Failed, int Total, bool Hung, string? HungTest, bool BuildFailed);

    // "  Failed Tandem.X.Tests.C.M [12 ms]", or a theory case "  Failed Tandem.X.Tests.C.M(kind: Flat) [1 s]".
    [GeneratedRegex(@"^\s*Failed\s+(\S+?(?:\(.*\))?)\s+\[[^\]]*\]\s*$")]
    private static partial Regex FailedLine();

    [GeneratedRegex(@"(Passed|Failed)!\s+-\s+Failed:\s+(\d+),\s+Passed:\s+(\d+),\s+Skipped:\s+(\d+),\s+Total:\s+(\d+)")]
    private static partial Regex SummaryLine();

    [GeneratedRegex(@"error (CS|MSB|NU)\d+")]
    private static partial Regex BuildError();

    [GeneratedRegex(@"inactivity time of \d+ \w+ has elapsed", RegexOptions.IgnoreCase)]
    private static partial Regex HangLine();

    [GeneratedRegex(@"Tandem\.\w+\.Tests\.[\w.]+")]
    private static partial Regex TestName();

    public static Reading Read(IReadOnlyList<string> output)
    {
        var failed = new List<string>();
        int total = 0;
        bool hung = false, crashed = false, nameFollows = false;
        string? hungTest = null;
        foreach (string l in output)
        {
            Match f = FailedLine().Match(l);
            if (f.Success && !failed.Contains(f.Groups[1].Value))
                failed.Add(f.Groups[1].Value);
            Match s = SummaryLine().Match(l);
            if (s.Success)
                total += int.Parse(s.Groups[5].Value);
            // vstest's blame collector: "The specified inactivity time of 60 seconds has elapsed",
            // then "The test running when the crash occurred:" and the test's name on the next line.
            if (HangLine().IsMatch(l))
                hung = true;
            if (l.Contains("Test host process crashed", StringComparison.Ordinal))
                crashed = true;
            if (nameFollows && TestName().Match(l) is { Success: true } t)
                hungTest ??= t.Value;
            nameFollows = l.Contains("test running when the crash occurred", StringComparison.OrdinalIgnoreCase)
                || (nameFollows && l.Trim().Length == 0);
        }
        if (crashed && !hung)
            hungTest = "a crash of the test host" + (hungTest != null ? " in " + hungTest : "");
        hung |= crashed;
        bool buildFailed = output.Any(l => BuildError().IsMatch(l));
        return new Reading(failed, total, hung, hungTest, buildFailed);
    }
}
