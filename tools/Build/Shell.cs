using System.Diagnostics;

namespace Tandem.Build;

/// <summary>Runs external programs, echoing what it runs.</summary>
internal static class Shell
{
    public static bool Verbose;

    public static int Run(string file, IEnumerable<string> args, string? workDir = null, bool quiet = false,
        Dictionary<string, string>? env = null, Action<string>? onLine = null)
    {
        ProcessStartInfo psi = Info(file, args, workDir, env);
        var (code, output) = Exec(psi, onLine);
        if (code != 0 && !quiet && onLine == null)
            ShowTail(output);
        return code;
    }

    /// <summary>
    /// Runs a build step: its output is kept and shown only if it fails. On a terminal a status line
    /// shows the step and its elapsed time while it runs (<see cref="Progress"/>).
    /// </summary>
    public static void Check(string file, IEnumerable<string> args, string what, string? workDir = null, Dictionary<string, string>? env = null,
        int exitCode = ExitCodes.StepFailed)
    {
        ProcessStartInfo psi = Info(file, args, workDir, env);
        var (code, output) = Progress.Step(what, () => Exec(psi, onLine: null));
        if (code != 0)
        {
            ShowTail(output);
            throw new BuildException($"{what} failed (exit code {code})", exitCode);
        }
    }

    private static ProcessStartInfo Info(string file, IEnumerable<string> args, string? workDir, Dictionary<string, string>? env)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        if (workDir != null)
            psi.WorkingDirectory = workDir;
        if (env != null)
            foreach (var (k, v) in env)
                psi.Environment[k] = v;
        if (Verbose)
            Console.Error.WriteLine($"+ {file} {string.Join(' ', psi.ArgumentList)}");
        return psi;
    }

    /// <summary>Runs the program to its end; prints nothing itself (<paramref name="onLine"/> may).</summary>
    private static (int Code, List<string> Output) Exec(ProcessStartInfo psi, Action<string>? onLine)
    {
        using var p = Start(psi);
        var output = new List<string>();
        void Handle(string? line)
        {
            if (line == null)
                return;
            lock (output)
                output.Add(line);
            onLine?.Invoke(line);
        }
        p.OutputDataReceived += (_, e) => Handle(e.Data);
        p.ErrorDataReceived += (_, e) => Handle(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        p.WaitForExit();
        lock (output)
            return (p.ExitCode, [.. output]);
    }

    private static void ShowTail(List<string> output)
    {
        foreach (string l in output.TakeLast(60))
            Console.Error.WriteLine(l);
    }

    /// <summary>Process.Start, with a missing program reported as a missing tool (exit code 69).</summary>
    public static Process Start(ProcessStartInfo psi)
    {
        try
        {
            return Process.Start(psi) ?? throw new BuildException($"could not start {psi.FileName}", ExitCodes.MissingTool);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new BuildException($"could not start {psi.FileName}: {e.Message}", ExitCodes.MissingTool);
        }
    }

    public static string? Which(string name)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
        {
            string candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
                return candidate;
        }
        return null;
    }
}
