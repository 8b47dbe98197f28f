using System;
using System.IO;
using System.Text;

namespace Tandem.Mm.Tests.Swap;

/// <summary>The kinds of page contents the swap tests and the benchmark draw from.</summary>
public enum PageKind
{
    Zero,
    Random,
    Text,
    Repetitive,
    Real,
    Sparse,
    HalfRandom,
}

/// <summary>
/// Page contents from a seeded <see cref="Random"/>: the same seed gives the same pages. Linked into
/// tests/bench/Tandem.Bench too (its LZ4 benchmark compresses the same mix).
/// </summary>
public static class PageContents
{
    public const int PageBytes = 4096;
    public static readonly PageKind[] Kinds = (PageKind[])Enum.GetValues(typeof(PageKind));

    private static readonly string[] Words =
    {
        "the", "page", "frame", "swap", "kernel", "memory", "of", "a", "to", "and", "in", "is", "Tandem",
        "hypervisor", "guest", "compressed", "return", "static", "void", "int", "if", "else", "{", "}",
        "0x", "ffff", "error:", "warning", "node", "vm", "lock", "unlock", "//", "=", ";", "\n", "\t",
    };

    private static byte[]? s_real;

    /// <summary>"Real" pages: the bytes of this test assembly and of the mm library, end to end.</summary>
    public static byte[] RealBytes
    {
        get
        {
            if (s_real == null)
            {
                byte[] a = File.ReadAllBytes(typeof(PageContents).Assembly.Location);
                byte[] b = File.ReadAllBytes(typeof(Lz4Block).Assembly.Location);
                byte[] all = new byte[a.Length + b.Length];
                a.CopyTo(all, 0);
                b.CopyTo(all, a.Length);
                s_real = all;
            }
            return s_real;
        }
    }

    public static byte[] Make(PageKind kind, Random r)
    {
        byte[] p = new byte[PageBytes];
        Fill(kind, r, p);
        return p;
    }

    public static void Fill(PageKind kind, Random r, Span<byte> p)
    {
        p.Clear();
        switch (kind)
        {
            case PageKind.Zero:
                break;
            case PageKind.Random:
                r.NextBytes(p);
                break;
            case PageKind.Text:
                {
                    // Log-like text: rising timestamps; two lines in three repeat an earlier one, the
                    // rest are words from a small vocabulary (compresses about 2-3:1, as logs and prose do).
                    StringBuilder sb = new StringBuilder();
                    int time = r.Next(1_000_000);
                    System.Collections.Generic.List<string> lines = new System.Collections.Generic.List<string>();
                    while (sb.Length < p.Length)
                    {
                        string line;
                        if (lines.Count > 0 && r.Next(3) != 0)
                        {
                            line = lines[r.Next(lines.Count)];
                        }
                        else
                        {
                            StringBuilder l = new StringBuilder();
                            for (int w = r.Next(3, 12); w > 0; w--)
                                l.Append(Words[r.Next(Words.Length)]).Append(' ');
                            line = l.ToString();
                            lines.Add(line);
                        }
                        sb.Append('[').Append(time += r.Next(1, 50)).Append("] ").Append(line).Append('\n');
                    }
                    Encoding.ASCII.GetBytes(sb.ToString(0, p.Length), p);
                    break;
                }
            case PageKind.Repetitive:
                {
                    int period = r.Next(1, 300);
                    Span<byte> pattern = stackalloc byte[period];
                    r.NextBytes(pattern);
                    for (int i = 0; i < p.Length; i++)
                        p[i] = pattern[i % period];
                    int noise = r.Next(0, 40);
                    for (int i = 0; i < noise; i++)
                        p[r.Next(p.Length)] = (byte)r.Next(256);
                    break;
                }
            case PageKind.Real:
                {
                    byte[] real = RealBytes;
                    int at = r.Next(0, real.Length - p.Length);
                    real.AsSpan(at, p.Length).CopyTo(p);
                    break;
                }
            case PageKind.Sparse:
                {
                    // A page of structures: mostly zero, a few pointers and counters.
                    int n = r.Next(1, 64);
                    for (int i = 0; i < n; i++)
                    {
                        int slot = r.Next(p.Length / 8) * 8;
                        ulong v = r.Next(3) == 0 ? 0xFFFF_8000_0000_0000UL | (ulong)r.NextInt64(1L << 40) << 3 : (ulong)r.Next(1000);
                        BitConverter.TryWriteBytes(p.Slice(slot), v);
                    }
                    break;
                }
            case PageKind.HalfRandom:
                r.NextBytes(p.Slice(0, r.Next(p.Length)));
                break;
        }
    }
}
