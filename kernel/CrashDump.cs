using Tandem.Arch.X86;
using Tandem.Kernel.Console;

namespace Tandem.Kernel
{
    /// <summary>
    /// The parts of a host crash report that need care to print: the instruction bytes around RIP
    /// (read through the fault-probing accessor, so a wild RIP cannot fault the dump itself) and a
    /// page fault's error code, bit by bit (SDM Vol. 3A, 4.7). docs/debugging.md shows a report.
    /// </summary>
    public static unsafe class CrashDump
    {
        /// <summary>
        /// Writes the "code:" line for host address <paramref name="rip"/> (<see cref="CodeLine"/>):
        /// the bytes from RIP up to the first unreadable one, and before it back to the first
        /// unreadable one; "code: unreadable at rip ..." when RIP itself cannot be read.
        /// </summary>
        public static void WriteHostCode(ulong rip)
        {
            byte* bytes = stackalloc byte[CodeLine.Before + CodeLine.After];
            int first = CodeLine.Before, end = CodeLine.Before;
            Interrupts.QuietProbes++;
            for (int i = 0; i < CodeLine.After && ReadByte(rip + (ulong)i, bytes + CodeLine.Before + i); i++)
                end++;
            for (int i = 1; end > CodeLine.Before && i <= CodeLine.Before && ReadByte(rip - (ulong)i, bytes + CodeLine.Before - i); i++)
                first--;
            Interrupts.QuietProbes--;
            if (end == CodeLine.Before)
            {
                Log.Write("code: unreadable at rip ");
                Log.Hex(rip, 16);
                Log.WriteChar('\n');
                return;
            }
            System.Span<char> text = stackalloc char[CodeLine.MaxChars];
            int n = CodeLine.Format(new System.ReadOnlySpan<byte>(bytes + first, end - first), CodeLine.Before - first, text);
            Log.WriteChars(text.Slice(0, n));
            Log.WriteChar('\n');
        }

        /// <summary>One byte of host memory through the probe (an aligned 8-byte read); false if it faulted.</summary>
        private static bool ReadByte(ulong address, byte* value)
        {
            ulong word;
            if (Native.ProbeRead64(address & ~7UL, &word) != 0)
                return false;
            *value = (byte)(word >> (int)((address & 7) * 8));
            return true;
        }

        /// <summary>
        /// A page fault's error code in words, then every architectural bit by its SDM name, e.g.
        /// "#PF: error code 0x2: not-present page, write, supervisor (P=0 W/R=1 U/S=0 RSVD=0 I/D=0 PK=0 SS=0)  cr2 0x...".
        /// </summary>
        public static void WritePageFaultError(ulong error, ulong cr2)
        {
            Log.Write("#PF: error code ");
            Log.Hex(error);
            Log.Write((error & 1) != 0 ? ": protection violation" : ": not-present page");
            Log.Write((error & 2) != 0 ? ", write" : ", read");
            Log.Write((error & 4) != 0 ? ", user" : ", supervisor");
            if ((error & 8) != 0)
                Log.Write(", reserved bit set");
            if ((error & 16) != 0)
                Log.Write(", instruction fetch");
            if ((error & 32) != 0)
                Log.Write(", protection key");
            if ((error & 64) != 0)
                Log.Write(", shadow stack");
            Log.Write(" (");
            Bit("P", error, 0);
            Bit(" W/R", error, 1);
            Bit(" U/S", error, 2);
            Bit(" RSVD", error, 3);
            Bit(" I/D", error, 4);
            Bit(" PK", error, 5);
            Bit(" SS", error, 6);
            Log.Write(")  cr2 ");
            Log.Hex(cr2, 16);
            Log.WriteChar('\n');
        }

        private static void Bit(string name, ulong error, int bit)
        {
            Log.Write(name);
            Log.Write((error >> bit & 1) != 0 ? "=1" : "=0");
        }
    }
}
