using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Text;
using System.Threading;
using Tandem.Mm;

namespace Tandem.Testing;

/// <summary>
/// Systematic concurrency testing in the style of CHESS. Up to three actors run on real threads,
/// one step at a time. A step ends at every shared-memory access that mm and the EPT make
/// (<see cref="SharedAccess.Hook"/>: every PteOps/EptOps read, write, exchange, compare-exchange,
/// and/or, every spin-lock acquire, release, failed try and spin iteration), at the hardware
/// walker's steps, and at the named <see cref="MmCheckpoint"/>s. Depth-first search enumerates the
/// choice "which actor takes the next step" with preemption bounding: switching away from an actor
/// that could go on costs one preemption, and a schedule has at most
/// <see cref="Options.PreemptionBound"/> of them. Switching away from an actor that is blocked (a
/// contended lock spin, a failed try-lock, a spin-wait, <see cref="MmCheckpoint.SecondaryRetry"/>)
/// or done is free, so holding a lock across a switch point is normal: the waiter is parked until
/// someone releases a lock. Every failing schedule is reported as a string that
/// <see cref="Replay"/> runs again, step for step. Shared by the mm and kvm host tests.
/// </summary>
public sealed class InterleavingExplorer
{
    /// <summary>Default preemption bound (CHESS found most concurrency bugs within two).</summary>
    public const int DefaultPreemptionBound = 2;

    /// <summary>One fresh world: the actors' bodies (at most 3), the final check (error or null), and what to dispose.</summary>
    public sealed class World
    {
        public readonly Action[] Actors;
        public readonly Func<string?> Check;
        public readonly IDisposable? Resources;
        /// <summary>Freed-memory watches whose recorded failures fail the schedule even if the exception was swallowed.</summary>
        public MemoryWatch[] Watches = Array.Empty<MemoryWatch>();

        public World(Func<string?> check, IDisposable? resources, params Action[] actors)
        {
            if (actors.Length < 1 || actors.Length > 3)
                throw new ArgumentException("one to three actors");
            Actors = actors;
            Check = check;
            Resources = resources;
        }
    }

    public sealed class Options
    {
        /// <summary>Most preemptions per schedule.</summary>
        public int PreemptionBound = DefaultPreemptionBound;
        /// <summary>False: switch only at the named checkpoints (and at spins), as the first explorer did.</summary>
        public bool SwitchAtSharedAccess = true;
        /// <summary>Most schedules explored.</summary>
        public int MaxRuns = 100000;
        /// <summary>Most steps in one schedule (a longer one is reported as a livelock).</summary>
        public int MaxSteps = 20000;
        /// <summary>Stop exploring after this long (the result then says it is incomplete).</summary>
        public TimeSpan TimeBudget = TimeSpan.FromSeconds(90);
        /// <summary>Stop at the first failing schedule.</summary>
        public bool StopAtFirstFailure;
    }

    public sealed class Result
    {
        public int Runs;
        public int Failures;
        /// <summary>The first failure with its schedule and last steps, or null.</summary>
        public string? FirstFailure;
        /// <summary>The first failing schedule (for <see cref="Replay"/>), or null.</summary>
        public string? FirstFailingSchedule;
        /// <summary>True when every schedule within the bound was run.</summary>
        public bool Complete;
        public int LongestSchedule;
        public int PreemptionBound;
        public TimeSpan Elapsed;

        public override string ToString() =>
            "schedules: " + Runs + (Complete ? " (all within " : " (INCOMPLETE, bound ") + PreemptionBound + " preemptions), failing: " + Failures +
            ", longest: " + LongestSchedule + " steps, " + (long)Elapsed.TotalMilliseconds + " ms" +
            (FirstFailure != null ? "\nfirst failure: " + FirstFailure : "");
    }

    private enum Block { None, Lock, Other }

    private sealed class Actor
    {
        public readonly SemaphoreSlim Go = new SemaphoreSlim(0);
        public volatile bool Done;
        public Exception? Error;
        public string Last = "start";
        public Block Parked;
        public bool AnnouncedRelease;
        public Block Blocked;
        public int Steps;
    }

    private sealed class AbortRun : Exception
    {
        public AbortRun() : base("schedule aborted") { }
    }

