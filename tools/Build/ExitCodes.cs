namespace Tandem.Build;

/// <summary>
/// The driver's exit codes. 0-3 are the kernel's own status ("tandem: exit status N": 0 success,
/// 1 test failures, 2 bad boot information, 3 panic); the rest are the driver's, in the BSD
/// sysexits ranges so that they never collide with the kernel's. Listed in run --help and README.md.
/// </summary>
internal static class ExitCodes
{
    /// <summary>Everything asked for succeeded (for run: the kernel reported status 0).</summary>
    public const int Success = 0;

    /// <summary>test, bench, mutate: some test failed, a goal was missed, a mutation survived.</summary>
    public const int Failed = 1;

    /// <summary>The emulator ran past --timeout and was killed.</summary>
    public const int Timeout = 124;

    /// <summary>The emulator ended without the kernel printing "tandem: exit status N".</summary>
    public const int NoStatus = 125;

    /// <summary>run: the user stopped an interactive run with Ctrl-C or Ctrl-A X (128 + SIGINT, as a shell reports it).</summary>
    public const int Interrupted = 130;

    /// <summary>A bad command line: unknown verb or option, a bad value, a value out of range (EX_USAGE).</summary>
    public const int Usage = 64;

    /// <summary>A tool the driver needs is missing and could not be installed (EX_UNAVAILABLE).</summary>
    public const int MissingTool = 69;

    /// <summary>A build step (Roslyn, ILC, ld.lld, grub-mkrescue, ...) or another step the driver runs failed (EX_SOFTWARE).</summary>
    public const int StepFailed = 70;
}
