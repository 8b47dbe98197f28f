using System;
using System.Runtime.CompilerServices;

namespace Tandem.Kernel.Console
{
    public static partial class Log
    {
        /// <summary>
        /// The most detailed level written (<c>loglevel=</c>, default <see cref="LogLevel.Info"/>):
        /// <see cref="Error"/>, <see cref="Warn"/>, <see cref="Info"/> and <see cref="Debug"/> lines
        /// above it are dropped before anything in them is formatted. Lines written through
        /// <see cref="Begin"/>/<see cref="Line(string)"/> have no level and are always written.
        /// </summary>
        public static LogLevel Level = LogLevel.Info;

        /// <summary>True when a line at <paramref name="level"/> is written.</summary>
        public static bool IsEnabled(LogLevel level) => level <= Level;

        /// <summary>An error line, <c>"error: "</c> and the text: <c>Log.Error($"vm {id}: no memory")</c>.</summary>
        public static void Error(ref LogLine<LogLevels.Error> line) => line.End();

        /// <summary>A warning line, <c>"warn: "</c> and the text.</summary>
        public static void Warn(ref LogLine<LogLevels.Warn> line) => line.End();

        /// <summary>A line as written, no prefix: <c>Log.Info($"vm {id}: exit status {status}, {exits} exits")</c>.</summary>
        public static void Info(ref LogLine<LogLevels.Info> line) => line.End();

        /// <summary>A line as written, no prefix, dropped unless <c>loglevel=debug</c>.</summary>
        public static void Debug(ref LogLine<LogLevels.Debug> line) => line.End();

        /// <summary>
        /// A line as written at every <c>loglevel=</c>, no prefix: for what a program reads whatever
        /// the level (the test runner's PASS/FAIL/SKIP lines and counts, the exit status).
        /// </summary>
        public static void Always(ref LogLine<LogLevels.Always> line) => line.End();
    }

    /// <summary>A log level as a type, for <see cref="LogLine{TLevel}"/> (one instantiation each, no dispatch).</summary>
    public interface ILogLevel
    {
        LogLevel Level { get; }
    }

    /// <summary>The levels as types: <see cref="Log.Info"/> takes a <c>LogLine&lt;LogLevels.Info&gt;</c>.</summary>
    public static class LogLevels
    {
        public struct Error : ILogLevel { public LogLevel Level => LogLevel.Error; }
        public struct Warn : ILogLevel { public LogLevel Level => LogLevel.Warn; }
        public struct Info : ILogLevel { public LogLevel Level => LogLevel.Info; }
        public struct Debug : ILogLevel { public LogLevel Level => LogLevel.Debug; }
        /// <summary>Above every level: <see cref="Log.IsEnabled"/> is true for it at any <c>loglevel=</c>.</summary>
        public struct Always : ILogLevel { public LogLevel Level => (LogLevel)(-1); }
    }

    /// <summary>
    /// .NET's interpolated-string handler pattern for the kernel log: Roslyn turns
    /// <c>Log.Info($"vm {id}: {n} exits, rip {rip:x}")</c> into this constructor, then
    /// <see cref="AppendLiteral"/>/<c>AppendFormatted</c> calls, then <see cref="Log.Info"/>. The
    /// constructor decides (<c>shouldAppend</c>) whether the line's level is written; when it is not,
    /// no hole's expression is even evaluated. When it is, the constructor takes the log lock
    /// (<see cref="Log.Begin"/>) and every part goes straight to the console: no buffer, no heap, no
    /// strings built, and the whole line is one <see cref="Log.Begin"/>/<see cref="Log.End"/>.
    /// Holes are evaluated with the lock held and interrupts off, so they must be plain values: an
    /// expression in a hole must not log or take a lock.
    /// Formats: integers as decimal, <c>{v:x}</c>/<c>{v:x8}</c> (and <c>X</c>) as <c>0x</c> and hex
    /// digits, <c>{v:d4}</c> zero-padded decimal; strings, chars, bools (<c>True</c>/<c>False</c>),
    /// and byte spans as ASCII text.
    /// </summary>
    [InterpolatedStringHandler]
    public ref struct LogLine<TLevel> where TLevel : struct, ILogLevel
    {
        private readonly ulong _flags;
        private bool _open;

        public LogLine(int literalLength, int formattedCount, out bool shouldAppend)
        {
            LogLevel level = default(TLevel).Level;
            _open = shouldAppend = Log.IsEnabled(level);
            _flags = 0;
            if (!_open)
                return;
            _flags = Log.Begin();
            if (level == LogLevel.Error)
                Log.Write("error: ");
            else if (level == LogLevel.Warn)
                Log.Write("warn: ");
        }

        public void AppendLiteral(string text) => Log.Write(text);

        public void AppendFormatted(string? text)
        {
            if (text != null)
                Log.Write(text);
        }

        public void AppendFormatted(ReadOnlySpan<char> text) => Log.WriteChars(text);

        /// <summary>Bytes as ASCII text (a name from the command line, a guest's string).</summary>
        public void AppendFormatted(ReadOnlySpan<byte> text)
        {
            for (int i = 0; i < text.Length; i++)
                Log.WriteChar((char)text[i]);
        }

        public void AppendFormatted(char c) => Log.WriteChar(c);

        public void AppendFormatted(bool value) => Log.Write(value ? "True" : "False");

        public void AppendFormatted(ulong value, string? format = null)
        {
            Span<char> text = stackalloc char[24];
            Finish(value.TryFormat(text, out int n, format), text, n, format);
        }

        public void AppendFormatted(long value, string? format = null)
        {
            Span<char> text = stackalloc char[24];
            Finish(value.TryFormat(text, out int n, format), text, n, format);
        }

        public void AppendFormatted(uint value, string? format = null)
        {
            Span<char> text = stackalloc char[24];
            Finish(value.TryFormat(text, out int n, format), text, n, format);
        }

        public void AppendFormatted(int value, string? format = null)
        {
            Span<char> text = stackalloc char[24];
            Finish(value.TryFormat(text, out int n, format), text, n, format);
        }

        /// <summary>A formatted number out: hex gets its 0x; a format the corelib does not know shows as itself.</summary>
        private static void Finish(bool formatted, ReadOnlySpan<char> text, int length, string? format)
        {
            if (!formatted)
            {
                Log.Write("{bad format ");
                Log.Write(format!);
                Log.WriteChar('}');
                return;
            }
            if (format != null && format.Length > 0 && (format[0] == 'x' || format[0] == 'X'))
                Log.Write("0x");
            Log.WriteChars(text.Slice(0, length));
        }

        /// <summary>Ends the line and lets go of the log (the <c>Log.Error</c>/<c>Warn</c>/<c>Info</c>/<c>Debug</c> call).</summary>
        internal void End()
        {
            if (!_open)
                return;
            _open = false;
            Log.WriteChar('\n');
            Log.End(_flags);
        }
    }
}
