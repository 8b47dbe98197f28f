using System;
using System.Collections.Generic;
using System.Threading;
using Tandem.Mm;

namespace Tandem.Mm.Tests;

/// <summary>
/// Runs two actors on real threads but one step at a time: a step is the code between two
/// <see cref="MmCheckpoint"/>s (locks are never held across a checkpoint, so a step is atomic with
/// respect to the other actor's shared-memory accesses). Depth-first enumeration of the choice
/// "which actor takes the next step" visits every interleaving exactly once.
/// </summary>
public sealed class InterleavingExplorer
{
    private sealed class Actor
    {
        public readonly SemaphoreSlim Go = new SemaphoreSlim(0);
        public volatile bool Done;
        public Exception? Error;
        public readonly List<MmCheckpoint> Trace = new List<MmCheckpoint>();
    }

    /// <summary>Explores every interleaving. <paramref name="setup"/> builds a fresh world and returns
    /// the two actors' bodies and a final check that returns an error message or null.
    /// Returns (interleavings explored, first failing trace or null, failures).</summary>
    public static (int runs, string? firstFailure, int failures) ExploreAll(
        Func<(Action a, Action b, Func<string?> check, IDisposable world)> setup, int maxRuns = 100000)
    {
        List<int> prefix = new List<int>();
        int runs = 0, failures = 0;
        string? first = null;
        while (true)
        {
            List<(int choice, int options)> made = new List<(int, int)>();
            string? failure = RunOnce(setup, prefix, made, out string trace);
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
        List<int> prefix, List<(int, int)> made, out string trace)
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
                HostMachine.ThreadCpu = me + 1;
                HostMachine.ThreadCheckpoint = site =>
                {
                    self.Trace.Add(site);
                    parked.Release();
                    self.Go.Wait();
                };
                self.Go.Wait();
                try { bodies[me](); }
                catch (Exception e) { self.Error = e; }
                finally
                {
                    HostMachine.ThreadCheckpoint = null;
                    self.Done = true;
                    parked.Release();
                }
            });
            threads[i].IsBackground = true;
            threads[i].Start();
        }
        int step = 0;
        while (!actors[0].Done || !actors[1].Done)
        {
            int options = (actors[0].Done ? 0 : 1) + (actors[1].Done ? 0 : 1);
            // Fairness: an actor that just reported a retry (a spin) does not run again before the
            // other actor took a step; without this, a spin on an in-progress invalidation is an
            // infinite schedule.
            int spinning = -1;
            for (int i = 0; i < 2; i++)
            {
                if (!actors[i].Done && actors[i].Trace.Count > 0 && actors[i].Trace[^1] == MmCheckpoint.SecondaryRetry && !actors[1 - i].Done)
                    spinning = i;
            }
            if (spinning >= 0)
                options = 1;
            int choice = step < prefix.Count ? prefix[step] : 0;
            if (choice >= options)
                choice = 0;
            made.Add((choice, options));
            int who = spinning >= 0 ? 1 - spinning : actors[0].Done ? 1 : actors[1].Done ? 0 : choice;
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
}
