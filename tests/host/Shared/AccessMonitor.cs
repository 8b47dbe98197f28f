using System;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading;
using Tandem.Mm;

namespace Tandem.Testing;

/// <summary>
/// The host tests' side of <see cref="SharedAccess.Hook"/>: one process-wide dispatcher that first
/// calls the calling thread's step hook (the interleaving explorer parks the thread there, a test
/// may change an entry there as the CPU would) and then every <see cref="MemoryWatch"/> whose range
/// holds the address (freed-memory checks). Tests running in parallel do not see each other: step
/// hooks are per thread, and each machine watches only its own buffers.
/// </summary>
public static class AccessMonitor
{
    [ThreadStatic] private static Action<SharedAccessKind, ulong>? t_step;
    [ThreadStatic] private static MemoryWatch? t_abortWith;
    private static MemoryWatch[] s_watches = Array.Empty<MemoryWatch>();
    private static readonly object s_gate = new object();

    /// <summary>Installs the dispatcher (idempotent; every host machine calls it).</summary>
    public static void EnsureInstalled()
    {
        if (SharedAccess.Hook == null)
            SharedAccess.Hook = Dispatch;
    }

    /// <summary>The calling thread's step hook (called before each shared-memory step; null for none).</summary>
    public static Action<SharedAccessKind, ulong>? ThreadHook
    {
        get => t_step;
        set { EnsureInstalled(); t_step = value; }
    }

    /// <summary>
    /// When set, a spin of the calling thread throws once <paramref name="watch"/> recorded a
    /// failure: a thread that waits for a lock that a failed walker still holds gives up instead
    /// of hanging the test run.
    /// </summary>
    public static MemoryWatch? AbortSpinsAfterFailureOf { get => t_abortWith; set => t_abortWith = value; }

    /// <summary>A shared-memory step of test-side code (the hardware walker, test locks): same dispatch as mm's.</summary>
    public static void Step(SharedAccessKind kind, ulong address) => Dispatch(kind, address);

    private static void Dispatch(SharedAccessKind kind, ulong address)
    {
        t_step?.Invoke(kind, address);
        if (address != 0 && (kind < SharedAccessKind.LockAcquire || kind > SharedAccessKind.Spin))
        {
            MemoryWatch[] watches = Volatile.Read(ref s_watches);
            for (int i = 0; i < watches.Length; i++)
            {
                if (address >= watches[i].Start && address < watches[i].End)
                    watches[i].OnAccess(kind, address);
            }
        }
        if ((kind == SharedAccessKind.LockSpin || kind == SharedAccessKind.Spin) && t_abortWith != null && t_abortWith.Failures > 0)
        {
            throw new OperationCanceledException("another thread failed a freed-memory check: " + t_abortWith.FirstFailure);
        }
    }

    /// <summary>Starts watching a range; dispose the result to stop.</summary>
    public static IDisposable Watch(MemoryWatch watch)
    {
        EnsureInstalled();
        lock (s_gate)
        {
            MemoryWatch[] next = new MemoryWatch[s_watches.Length + 1];
            Array.Copy(s_watches, next, s_watches.Length);
            next[^1] = watch;
            // Publish a complete array; pairs with the Volatile.Read in Dispatch.
            Volatile.Write(ref s_watches, next);
        }
        return new Unwatch(watch);
    }

    private sealed class Unwatch : IDisposable
    {
        private MemoryWatch? _watch;
        public Unwatch(MemoryWatch watch) { _watch = watch; }

        public void Dispose()
        {
            MemoryWatch? w = Interlocked.Exchange(ref _watch, null);
            if (w == null)
                return;
            lock (s_gate)
                Volatile.Write(ref s_watches, Array.FindAll(s_watches, x => x != w));
        }
    }

    /// <summary>The first method on the stack outside the access helpers: who did the access.</summary>
    public static string Walker()
    {
        StackTrace trace = new StackTrace(1, false);
        foreach (StackFrame f in trace.GetFrames())
        {
            System.Reflection.MethodBase? m = f.GetMethod();
            string? type = m?.DeclaringType?.Name;
            if (m == null || type == null)
                continue;
            if (type.StartsWith("PteOps") || type.StartsWith("EptOps") || type.StartsWith("AccessMonitor") || type.StartsWith("SharedAccess")
                || typeof(MemoryWatch).IsAssignableFrom(m.DeclaringType) || type.Contains("<"))
                continue;
            string name = m.DeclaringType!.FullName ?? type;
            int tick = name.IndexOf('`');
            if (tick >= 0)
                name = name.Substring(0, tick);
            return name + "." + m.Name;
        }
        return "?";
    }
}

/// <summary>A range of host memory (a machine's buffer) whose accesses are checked.</summary>
public abstract class MemoryWatch
{
    public readonly ulong Start, End;
    private int _failures;
    private readonly ConcurrentQueue<string> _messages = new ConcurrentQueue<string>();

    protected MemoryWatch(ulong start, ulong end)
    {
        Start = start;
        End = end;
    }

    /// <summary>Failures recorded so far (also when the exception thrown at the access was swallowed).</summary>
    public int Failures => Volatile.Read(ref _failures);

    /// <summary>The first recorded failure (with its stack trace), or null.</summary>
    public string? FirstFailure => _messages.TryPeek(out string? m) ? m : null;

    /// <summary>Every recorded failure (at most 20).</summary>
    public string AllFailures => string.Join("\n---\n", _messages);

    public abstract void OnAccess(SharedAccessKind kind, ulong address);

    /// <summary>Records a failure and throws it at the walker.</summary>
    protected void Fail(string message)
    {
        string full = message + " (walker: " + AccessMonitor.Walker() + ")\n" + Environment.StackTrace;
        Interlocked.Increment(ref _failures);
        if (_messages.Count < 20)
            _messages.Enqueue(full);
        throw new FreedMemoryAccessException(full);
    }
}

/// <summary>A walker read or changed a freed page-table or EPT table page.</summary>
public sealed class FreedMemoryAccessException : Exception
{
    public FreedMemoryAccessException(string message) : base(message) { }
}

/// <summary>
/// Watches a buffer of 4 KiB pages: any entry access through PteOps/EptOps (or the hardware walker)
/// inside a page that <paramref name="isFreed"/> reports freed is a failure naming the walker.
/// </summary>
public sealed class FreedPageWatch : MemoryWatch
{
    private readonly Func<long, bool> _isFreed;
    private readonly string _what;

    public FreedPageWatch(ulong start, ulong end, string what, Func<long, bool> isFreed) : base(start, end)
    {
        _isFreed = isFreed;
        _what = what;
    }

    public override void OnAccess(SharedAccessKind kind, ulong address)
    {
        if (kind >= SharedAccessKind.LockAcquire && kind <= SharedAccessKind.Spin)
            return;
        long page = (long)((address - Start) >> 12);
        if (_isFreed(page))
            Fail(kind + " at 0x" + address.ToString("x") + " inside freed " + _what + " " + page);
    }
}

/// <summary>What freed memory is filled with: entries that look present (primary: P|W|U|A|D; EPT: RWX)
/// and point far outside every host buffer, so following one throws.</summary>
public static class Poison
{
    public const ulong PrimaryEntry = 0x000F_DEAD_BEEF_F067UL;
    public const ulong EptEntry = 0x000F_DEAD_BEEF_F007UL;

    public static unsafe void Fill(void* page, ulong pattern)
    {
        ulong* p = (ulong*)page;
        for (int i = 0; i < 512; i++)
            Volatile.Write(ref p[i], pattern);
    }
}
