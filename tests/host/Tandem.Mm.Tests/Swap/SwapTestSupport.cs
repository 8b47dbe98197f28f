using System;
using System.IO;
using System.Runtime.InteropServices;
using Tandem.Testing;

namespace Tandem.Mm.Tests.Swap;

/// <summary>
/// Native memory with inaccessible pages around a window (Linux mmap/mprotect): a read or write
/// just past either end of the window faults, so an out-of-bounds access fails the run instead of
/// passing silently. Elsewhere, plain native memory (no guard).
/// </summary>
public sealed unsafe class GuardedBuffer : IDisposable
{
    private const int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2;
    private const int MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20;

    [DllImport("libc", SetLastError = true)]
    private static extern void* mmap(void* addr, nuint length, int prot, int flags, int fd, nint offset);

    [DllImport("libc", SetLastError = true)]
    private static extern int mprotect(void* addr, nuint length, int prot);

    [DllImport("libc", SetLastError = true)]
    private static extern int munmap(void* addr, nuint length);

    private readonly byte* _base;
    private readonly nuint _total;
    private readonly bool _mapped;

    /// <summary>First byte of the usable pages (the guard page is just below).</summary>
    public readonly byte* Start;

    /// <summary>One past the usable pages (the guard page starts here).</summary>
    public readonly byte* End;

    /// <summary>True when the guard pages are real (Linux).</summary>
    public bool Guarded => _mapped;

    public GuardedBuffer(int usablePages)
    {
        nuint usable = (nuint)usablePages * 4096;
        _total = usable + 2 * 4096;
        if (OperatingSystem.IsLinux())
        {
            _base = (byte*)mmap(null, _total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (_base == (byte*)-1)
                throw new InvalidOperationException("mmap failed: " + Marshal.GetLastPInvokeError());
            if (mprotect(_base, 4096, PROT_NONE) != 0 || mprotect(_base + 4096 + usable, 4096, PROT_NONE) != 0)
                throw new InvalidOperationException("mprotect failed: " + Marshal.GetLastPInvokeError());
            _mapped = true;
        }
        else
        {
            _base = (byte*)NativeMemory.AlignedAlloc(_total, 4096);
        }
        Start = _base + 4096;
        End = Start + usable;
    }

    /// <summary>Copies <paramref name="data"/> so that it ends exactly at <see cref="End"/>.</summary>
    public byte* PlaceAtEnd(ReadOnlySpan<byte> data)
    {
        byte* p = End - data.Length;
        data.CopyTo(new Span<byte>(p, data.Length));
        return p;
    }

    /// <summary>Copies <paramref name="data"/> so that it starts exactly at <see cref="Start"/>.</summary>
    public byte* PlaceAtStart(ReadOnlySpan<byte> data)
    {
        data.CopyTo(new Span<byte>(Start, data.Length));
        return Start;
    }

    public void Dispose()
    {
        if (_mapped)
            munmap(_base, _total);
        else
            NativeMemory.AlignedFree(_base);
    }
}

/// <summary>A destination with guard bytes on both sides, checked after every use.</summary>
public sealed unsafe class CanaryBuffer : IDisposable
{
    public const int GuardBytes = 256;
    private const byte Canary = 0xA5;
    private readonly byte* _base;
    private readonly int _capacity;

    public readonly byte* Data;

    public CanaryBuffer(int capacity)
    {
        _capacity = capacity;
        _base = (byte*)NativeMemory.Alloc((nuint)(capacity + 2 * GuardBytes));
        Data = _base + GuardBytes;
        Reset();
    }

    public Span<byte> Span => new Span<byte>(Data, _capacity);

    public void Reset() => new Span<byte>(_base, _capacity + 2 * GuardBytes).Fill(Canary);

    /// <summary>True when no guard byte changed.</summary>
    public bool GuardsIntact()
    {
        foreach (byte b in new ReadOnlySpan<byte>(_base, GuardBytes))
        {
            if (b != Canary)
                return false;
        }
        foreach (byte b in new ReadOnlySpan<byte>(Data + _capacity, GuardBytes))
        {
            if (b != Canary)
                return false;
        }
        return true;
    }

    public void Dispose() => NativeMemory.Free(_base);
}

/// <summary>Seeds of the swap tests: a fixed one unless <c>TANDEM_SEED</c> gives another; printed either way.</summary>
public static class SwapSeed
{
    public static int Pick(Action<string> log, string testName, int fixedSeed)
    {
        string? env = TestSeed.FromEnvironment();
        int seed = env != null ? int.Parse(env) : fixedSeed;
        log("seed " + seed + (env != null ? " (from " + TestSeed.Variable + ")" : " (fixed)") + "; replay: " + TestSeed.Variable + "=" + seed
            + " dotnet test --filter " + testName);
        return seed;
    }
}
