using Tandem.Arch.X86;
using Tandem.Kernel.Console;

namespace Tandem.Kernel
{
    /// <summary>
    /// Prints a symbolised backtrace by following the saved-rbp chain. Each frame pointer is checked
    /// (aligned, inside the current stack, growing) before it is followed, so a corrupt chain ends
    /// the walk instead of faulting. Code that omits frame pointers shows up as missing frames.
    /// </summary>
    public static unsafe class Backtrace
    {
        public static void Print(ulong rip, ulong rbp)
        {
            Log.Write("backtrace:\n");
            if (rip != 0)
                PrintFrame(rip);
            ulong stackLow = rbp & ~0xFFFFUL;            // stacks are 64 KiB, aligned
            for (int depth = 0; depth < 32; depth++)
            {
                if (rbp == 0 || (rbp & 7) != 0 || rbp < stackLow || rbp > stackLow + 0x20000)
                    break;
                ulong returnAddress = ((ulong*)rbp)[1];
                ulong next = ((ulong*)rbp)[0];
                if (returnAddress == 0)
                    break;
                PrintFrame(returnAddress - 1);
                if (next <= rbp)
                    break;
                rbp = next;
            }
        }

        public static void PrintHere() => Print(0, Native.ReadRbp());

        public static void PrintFrame(ulong address)
        {
            Log.Write("  ");
            Log.Hex(address, 16);
            byte* name = Symbols.Lookup(address, out ulong offset);
            if (name != null)
            {
                Log.Write("  ");
                Log.WriteAscii(name, 200);
                Log.Write("+");
                Log.Hex(offset);
            }
            Log.WriteChar('\n');
        }
    }
}