    /// <summary>Explores every schedule within the preemption bound (or until a limit).</summary>
    public static Result Explore(Func<World> setup, Action<int, Action<MmCheckpoint>?> bindThread, Options? options = null)
    {
        options ??= new Options();
        Result result = new Result { PreemptionBound = options.PreemptionBound };
        Stopwatch clock = Stopwatch.StartNew();
        List<int> prefix = new List<int>();
        while (true)
        {
            List<(int choice, int options)> made = new List<(int, int)>();
            string? failure = RunOnce(setup, bindThread, options, prefix, null, made, out string schedule, out string lastSteps, out int steps);
            result.Runs++;
            result.LongestSchedule = Math.Max(result.LongestSchedule, steps);
            if (failure != null)
            {
                result.Failures++;
                if (result.FirstFailure == null)
                {
                    result.FirstFailingSchedule = schedule;
                    result.FirstFailure = failure + "\n  schedule: " + schedule + "  (replay: InterleavingExplorer.Replay(setup, bind, \"" + schedule + "\"))\n  last steps: " + lastSteps;
                }
                if (options.StopAtFirstFailure)
                    break;
            }
            // Next schedule: bump the deepest choice that has an untried option.
            int d = made.Count - 1;
            while (d >= 0 && made[d].choice + 1 >= made[d].options)
                d--;
            if (d < 0)
            {
                result.Complete = true;
                break;
            }
            if (result.Runs >= options.MaxRuns || clock.Elapsed > options.TimeBudget)
                break;
            prefix.Clear();
            for (int i = 0; i < d; i++)
                prefix.Add(made[i].choice);
            prefix.Add(made[d].choice + 1);
        }
        result.Elapsed = clock.Elapsed;
        return result;
    }

    /// <summary>Runs one schedule given as a string from a failure report; returns the failure or null.</summary>
    public static string? Replay(Func<World> setup, Action<int, Action<MmCheckpoint>?> bindThread, string schedule, Options? options = null)
    {
        options ??= new Options();
        List<int> forced = Decode(schedule);
        string? failure = RunOnce(setup, bindThread, options, new List<int>(), forced, new List<(int, int)>(), out string ran, out string lastSteps, out int _);
        return failure == null ? null : failure + "\n  schedule: " + ran + "\n  last steps: " + lastSteps;
    }

