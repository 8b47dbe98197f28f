using System;
using System.Collections.Generic;
using System.Threading;
using Tandem.Mm;

namespace Tandem.Testing;

/// <summary>
/// Runs two actors on real threads but one step at a time: a step is the code between two
/// <see cref="MmCheckpoint"/>s (locks are never held across a checkpoint, so a step is atomic with
/// respect to the other actor's shared-memory accesses). Depth-first enumeration of the choice
/// "which actor takes the next step" visits every interleaving exactly once. Shared by the mm and
/// kvm host tests (compiled into both); each binds the actors' threads to its own machine.
/// </summary>
public sealed class InterleavingExplorer
{
    /// <summary>How schedules that would spin forever are cut.</summary>
    public enum Fairness
    {
        /// <summary>An actor that just reported <see cref="MmCheckpoint.SecondaryRetry"/> does not run again before the other took a step.</summary>
        YieldAfterRetry,

        /// <summary>After <see cref="MaxRun"/> steps in a row by one actor the other is forced to move (a forced step is not a choice point).</summary>
        BoundedRun,
    }

    /// <summary>Most consecutive steps one actor may take while the other waits (<see cref="Fairness.BoundedRun"/>).</summary>
    public const int MaxRun = 8;

    private sealed class Actor
    {
        public readonly SemaphoreSlim Go = new SemaphoreSlim(0);
        public volatile bool Done;
        public Exception? Error;
        public readonly List<MmCheckpoint> Trace = new List<MmCheckpoint>();
    }

    /// <summary>
    /// Explores every interleaving. <paramref name="setup"/> builds a fresh world and returns the two
    /// actors' bodies and a final check that returns an error message or null.
    /// <paramref name="bindThread"/>(cpu, hook) makes the calling thread run as that CPU with that
    /// checkpoint hook (null unbinds). Returns (interleavings explored, first failing trace or null, failures).
    /// </summary>
    public static (int runs, string? firstFailure, int failures) ExploreAll(
        Func<(Action a, Action b, Func<string?> check, IDisposable world)> setup,
        Action<int, Action<MmCheckpoint>?> bindThread, Fairness fairness, int maxRuns = 100000)
    {
        List<int> prefix = new List<int>();
        int runs = 0, failures = 0;
        string? first = null;
        while (true)
        {
            List<(int choice, int options)> made = new List<(int, int)>();
            string? failure = RunOnce(setup, bindThread, fairness, prefix, made, out string trace);
            runs++;
            if (failure != null)
            {
                failures++;
                first ??= failure + " | schedule: " + trace;
            }
            // Next schedule: bump the deepest choice that has an untried option.
            int d = made.Count - 1;
            while (d >= 0 && made[d].choice + 1 >= made[d].options)
                d--;
            if (d < 0 || runs >= maxRuns)
                break;
            prefix.Clear();
            for (int i = 0; i < d; i++)
                prefix.Add(made[i].choice);
            prefix.Add(made[d].choice + 1);
        }
        return (runs, first, failures);
    }

    private static string? RunOnce(Func<(Action a, Action b, Func<string?> check, IDisposable world)> setup,
        Action<int, Action<MmCheckpoint>?> bindThread, Fairness fairness, List<int> prefix, List<(int, int)> made, out string trace)
    {
        var (bodyA, bodyB, check, world) = setup();
        using IDisposable _ = world;
        SemaphoreSlim parked = new SemaphoreSlim(0);
        Actor[] actors = { new Actor(), new Actor() };
        Action[] bodies = { bodyA, bodyB };
        Thread[] threads = new Thread[2];
        List<string> steps = new List<string>();
        for (int i = 0; i < 2; i++)
        {
            int me = i;
            threads[i] = new Thread(() =>
            {
                Actor self = actors[me];
                bindThread(me + 1, site =>
                {
                    self.Trace.Add(site);
                    parked.Release();
                    self.Go.Wait();
                });
                self.Go.Wait();
                try { bodies[me](); }
                catch (Exception e) { self.Error = e; }
                finally
                {
                    bindThread(me + 1, null);
                    self.Done = true;
                    parked.Release();
                }
            });
            threads[i].IsBackground = true;
            threads[i].Start();
        }
        int step = 0;
        int last = -1, run = 0;
        while (!actors[0].Done || !actors[1].Done)
        {
            int options = (actors[0].Done ? 0 : 1) + (actors[1].Done ? 0 : 1);
            int forcedActor = ForcedActor(fairness, actors, options, last, run);
            if (forcedActor >= 0)
                options = 1;
            int choice = step < prefix.Count ? prefix[step] : 0;
            if (choice >= options)
                choice = 0;
            made.Add((choice, options));
            int who = forcedActor >= 0 ? forcedActor : actors[0].Done ? 1 : actors[1].Done ? 0 : choice;
            run = who == last ? run + 1 : 1;
            last = who;
            int before = actors[who].Trace.Count;
            actors[who].Go.Release();
            if (!parked.Wait(10000))
                throw new TimeoutException("actor " + who + " did not reach a checkpoint (deadlock across a checkpoint?)");
            steps.Add((who == 0 ? "A:" : "B:") + (actors[who].Trace.Count > before ? actors[who].Trace[^1].ToString() : "done"));
            step++;
        }
        foreach (Thread t in threads)
            t.Join();
        trace = string.Join(" ", steps);
        foreach (Actor a in actors)
        {
            if (a.Error != null)
                return "actor threw: " + a.Error.Message;
        }
        return check();
    }

    /// <summary>The actor the fairness rule makes move next, or -1 when the scheduler may choose.</summary>
    private static int ForcedActor(Fairness fairness, Actor[] actors, int options, int last, int run)
    {
        if (options != 2)
            return -1;
        if (fairness == Fairness.BoundedRun)
            return run >= MaxRun ? 1 - last : -1;
        // A spin on an in-progress invalidation would otherwise be an infinite schedule.
        int spinning = -1;
        for (int i = 0; i < 2; i++)
        {
            if (actors[i].Trace.Count > 0 && actors[i].Trace[^1] == MmCheckpoint.SecondaryRetry)
                spinning = i;
        }
        return spinning >= 0 ? 1 - spinning : -1;
    }
}
