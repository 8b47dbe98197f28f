using System;
using System.Collections.Generic;
using System.Threading;
using Tandem.Mm;

namespace Tandem.Kvm.Tests;

/// <summary>
/// (The pattern of the mm tests' InterleavingExplorer, copied so this project does not depend on a test project.)
/// Runs two actors on real threads but one step at a time: a step is the code between two
/// <see cref="MmCheckpoint"/>s (locks are never held across a checkpoint, so a step is atomic with
/// respect to the other actor's shared-memory accesses). Depth-first enumeration of the choice
/// "which actor takes the next step" visits every interleaving exactly once.
/// </summary>
public sealed class InterleavingExplorer
{
    /// <summary>Most consecutive steps one actor may take while the other waits.</summary>
    public const int MaxRun = 8;

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
                KvmMachine.ThreadCpu = me + 1;
                KvmMachine.ThreadCheckpoint = site =>
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
                    KvmMachine.ThreadCheckpoint = null;
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
            // Fairness bound (added here): an actor that retries while the other is parked
            // mid-invalidation would otherwise run forever; after MaxRun steps in a row the other
            // actor is forced to move (a forced step is not a choice point).
            bool forced = options == 2 && run >= MaxRun;
            if (forced)
                options = 1;
            int choice = step < prefix.Count ? prefix[step] : 0;
            if (choice >= options)
                choice = 0;
            made.Add((choice, options));
            int who = actors[0].Done ? 1 : actors[1].Done ? 0 : forced ? 1 - last : choice;
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
}