    private static string? RunOnce(Func<World> setup, Action<int, Action<MmCheckpoint>?> bindThread, Options options,
        List<int> prefix, List<int>? forced, List<(int, int)> made, out string schedule, out string lastSteps, out int stepCount)
    {
        AccessMonitor.EnsureInstalled();
        World world = setup();
        int n = world.Actors.Length;
        SemaphoreSlim parked = new SemaphoreSlim(0);
        Actor[] actors = new Actor[n];
        for (int i = 0; i < n; i++)
            actors[i] = new Actor();
        bool abort = false;
        Thread[] threads = new Thread[n];
        for (int i = 0; i < n; i++)
        {
            int me = i;
            threads[i] = new Thread(() =>
            {
                Actor self = actors[me];
                void Park(string what, Block block, bool release)
                {
                    if (Volatile.Read(ref abort))
                        throw new AbortRun();
                    self.Last = what;
                    self.Parked = block;
                    self.AnnouncedRelease = release;
                    parked.Release();
                    self.Go.Wait();
                    if (Volatile.Read(ref abort))
                        throw new AbortRun();
                }
                bindThread(me + 1, site => Park(site.ToString(), site == MmCheckpoint.SecondaryRetry ? Block.Other : Block.None, false));
                AccessMonitor.ThreadHook = (kind, address) =>
                {
                    switch (kind)
                    {
                        case SharedAccessKind.LockSpin:
                        case SharedAccessKind.LockTryFailed:
                            Park(kind.ToString(), Block.Lock, false);
                            break;
                        case SharedAccessKind.Spin:
                            Park(kind.ToString(), Block.Other, false);
                            break;
                        default:
                            if (options.SwitchAtSharedAccess)
                                Park(kind.ToString(), Block.None, kind == SharedAccessKind.LockRelease);
                            break;
                    }
                };
                self.Go.Wait();
                try
                {
                    if (!Volatile.Read(ref abort))
                        world.Actors[me]();
                }
                catch (AbortRun) { }
                catch (Exception e) { self.Error = e; }
                finally
                {
                    AccessMonitor.ThreadHook = null;
                    bindThread(me + 1, null);
                    self.Done = true;
                    parked.Release();
                }
            });
            threads[i].IsBackground = true;
            threads[i].Start();
        }

        List<int> sched = new List<int>();
        Queue<string> recent = new Queue<string>();
        int current = -1, preemptions = 0, step = 0, choicePoint = 0;
        string? failure = null;
        List<int> enabled = new List<int>(3);
        List<int> opts = new List<int>(3);
        while (true)
        {
            bool allDone = true;
            for (int i = 0; i < n; i++)
                allDone &= actors[i].Done;
            if (allDone)
                break;
            if (failure == null && step >= options.MaxSteps)
                failure = "schedule longer than " + options.MaxSteps + " steps (livelock or deadlock)";
            if (failure == null)
            {
                for (int i = 0; i < n; i++)
                {
                    if (actors[i].Error != null)
                        failure = "actor " + (char)('A' + i) + " threw: " + actors[i].Error;
                }
            }
            if (failure != null && !abort)
            {
                // Unwind every actor: each throws at its next step.
                Volatile.Write(ref abort, true);
            }
            int who;
            if (abort)
            {
                who = Array.FindIndex(actors, a => !a.Done);
            }
            else if (forced != null)
            {
                if (step >= forced.Count)
                {
                    failure = "the replayed schedule ended before the actors did";
                    continue;
                }
                who = forced[step];
                if (who >= n || actors[who].Done)
                {
                    failure = "the replayed schedule diverged at step " + step;
                    continue;
                }
            }
            else
            {
                enabled.Clear();
                for (int i = 0; i < n; i++)
                {
                    if (!actors[i].Done && actors[i].Blocked == Block.None)
                        enabled.Add(i);
                }
                if (enabled.Count == 0)
                {
                    // Everyone waits: wake the next one round-robin (a spurious wakeup, not a choice).
                    who = -1;
                    for (int k = 1; k <= n && who < 0; k++)
                    {
                        int c = ((current < 0 ? 0 : current) + k) % n;
                        if (!actors[c].Done)
                            who = c;
                    }
                }
                else
                {
                    opts.Clear();
                    bool currentEnabled = enabled.Contains(current);
                    if (currentEnabled)
                    {
                        opts.Add(current);
                        if (preemptions < options.PreemptionBound)
                        {
                            foreach (int e in enabled)
                            {
                                if (e != current)
                                    opts.Add(e);
                            }
                        }
                    }
                    else
                    {
                        opts.AddRange(enabled);
                    }
                    int choice = 0;
                    if (opts.Count > 1)
                    {
                        choice = choicePoint < prefix.Count ? prefix[choicePoint] : 0;
                        if (choice >= opts.Count)
                            choice = 0;
                        made.Add((choice, opts.Count));
                        choicePoint++;
                    }
                    who = opts[choice];
                    if (currentEnabled && who != current)
                        preemptions++;
                }
            }
            Actor a = actors[who];
            a.Blocked = Block.None;
            bool releasing = a.AnnouncedRelease;
            a.AnnouncedRelease = false;
            a.Go.Release();
            if (!parked.Wait(20000))
            {
                // A thread blocked outside every switch point: it may still touch the world, so
                // the world is leaked rather than disposed under it.
                schedule = Encode(sched);
                throw new TimeoutException("actor " + (char)('A' + who) + " did not reach a switch point within 20 s (a lock the explorer cannot see, or an endless loop without a step); schedule: " + schedule);
            }
            a.Steps++;
            if (!abort)
                sched.Add(who);
            recent.Enqueue((char)('A' + who) + ":" + (a.Done ? "done" : a.Last));
            if (recent.Count > 40)
                recent.Dequeue();
            step++;
            // Who may run next: the actor that just parked is blocked if it parked in a spin; a
            // release wakes lock waiters; any step by someone else wakes the other waiters.
            a.Blocked = a.Done ? Block.None : a.Parked;
            for (int i = 0; i < n; i++)
            {
                if (i == who)
                    continue;
                if (actors[i].Blocked == Block.Other || (releasing && actors[i].Blocked == Block.Lock))
                    actors[i].Blocked = Block.None;
            }
            if (!abort)
                current = who;
        }
        foreach (Thread t in threads)
            t.Join();
        schedule = Encode(sched);
        lastSteps = string.Join(" ", recent);
        stepCount = step;
        try
        {
            if (failure == null)
            {
                foreach (MemoryWatch w in world.Watches)
                {
                    if (w.Failures > 0)
                        failure = "freed memory was accessed: " + w.FirstFailure;
                }
            }
            failure ??= world.Check();
        }
        finally
        {
            world.Resources?.Dispose();
        }
        return failure;
    }

    /// <summary>Run-length encoding: "A12B3A40" = A takes 12 steps, then B 3, then A 40.</summary>
    private static string Encode(List<int> steps)
    {
        StringBuilder s = new StringBuilder();
        int i = 0;
        while (i < steps.Count)
        {
            int j = i;
            while (j < steps.Count && steps[j] == steps[i])
                j++;
            s.Append((char)('A' + steps[i])).Append(j - i);
            i = j;
        }
        return s.ToString();
    }

    private static List<int> Decode(string schedule)
    {
        List<int> steps = new List<int>();
        int i = 0;
        while (i < schedule.Length)
        {
            int actor = schedule[i] - 'A';
            int j = i + 1;
            while (j < schedule.Length && char.IsDigit(schedule[j]))
                j++;
            int count = int.Parse(schedule.AsSpan(i + 1, j - i - 1));
            for (int k = 0; k < count; k++)
                steps.Add(actor);
            i = j;
        }
        return steps;
    }
}
