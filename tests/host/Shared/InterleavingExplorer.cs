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

    /// <summary>
    /// The time budget of an exploration whose test asserts that it completed: completeness is the
    /// property, and a loaded machine (the mutation check runs beside Bochs) must not decide it. The
    /// schedule count (<see cref="Options.MaxRuns"/>) still bounds it.
    /// </summary>
    public static readonly TimeSpan ExhaustiveBudget = TimeSpan.FromMinutes(10);

    /// <summary>Set to 1 (the mutation check does): every exploration stops at its first failing schedule.</summary>
    public const string FirstFailureVariable = "TANDEM_FIRST_FAILURE";

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
        /// <summary>How many of the last steps a failure report shows.</summary>
        public int TraceLength = 40;
        /// <summary>
        /// Stop at the first failing schedule. On by default under the mutation check, which sets
        /// <c>TANDEM_FIRST_FAILURE=1</c>: one failing schedule kills a mutant, and exploring the
        /// rest (most of them failing) cost up to a minute per mutant.
        /// </summary>
        public bool StopAtFirstFailure = Environment.GetEnvironmentVariable(FirstFailureVariable) == "1";
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
        public ulong AnnouncedRelease;
        public ulong ExecutingRelease;
        public Block Blocked;
        public ulong BlockedOn;
        public bool ResumedFromSpin;
        public Block ParkedIn;
    }

    /// <summary>A thread reused by every schedule of one exploration (creating threads per schedule costs more than the schedule).</summary>
    private sealed class Worker
    {
        private readonly SemaphoreSlim _start = new SemaphoreSlim(0);
        private readonly SemaphoreSlim _idle = new SemaphoreSlim(0);
        private Action? _job;

        public Worker()
        {
            Thread t = new Thread(Loop) { IsBackground = true, Name = "explorer actor" };
            t.Start();
        }

        private void Loop()
        {
            while (true)
            {
                _start.Wait();
                Action? job = _job;
                if (job == null)
                    return;
                job();
                _idle.Release();
            }
        }

        public void Run(Action job)
        {
            _job = job;
            _start.Release();
        }

        public void WaitIdle() => _idle.Wait();

        public void Stop()
        {
            _job = null;
            _start.Release();
        }
    }

    private sealed class AbortRun : Exception
    {
        public AbortRun() : base("schedule aborted") { }
    }

    /// <summary>Environment variable: when set, <see cref="Explore"/> runs only that schedule (a string from a failure report).</summary>
    public const string ScheduleVariable = "TANDEM_SCHEDULE";

    /// <summary>
    /// Explores every schedule within the preemption bound (or until a limit). With
    /// <c>TANDEM_SCHEDULE</c> set, runs only that schedule (run the one test with a filter).
    /// </summary>
    public static Result Explore(Func<World> setup, Action<int, Action<MmCheckpoint>?> bindThread, Options? options = null)
    {
        options ??= new Options();
        Result result = new Result { PreemptionBound = options.PreemptionBound };
        string? only = Environment.GetEnvironmentVariable(ScheduleVariable);
        if (!string.IsNullOrEmpty(only))
        {
            Stopwatch replayClock = Stopwatch.StartNew();
            string? failure = Replay(setup, bindThread, only, options);
            result.Runs = 1;
            result.Complete = true;
            result.Failures = failure == null ? 0 : 1;
            result.FirstFailure = failure == null ? null : "(" + ScheduleVariable + ") " + failure;
            result.FirstFailingSchedule = failure == null ? null : only;
            result.Elapsed = replayClock.Elapsed;
            return result;
        }
        Stopwatch clock = Stopwatch.StartNew();
        List<int> prefix = new List<int>();
        Worker[] workers = { new Worker(), new Worker(), new Worker() };
        try
        {
            Search(setup, bindThread, options, result, clock, prefix, workers);
        }
        finally
        {
            foreach (Worker w in workers)
                w.Stop();
        }
        result.Elapsed = clock.Elapsed;
        return result;
    }

    private static void Search(Func<World> setup, Action<int, Action<MmCheckpoint>?> bindThread, Options options, Result result,
        Stopwatch clock, List<int> prefix, Worker[] workers)
    {
        while (true)
        {
            List<(int choice, int options)> made = new List<(int, int)>();
            string? failure = RunOnce(setup, bindThread, options, prefix, null, made, workers, out string schedule, out string lastSteps, out int steps);
            result.Runs++;
            result.LongestSchedule = Math.Max(result.LongestSchedule, steps);
            if (failure != null)
            {
                result.Failures++;
                if (result.FirstFailure == null)
                {
                    result.FirstFailingSchedule = schedule;
                    result.FirstFailure = failure + "\n  schedule: " + schedule + "  (replay: " + ScheduleVariable + "=" + schedule + " or InterleavingExplorer.Replay(setup, bind, \"" + schedule + "\"))\n  last steps: " + lastSteps;
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
    }

    /// <summary>Runs one schedule given as a string from a failure report; returns the failure or null.</summary>
    public static string? Replay(Func<World> setup, Action<int, Action<MmCheckpoint>?> bindThread, string schedule, Options? options = null)
    {
        options ??= new Options();
        List<int> forced = Decode(schedule);
        Worker[] workers = { new Worker(), new Worker(), new Worker() };
        string? failure;
        string ran, lastSteps;
        try
        {
            failure = RunOnce(setup, bindThread, options, new List<int>(), forced, new List<(int, int)>(), workers, out ran, out lastSteps, out int _);
        }
        finally
        {
            foreach (Worker w in workers)
                w.Stop();
        }
        return failure == null ? null : failure + "\n  schedule: " + ran + "\n  last steps: " + lastSteps;
    }

    private static string? RunOnce(Func<World> setup, Action<int, Action<MmCheckpoint>?> bindThread, Options options,
        List<int> prefix, List<int>? forced, List<(int, int)> made, Worker[] workers, out string schedule, out string lastSteps, out int stepCount)
    {
        AccessMonitor.EnsureInstalled();
        World world = setup();
        Run run = new Run(world, bindThread, options, prefix, forced, made);
        run.Start(workers);
        if (!run.WaitFinished())
        {
            // A thread blocked outside every switch point: it may still touch the world, so the
            // world is leaked rather than disposed under it.
            throw new TimeoutException("an actor did not reach a switch point within 20 s (a lock the explorer cannot see, or an endless loop without a step); schedule: " + Encode(run.Sched));
        }
        for (int i = 0; i < world.Actors.Length; i++)
            workers[i].WaitIdle();
        schedule = Encode(run.Sched);
        lastSteps = string.Join(" ", run.Recent);
        stepCount = run.Sched.Count;
        string? failure = run.Failure;
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

    /// <summary>
    /// One schedule. Only the actor holding the turn runs; at each switch point it records the step
    /// it just finished, decides who takes the next one and, if that is someone else, hands the turn
    /// over and waits (so a step that continues the same actor costs no thread switch).
    /// </summary>
    private sealed class Run
    {
        private readonly World _world;
        private readonly Action<int, Action<MmCheckpoint>?> _bind;
        private readonly Options _options;
        private readonly List<int> _prefix;
        private readonly List<int>? _forced;
        private readonly List<(int, int)> _made;
        private readonly Actor[] _actors;
        private readonly SemaphoreSlim _finished = new SemaphoreSlim(0);
        private readonly List<int> _enabled = new List<int>(3);
        private readonly List<int> _opts = new List<int>(3);
        public readonly List<int> Sched = new List<int>();
        public readonly Queue<string> Recent = new Queue<string>();
        public string? Failure;
        private volatile bool _abort;
        private int _current = -1, _preemptions, _choicePoint;
        private int _progress;

        public Run(World world, Action<int, Action<MmCheckpoint>?> bind, Options options, List<int> prefix, List<int>? forced, List<(int, int)> made)
        {
            _world = world;
            _bind = bind;
            _options = options;
            _prefix = prefix;
            _forced = forced;
            _made = made;
            _actors = new Actor[world.Actors.Length];
            for (int i = 0; i < _actors.Length; i++)
                _actors[i] = new Actor();
        }

        public void Start(Worker[] workers)
        {
            for (int i = 0; i < _actors.Length; i++)
            {
                int me = i;
                workers[i].Run(() => Body(me));
            }
            int first = Decide();
            Begin(first);
            _actors[first].Go.Release();
        }

        public bool WaitFinished()
        {
            int seen = -1;
            while (!_finished.Wait(20000))
            {
                int now = Volatile.Read(ref _progress);
                if (now == seen)
                    return false;
                seen = now;
            }
            return true;
        }

        private void Body(int me)
        {
            Actor self = _actors[me];
            _bind(me + 1, site => Park(me, site.ToString(), site == MmCheckpoint.SecondaryRetry ? Block.Other : Block.None, 0));
            AccessMonitor.ThreadHook = (kind, address) =>
            {
                switch (kind)
                {
                    case SharedAccessKind.LockSpin:
                    case SharedAccessKind.LockTryFailed:
                        Park(me, kind.ToString(), Block.Lock, address);
                        break;
                    case SharedAccessKind.Spin:
                        Park(me, kind.ToString(), Block.Other, 0);
                        break;
                    case SharedAccessKind.LockRelease:
                        // Always a switch point: the explorer must see every release to wake waiters.
                        Park(me, kind.ToString(), Block.None, address);
                        break;
                    default:
                        if (_options.SwitchAtSharedAccess)
                            Park(me, kind.ToString(), Block.None, 0);
                        break;
                }
            };
            self.Go.Wait();
            try
            {
                if (!_abort)
                    _world.Actors[me]();
            }
            catch (AbortRun) { }
            catch (Exception e) { self.Error = e; }
            finally
            {
                AccessMonitor.ThreadHook = null;
                _bind(me + 1, null);
                self.Done = true;
                Ended(me, "done", Block.None, 0);
                int next = Decide();
                if (next < 0)
                {
                    _finished.Release();
                }
                else
                {
                    Begin(next);
                    _actors[next].Go.Release();
                }
            }
        }

        /// <summary><paramref name="lockAddress"/>: the lock spun on (Block.Lock) or about to be released (0 otherwise).</summary>
        private void Park(int me, string what, Block block, ulong lockAddress)
        {
            if (_abort)
                throw new AbortRun();
            Ended(me, what, block, lockAddress);
            int next = Decide();
            Begin(next);
            if (next != me)
            {
                _actors[next].Go.Release();
                _actors[me].Go.Wait();
            }
            if (_abort)
                throw new AbortRun();
        }

        /// <summary>Actor <paramref name="who"/> takes the turn: its next step starts.</summary>
        private void Begin(int who)
        {
            Actor a = _actors[who];
            a.ResumedFromSpin = a.ParkedIn != Block.None;
            a.Blocked = Block.None;
            a.BlockedOn = 0;
            a.ExecutingRelease = a.AnnouncedRelease;
            a.AnnouncedRelease = 0;
            if (!_abort)
                Sched.Add(who);
            if (!_abort)
                _current = who;
            Interlocked.Increment(ref _progress);
        }

        /// <summary>Actor <paramref name="who"/> finished a step and stopped before <paramref name="what"/>.</summary>
        private void Ended(int who, string what, Block block, ulong lockAddress)
        {
            Actor a = _actors[who];
            Recent.Enqueue((char)('A' + who) + ":" + what);
            if (Recent.Count > _options.TraceLength)
                Recent.Dequeue();
            // The actor is blocked if it stopped in a spin. The release of a lock wakes that lock's
            // waiters; any other step by someone else wakes the plain spinners, except a step that
            // only spun again (it changed nothing: waking on it would make schedules endless).
            a.Blocked = a.Done ? Block.None : block;
            a.ParkedIn = block;
            a.BlockedOn = block == Block.Lock ? lockAddress : 0;
            a.AnnouncedRelease = block == Block.None ? lockAddress : 0;
            bool idle = a.ResumedFromSpin && block != Block.None;
            for (int i = 0; i < _actors.Length; i++)
            {
                Actor o = _actors[i];
                if (i == who)
                    continue;
                if (o.Blocked == Block.Other && !idle)
                    o.Blocked = Block.None;
                if (o.Blocked == Block.Lock && a.ExecutingRelease != 0 && o.BlockedOn == a.ExecutingRelease)
                {
                    o.Blocked = Block.None;
                    o.BlockedOn = 0;
                }
            }
            a.ExecutingRelease = 0;
        }

        /// <summary>Who takes the next step (-1: everyone is done).</summary>
        private int Decide()
        {
            int n = _actors.Length;
            int live = -1;
            for (int i = 0; i < n; i++)
            {
                if (!_actors[i].Done && live < 0)
                    live = i;
            }
            if (live < 0)
                return -1;
            if (Failure == null && Sched.Count >= _options.MaxSteps)
                Failure = "schedule longer than " + _options.MaxSteps + " steps (livelock or deadlock)";
            for (int i = 0; i < n && Failure == null; i++)
            {
                if (_actors[i].Error != null)
                    Failure = "actor " + (char)('A' + i) + " threw: " + _actors[i].Error;
            }
            if (_forced != null && Failure == null)
            {
                int step = Sched.Count;
                if (step >= _forced.Count)
                    Failure = "the replayed schedule ended before the actors did";
                else if (_forced[step] >= n || _actors[_forced[step]].Done)
                    Failure = "the replayed schedule diverged at step " + step;
                else
                    return _forced[step];
            }
            if (Failure != null)
            {
                // Unwind every actor: each throws at its next switch point.
                _abort = true;
                return live;
            }
            _enabled.Clear();
            for (int i = 0; i < n; i++)
            {
                if (!_actors[i].Done && _actors[i].Blocked == Block.None)
                    _enabled.Add(i);
            }
            if (_enabled.Count == 0)
            {
                // Everyone waits: wake the next one round-robin (a spurious wakeup, not a choice).
                for (int k = 1; k <= n; k++)
                {
                    int c = ((_current < 0 ? 0 : _current) + k) % n;
                    if (!_actors[c].Done)
                        return c;
                }
            }
            _opts.Clear();
            bool currentEnabled = _enabled.Contains(_current);
            if (currentEnabled)
            {
                _opts.Add(_current);
                if (_preemptions < _options.PreemptionBound)
                {
                    foreach (int e in _enabled)
                    {
                        if (e != _current)
                            _opts.Add(e);
                    }
                }
            }
            else
            {
                _opts.AddRange(_enabled);
            }
            int choice = 0;
            if (_opts.Count > 1)
            {
                choice = _choicePoint < _prefix.Count ? _prefix[_choicePoint] : 0;
                if (choice >= _opts.Count)
                    choice = 0;
                _made.Add((choice, _opts.Count));
                _choicePoint++;
            }
            int who = _opts[choice];
            if (currentEnabled && who != _current)
                _preemptions++;
            return who;
        }
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
