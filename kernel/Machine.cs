using Tandem.Arch.X86;
using Tandem.Kernel.Console;

namespace Tandem.Kernel
{
    /// <summary>Ending a run: the closing status line, then whatever ends the emulator we run under.</summary>
    public static class Machine
    {
        public const int StatusSuccess = 0;
        public const int StatusTestsFailed = 1;
        public const int StatusBadBoot = 2;
        public const int StatusPanic = 3;

        /// <summary>
        /// Prints "tandem: exit status N" (the harness reads it), then: QEMU's isa-debug-exit port
        /// (QEMU exits with (N &lt;&lt; 1) | 1), Bochs' magic breakpoint (its debugger then quits),
        /// and on real hardware, which has neither, halts.
        /// </summary>
        public static void Exit(int status)
        {
            // The harness needs this line at any loglevel=.
            Log.Always($"tandem: exit status {status}");
            Native.OutB(0xF4, (byte)status);
            Native.MagicBreak();
            Native.HaltForever();
        }
    }
}
