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

    // Spectre's own detection calls a console without a terminal on stdin not interactive, and then
    // prints every update of the status as a line of its own: stdout is what counts here. Without
    // ANSI support (TERM=dumb), no status line at all.
    private static readonly Lazy<IAnsiConsole?> s_console = new(() =>
    {
        if (!s_terminal)
            return null;
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Detect,
            ColorSystem = ColorSystemSupport.Detect,
            Interactive = InteractionSupport.Yes,
            Out = new AnsiConsoleOutput(Console.Out),
        });
        return console.Profile.Capabilities.Ansi ? console : null;
    });

    private static volatile bool s_shared;
    private static int s_active;

    /// <summary>
    /// From now on another thread may write to the console (the test verb's mutation check beside
    /// the emulators): no more status lines, which it would garble.
    /// </summary>
    public static void ConsoleShared() => s_shared = true;

    public static T Step<T>(string what, Func<T> action)
    {
        if (!s_terminal || s_shared || s_console.Value is not IAnsiConsole console || Interlocked.CompareExchange(ref s_active, 1, 0) != 0)
            return action();
        // A Ctrl-C ends the driver at once: put back the cursor the status line hid.
        ConsoleCancelEventHandler showCursor = (_, _) => console.Cursor.Show();
        Console.CancelKeyPress += showCursor;
        try
        {
            var watch = Stopwatch.StartNew();
            return console.Status().Spinner(Spinner.Known.Line).Start(Text(console, what, watch.Elapsed), context =>
            {
                Task<T> task = Task.Run(action);
                while (!((IAsyncResult)task).AsyncWaitHandle.WaitOne(250))
                    context.Status(Text(console, what, watch.Elapsed));
                return task.GetAwaiter().GetResult();
            });
        }
        finally
        {
            Console.CancelKeyPress -= showCursor;
            Volatile.Write(ref s_active, 0);
        }
    }

    /// <summary>"STEP, ELAPSED" on one line: a step too long for the terminal is cut, with "…".</summary>
    private static string Text(IAnsiConsole console, string what, TimeSpan elapsed)
    {
        string time = ", " + Heartbeat.Format(elapsed);
        int room = Math.Max(10, console.Profile.Width - 3 - time.Length);   // the spinner and its space
        return Markup.Escape((what.Length > room ? what[..(room - 1)] + "…" : what) + time);
    }
}
