namespace Tandem.Kernel.Tests
{
    /// <summary>The corelib's own machinery: interface dispatch, virtual calls, casts, static constructors.</summary>
    internal static class RuntimeTests
    {
        private interface IShape
        {
            int Sides { get; }
            int Scale(int factor);
        }

        private sealed class Triangle : IShape
        {
            public int Sides => 3;
            public int Scale(int factor) => 3 * factor;
        }

        private class Square : IShape
        {
            public virtual int Sides => 4;
            public int Scale(int factor) => 4 * factor + Sides - 4;
        }

        private sealed class Hexagon : Square
        {
            public override int Sides => 6;
        }

        // More implementations than the compiler's guarded devirtualization handles, so the call
        // sites in Total stay real interface dispatch through the runtime's resolver.
        private sealed class Pentagon : IShape
        {
            public int Sides => 5;
            public int Scale(int factor) => 5 * factor;
        }

        private sealed class Heptagon : IShape
        {
            public int Sides => 7;
            public int Scale(int factor) => 7 * factor;
        }

        private sealed class Octagon : IShape
        {
            public int Sides => 8;
            public int Scale(int factor) => 8 * factor;
        }

        private sealed class Line : IShape
        {
            public int Sides => 1;
            public int Scale(int factor) => factor;
        }

        private static readonly IShape[] s_shapes =
            [new Triangle(), new Square(), new Hexagon(), new Pentagon(), new Heptagon(), new Octagon(), new Line()];

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        private static int Total(IShape[] shapes, int factor)
        {
            int sum = 0;
            for (int round = 0; round < 3; round++)          // repeated: the second call goes through the cached cell
            {
                for (int i = 0; i < shapes.Length; i++)
                    sum += shapes[i].Sides * 100 + shapes[i].Scale(factor);
            }
            return sum;
        }

        private static bool Same(bool ok, System.Span<char> buffer, int n, string expected)
        {
            if (!ok || n != expected.Length)
                return false;
            for (int i = 0; i < n; i++)
            {
                if (buffer[i] != expected[i])
                    return false;
            }
            return true;
        }

        public static void IntegerFormatting(TestContext t)
        {
            System.Span<char> b = stackalloc char[32];
            int n;
            t.Check(Same(0.TryFormat(b, out n), b, n, "0"), "0");
            t.Check(Same(int.MinValue.TryFormat(b, out n), b, n, "-2147483648"), "int.MinValue");
            t.Check(Same((-5L).TryFormat(b, out n, "D3"), b, n, "-005"), "-5 as D3");
            t.Check(Same(uint.MaxValue.TryFormat(b, out n), b, n, "4294967295"), "uint.MaxValue");
            t.Check(Same(ulong.MaxValue.TryFormat(b, out n), b, n, "18446744073709551615"), "ulong.MaxValue");
            t.Check(Same(255UL.TryFormat(b, out n, "X"), b, n, "FF"), "255 as X");
            t.Check(Same(255UL.TryFormat(b, out n, "x8"), b, n, "000000ff"), "255 as x8");
            t.Check(Same((-1).TryFormat(b, out n, "X"), b, n, "FFFFFFFF"), "-1 as X");
            t.Check(!12345UL.TryFormat(b.Slice(0, 3), out n), "a too-short span must fail");
        }

        public static void InterfaceDispatch(TestContext t)
        {
            // Triangle 300+6, Square 400+8, Hexagon 600+10 (4*2 + 6 - 4), Pentagon 500+10,
            // Heptagon 700+14, Octagon 800+16, Line 100+2 => 3466 per round.
            int total = Total(s_shapes, 2);
            if (total != 3 * 3466)
                t.Fail("interface calls reached the wrong implementations", (ulong)total);
            object o = s_shapes[2];
            t.Check(o is Square && o is IShape && o is not Triangle, "casts gave wrong answers");
        }
    }
}
