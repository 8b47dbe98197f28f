using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;

namespace Tandem.Kernel.Tests
{
    /// <summary>The log's interpolated-string handler (<see cref="LogLine{TLevel}"/>) and its levels.</summary>
    internal static unsafe class LogTests
    {
        private static int s_evaluated;

        /// <summary>A hole's value that counts how often it was evaluated.</summary>
        private static ulong Counted(ulong value)
        {
            s_evaluated++;
            return value;
        }

        /// <summary>
        /// An interpolated line comes out exactly (decimal, negative, hex with 0x and padding,
        /// strings, bytes, chars, bools) in one line with no heap allocation; a debug line is
        /// dropped at the default level without its holes even evaluated, and gets through once
        /// the level is debug; at loglevel=error an info line is dropped and an error line has
        /// its prefix.
        /// </summary>
        public static void InterpolatedLinesAndLevels(TestContext t)
        {
            LogLevel saved = Log.Level;
            Log.Level = LogLevel.Info;
            ulong id = 3, exits = 12345, rip = 0xfff0;
            long status = -7;
            int small = 5;
            uint flags = 0x202;
            System.ReadOnlySpan<byte> name = "linux"u8;
            s_evaluated = 0;

            LogCapture.Begin();
            ulong allocationsBefore = KernelHeap.Allocations;
            Log.Info($"vm {id}: exit status {status}, {exits} exits, rip {rip:x} flags {flags:x8} small {small:d3} {name} {'!'} {true} {Counted(9)}");
            ulong allocationsAfter = KernelHeap.Allocations;
            Log.Debug($"dropped at info {Counted(1)} {exits:x}");
            Log.Level = LogLevel.Debug;
            Log.Debug($"now a debug line {Counted(2)}");
            Log.Level = LogLevel.Error;
            Log.Info($"an info line at loglevel=error {Counted(4)}");
            Log.Warn($"a warning at loglevel=error {Counted(8)}");
            Log.Error($"an error {id}");
            Log.Level = LogLevel.Warn;
            Log.Warn($"a warning {-1:x}");
            LogCapture.End();
            Log.Level = saved;

            t.Check(LogCapture.Saw("vm 3: exit status -7, 12345 exits, rip 0xfff0 flags 0x00000202 small 005 linux ! True 9\n"),
                "the interpolated line is not exactly as written");
            t.Check(allocationsAfter == allocationsBefore, "an interpolated line allocated on the kernel heap", allocationsAfter - allocationsBefore);
            t.Check(!LogCapture.Saw("dropped at info"), "a debug line was written at the default level (info)");
            t.Check(LogCapture.Saw("now a debug line 2\n"), "a debug line was dropped at loglevel=debug");
            t.Check(!LogCapture.Saw("an info line at loglevel=error"), "an info line was written at loglevel=error");
            t.Check(!LogCapture.Saw("a warning at loglevel=error"), "a warning was written at loglevel=error");
            t.Check(LogCapture.Saw("\nerror: an error 3\n"), "an error line is not 'error: ' and its text");
            t.Check(LogCapture.Saw("\nwarn: a warning 0xffffffff\n"), "a warning is not 'warn: ' and its text");
            // 9 and 2 were written; 1, 4 and 8 belong to dropped lines, whose holes are not evaluated.
            t.Check(s_evaluated == 2, "a dropped line's holes were evaluated (or a written one's were not)", (ulong)s_evaluated);
        }
    }
}
