using System.Runtime.InteropServices;
using System.Threading;

namespace System.Runtime.CompilerServices
{
    /// <summary>
    /// Runs static constructors on first use. The context word holds the cctor's address until it
    /// has run. Any CPU may get here first: the winner of a compare-exchange replaces the address
    /// with its owner token and runs the cctor; other CPUs spin until the word becomes 0 (written
    /// last, with release semantics). A cctor that touches its own class again (recursion on the
    /// same CPU) sees its own token and proceeds, as .NET does on one thread.
    /// </summary>
    internal static unsafe class ClassConstructorRunner
    {
        /// <summary>An odd value (code addresses are even) naming the current stack, hence CPU.</summary>
        private static nint OwnerToken()
        {
            nint local = 0;
            return (((nint)(&local)) & ~(nint)0xFFFF) | 1;
        }

        private static nint CheckStaticClassConstructionReturnNonGCStaticBase(ref StaticClassConstructionContext context, nint nonGcStaticBase)
        {
            CheckStaticClassConstruction(ref context);
            return nonGcStaticBase;
        }

        private static object CheckStaticClassConstructionReturnGCStaticBase(ref StaticClassConstructionContext context, object gcStaticBase)
        {
            CheckStaticClassConstruction(ref context);
            return gcStaticBase;
        }

        private static void CheckStaticClassConstruction(ref StaticClassConstructionContext context)
        {
            while (true)
            {
                // Pairs with the release write of 0 below.
                nint cctor = Volatile.Read(ref context.cctorMethodAddress);
                if (cctor == 0)
                    return;
                if ((cctor & 1) != 0)
                {
                    if (cctor == OwnerToken())
                        return;
                    continue;
                }
                if (Interlocked.CompareExchange(ref context.cctorMethodAddress, OwnerToken(), cctor) == cctor)
                {
                    ((delegate*<void>)cctor)();
                    Volatile.Write(ref context.cctorMethodAddress, 0);
                    return;
                }
            }
        }
    }

    /// <summary>Contract with ILC: one word, the cctor address, zero once it has run.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct StaticClassConstructionContext
    {
        public nint cctorMethodAddress;
    }
}
