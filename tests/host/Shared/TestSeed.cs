using System;

namespace Tandem.Testing;

/// <summary>
/// Seeds of the random and torture tests: <c>TANDEM_SEED</c> from the environment replays one;
/// otherwise every run picks a new one. Either way the test prints it with the command that
/// replays it.
/// </summary>
public static class TestSeed
{
    public const string Variable = "TANDEM_SEED";

    /// <summary>The seed from <c>TANDEM_SEED</c> or a fresh one, printed through <paramref name="log"/>.</summary>
    public static int Pick(Action<string> log, string testName)
    {
        string? env = Environment.GetEnvironmentVariable(Variable);
        int seed = env != null ? int.Parse(env) : Random.Shared.Next(1, int.MaxValue);
        log("seed " + seed + (env != null ? " (from " + Variable + ")" : "") + "; replay: " + Variable + "=" + seed + " dotnet test --filter " + testName);
        return seed;
    }

    /// <summary>The raw <c>TANDEM_SEED</c> string, or null (for libraries with their own seed format).</summary>
    public static string? FromEnvironment() => Environment.GetEnvironmentVariable(Variable);
}
