using System.Diagnostics;
using Spectre.Console;

namespace Tandem.Build;

/// <summary>
/// The status line of a build step (Spectre.Console): the step and its elapsed time, redrawn while
/// the step runs and removed when it ends. Only when stdout is a terminal, CI is not "true", and
/// nothing else writes to the console meanwhile: a build step run by <see cref="Shell.Check"/>
/// prints nothing while it runs (its output is kept and shown after, if it fails). Otherwise, and
/// for a step that starts while another status is up, the step runs as before, with no line.
/// Emulator runs get no status line (their serial console is echoed as it comes): they have the
/// <see cref="Heartbeat"/> instead, on a terminal or not.
/// </summary>
internal static class Progress
{
    private static readonly bool s_terminal = !Console.IsOutputRedirected &&
        !string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    private static volatile bool s_shared;
    private static int s_active;

    /// <summary>
    /// From now on another thread may write to the console (the test verb's mutation check beside
    /// the emulators): no more status lines, which it would garble.
    /// </summary>
    public static void ConsoleShared() => s_shared = true;

    public static T Step<T>(string what, Func<T> action)
    {
        if (!s_terminal || s_shared || Interlocked.CompareExchange(ref s_active, 1, 0) != 0)
            return action();
        // A Ctrl-C ends the driver at once: put back the cursor the status line hid.
        ConsoleCancelEventHandler showCursor = (_, _) => AnsiConsole.Cursor.Show();
        Console.CancelKeyPress += showCursor;
        try
        {
            var watch = Stopwatch.StartNew();
            return AnsiConsole.Status().Spinner(Spinner.Known.Line).Start(Text(what, watch.Elapsed), context =>
            {
                Task<T> task = Task.Run(action);
                while (!((IAsyncResult)task).AsyncWaitHandle.WaitOne(250))
                    context.Status(Text(what, watch.Elapsed));
                return task.GetAwaiter().GetResult();
            });
        }
        finally
        {
            Console.CancelKeyPress -= showCursor;
            Volatile.Write(ref s_active, 0);
        }
    }

    private static string Text(string what, TimeSpan elapsed) => Markup.Escape($"{what}, {Heartbeat.Format(elapsed)}");
}
