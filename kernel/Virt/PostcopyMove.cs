using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;
using Tandem.Kernel.Sched;
using Tandem.Kvm.Vmx;
using Tandem.Mm;

namespace Tandem.Kernel.Virt
{
    /// <summary>
    /// Moves a running VM to a new VM on the same host by postcopy (issue 11 §4, invariant 6;
    /// docs/reclaim.md "Postcopy"): the source is paused and each vCPU's state taken; the target
    /// gets that state and the source's device models, and its guest RAM is a userfault region
    /// with no page in it. The target runs at once. A vCPU that touches a missing page waits in its
    /// EPT violation while the handler thread copies that page from the source (on demand); a
    /// pusher thread copies the rest meanwhile, from the top of RAM down, leaving out the pages the
    /// source never had (a fault on one gets a zero page). The source gives each page back as it
    /// moves (it never runs again), so the move never needs the VM's memory twice; when every page
    /// has arrived the source is released. Every page arrives once at most: a fill installs only
    /// where the target has no entry (a page there, or swapped out since, is never replaced).
    /// </summary>
    /// <remarks>
    /// One move at a time (the threads find it in a static). The source's pages are read through
    /// its own address space (a page it had swapped out is read back), under a frame reference.
    /// </remarks>
    public sealed unsafe class PostcopyMove : IUserfaultHandler
    {
        /// <summary>The VM that was paused and is released when everything has arrived.</summary>
        public readonly Vm Source;

        /// <summary>The VM that runs on (null if it could not be made).</summary>
        public Vm? Target;

        private readonly MmGuestMemory _from;
        private MmGuestMemory? _to;
        private readonly ulong _pages;

        // One bit per page: a vCPU asked for it (set by OnMissing, taken by the handler thread).
        private readonly ulong[] _requested;
        private KThread* _handler;
        private int _stop, _handlerDone, _pusherDone, _allArrived, _targetEnded;
        private long _onDemand, _pushed, _alreadyThere, _requests, _neverTouched, _zeroFilled;
        private string? _error;

        /// <summary>TSC when the source's vCPUs had all stopped, and when the target's vCPU threads were started.</summary>
        public ulong PausedTsc, ResumedTsc;

        private static PostcopyMove? s_active;

        private PostcopyMove(Vm source, MmGuestMemory from)
        {
            Source = source;
            _from = from;
            _pages = from.Size / 4096;
            _requested = new ulong[(int)((_pages + 63) / 64)];
        }

        /// <summary>Pages copied because a vCPU of the target touched them.</summary>
        public long PagesOnDemand => Volatile.Read(ref _onDemand);

        /// <summary>Pages copied by the background push.</summary>
        public long PagesPushed => Volatile.Read(ref _pushed);

        /// <summary>Fills that found the page already there (the other thread had copied it).</summary>
        public long AlreadyThere => Volatile.Read(ref _alreadyThere);

        /// <summary>Pages the push left out because the source never had them (a fault on one gets a zero page).</summary>
        public long PagesNeverTouched => Volatile.Read(ref _neverTouched);

        /// <summary>Faults on pages the source never had, answered with a zero page.</summary>
        public long PagesZeroFilled => Volatile.Read(ref _zeroFilled);

        /// <summary>Missing-page faults the target's vCPUs reported (several may ask for one page).</summary>
        public long Requests => Volatile.Read(ref _requests);

        /// <summary>Every page of the source has arrived in the target.</summary>
        public bool Complete => Volatile.Read(ref _allArrived) != 0;

        /// <summary>Why a fill failed (the move then stops the target), or null.</summary>
        public string? Error => Volatile.Read(ref _error);

        /// <summary>
        /// Pauses <paramref name="source"/> (running on its vCPU threads), takes each vCPU's state,
        /// and starts the target with it and the source's devices, its RAM empty, with the handler
        /// and pusher threads. Returns null with <paramref name="problem"/> set if the move could not
        /// start; the source then runs on.
        /// </summary>
        public static PostcopyMove? Start(Vm source, out string? problem)
        {
            if (source.Memory is not MmGuestMemory from)
            {
                problem = "the VM's RAM is not in an address space of the mm core";
                return null;
            }
            if (Interlocked.CompareExchange(ref s_active, null, null) != null)
            {
                problem = "another move is under way";
                return null;
            }
            var move = new PostcopyMove(source, from);
            if (Interlocked.CompareExchange(ref s_active, move, null) != null)
            {
                problem = "another move is under way";
                return null;
            }
            problem = move.Begin();
            if (problem != null)
            {
                Volatile.Write(ref s_active, null);
                return null;
            }
            return move;
        }

        private string? Begin()
        {
            Vm source = Source;
            _wasPaused = Volatile.Read(ref source.Paused);
            Volatile.Write(ref source.SaveStateOnPause, true);
            source.Pause();
            // Each vCPU takes its state on its own thread before it waits (Vm.WaitWhilePaused).
            ulong deadline = Native.Rdtsc() + Timer.TscPerSecond;
            while (!AllSaved(source) && !source.Stopped && Native.Rdtsc() < deadline)
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 1000);
            if (source.Stopped)
                return "the VM stopped before the move";
            if (!AllSaved(source))
            {
                Resume(source);
                return "a vCPU did not stop for the move within 1 s (halted in the guest?)";
            }
            PausedTsc = Native.Rdtsc();
            _to = MmGuestMemory.CreateUserfault(_from.Size, this, out string? problem);
            if (_to == null)
            {
                Resume(source);
                return problem;
            }
            Target = VmFactory.CreateTakingOver(_to, source, out problem);
            if (Target == null)
            {
                _to.Release();
                Resume(source);
                return problem;
            }
            Target.MaxQuanta = source.MaxQuanta;
            Target.RestartOnReset = source.RestartOnReset;
            if (_wasPaused)
                Target.Paused = true;               // it stays paused where it goes (the monitor resumes it)
            Target.MuteSerial = source.MuteSerial;
            // The source's vCPU threads end: it never runs again (its devices are the target's now).
            // MovedTo first: whoever sees the source stopped finds the VM that runs on.
            Volatile.Write(ref source.MovedTo, Target);
            source.Stop(0, "moved to another VM by postcopy");
            _handler = Scheduler.Spawn("postcopy-fill", &HandlerMain, 0);
            if (_handler == null || Scheduler.Spawn("postcopy-push", &PusherMain, 0) == null)
            {
                // The target cannot get its memory: it is stopped before it runs.
                Volatile.Write(ref _error, "out of memory for the move's threads");
                Target.Stop(255, "the postcopy move could not start its threads");
                Volatile.Write(ref _stop, 1);
                if (_handler == null)
                    Volatile.Write(ref _handlerDone, 1);
                Volatile.Write(ref _pusherDone, 1);
                return null;
            }
            ResumedTsc = Native.Rdtsc();
            VmThreads.Start(Target, 0);
            Log.Info($"postcopy: vm {(ulong)source.Id} paused at rip {source.Vcpus[0].SavedState!.Rip:x}; vm {(ulong)Target.Id} runs with its state and devices, {_pages} pages to come");
            return null;
        }

        private static bool AllSaved(Vm vm)
        {
            for (int i = 0; i < vm.Vcpus.Length; i++)
            {
                if (Volatile.Read(ref vm.Vcpus[i].SavedState) == null)
                    return false;
            }
            return true;
        }

        /// <summary>The source was paused (the monitor's pause) before the move was asked for.</summary>
        private bool _wasPaused;

        /// <summary>The move did not happen: the source runs on (or stays paused, if it was).</summary>
        private void Resume(Vm source)
        {
            Volatile.Write(ref source.SaveStateOnPause, false);
            for (int i = 0; i < source.Vcpus.Length; i++)
                Volatile.Write(ref source.Vcpus[i].SavedState, null);
            if (!_wasPaused)
                source.Resume();
        }

        /// <inheritdoc/>
        public void OnMissing(IAddressSpace space, VirtAddr page, bool write)
        {
            ulong index = (page - MmGuestMemory.HostBase) / 4096;
            if (index >= _pages)
                return;
            Interlocked.Increment(ref _requests);
            if (Volatile.Read(ref _stop) != 0)
            {
                // Nothing copies any more (everything arrived, or the move failed): the fault gets
                // a zero page rather than waiting for ever. After a complete move no page is
                // missing, so this is only reached when the move failed.
                _to!.Space.UserfaultZero(page);
                return;
            }
            Interlocked.Or(ref _requested[(int)(index / 64)], 1UL << (int)(index % 64));
            Scheduler.Wake(_handler);
        }

        /// <summary>Copies page <paramref name="index"/> from the source; counts it. False when the copy failed.</summary>
        private bool Fill(ulong index, byte* buffer, bool onDemand)
        {
            ulong gpa = index * 4096;
            VirtAddr target = _to!.HostAddress(gpa), source = _from.HostAddress(gpa);
            if (!onDemand && (_to.Space.TranslateFrame(target, out _) || _to.Space.TryGetSwapEntry(target, out _)))
            {
                Interlocked.Increment(ref _alreadyThere);      // it came on demand: nothing to push
                return true;
            }
            // A page the source never had (no entry: never touched, a zero page) is not copied: the
            // push leaves it out, and a fault on it gets a zero page. The order matters: present
            // first, then swapped (a page may only go from present to swapped meanwhile).
            if (!_from.Space.TranslateFrame(source, out _) && !_from.Space.TryGetSwapEntry(source, out _))
            {
                if (!onDemand)
                {
                    Interlocked.Increment(ref _neverTouched);
                    return true;
                }
                FaultStatus zero = _to.Space.UserfaultZero(target);
                if (zero == FaultStatus.Ok)
                    Interlocked.Increment(ref _zeroFilled);
                return zero == FaultStatus.Ok || zero == FaultStatus.Exists || Ended(zero);
            }
            if (!_from.Read(gpa, buffer, 4096))
            {
                Fail("a page of the source could not be read");
                return false;
            }
            FaultStatus status = _to.Space.UserfaultCopy(target, new System.ReadOnlySpan<byte>(buffer, 4096));
            if (status == FaultStatus.Ok)
                Interlocked.Increment(ref onDemand ? ref _onDemand : ref _pushed);
            else if (status == FaultStatus.Exists)
                Interlocked.Increment(ref _alreadyThere);
            else if (Ended(status))
                return false;
            else
            {
                Fail(status == FaultStatus.OutOfMemory ? "out of memory for a page of the target" : "a page could not be installed in the target");
                return false;
            }
            // The page is the target's now: the source (stopped for good) gives its copy back, so
            // an in-host move never needs the VM's memory twice.
            _from.Space.Unmap(source, source + 4096);
            return true;
        }

        /// <summary>True (and the move stops quietly) when a fill found the target gone: its guest ended and its memory went.</summary>
        private bool Ended(FaultStatus status)
        {
            if ((status != FaultStatus.Dead && status != FaultStatus.NoRegion) || Target == null || !Target.Stopped)
                return false;
            Volatile.Write(ref _targetEnded, 1);
            Volatile.Write(ref _stop, 1);
            return true;
        }

        private void Fail(string why)
        {
            Interlocked.CompareExchange(ref _error, why, null);
            Volatile.Write(ref _stop, 1);
            Target?.Stop(255, "the postcopy move failed");
            _to?.Space.UserfaultWake();
        }

        private static void HandlerMain(ulong unused)
        {
            PostcopyMove m = s_active!;
            byte* buffer = (byte*)KernelHeap.Alloc(4096);
            while (Volatile.Read(ref m._stop) == 0)
            {
                bool any = false;
                for (int w = 0; w < m._requested.Length && Volatile.Read(ref m._stop) == 0; w++)
                {
                    ulong bits = Interlocked.Exchange(ref m._requested[w], 0);
                    while (bits != 0)
                    {
                        int bit = System.Numerics.BitOperations.TrailingZeroCount(bits);
                        bits &= bits - 1;
                        any = true;
                        if (!m.Fill((ulong)w * 64 + (ulong)bit, buffer, onDemand: true))
                            break;
                    }
                }
                if (!any)
                    Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            }
            KernelHeap.Free(buffer);
            Volatile.Write(ref m._handlerDone, 1);
        }

        private static void PusherMain(ulong unused)
        {
            PostcopyMove m = s_active!;
            byte* buffer = (byte*)KernelHeap.Alloc(4096);
            // From the top down (the guest's code and data are low): the pages the guest needs
            // first mostly come on demand. A pause every 32 pages leaves the CPU to the vCPUs, as a
            // link of limited bandwidth would.
            for (ulong n = 0; n < m._pages && Volatile.Read(ref m._stop) == 0; n++)
            {
                if (!m.Fill(m._pages - 1 - n, buffer, onDemand: false))
                    break;
                if ((n & 31) == 31)
                    Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 1000);
            }
            KernelHeap.Free(buffer);
            if (Volatile.Read(ref m._stop) == 0)
            {
                Volatile.Write(ref m._allArrived, 1);
                Volatile.Write(ref m._stop, 1);         // the handler thread ends; nothing is missing any more
            }
            Volatile.Write(ref m._pusherDone, 1);
            if (m._handler != null)
                Scheduler.Wake(m._handler);
        }

        /// <summary>
        /// <see cref="Start"/>, then <see cref="Finish"/> on a thread of its own (the monitor's
        /// <c>move VM</c>: the caller does not wait for the pages). Null with
        /// <paramref name="problem"/> set when the move did not start, or when no thread could be
        /// made for the finish (the move then still completes, but the source is not released and
        /// no figures are printed; the problem says so).
        /// </summary>
        public static PostcopyMove? StartDetached(Vm source, out string? problem)
        {
            PostcopyMove? move = Start(source, out problem);
            if (move != null && Scheduler.Spawn("postcopy-finish", &FinishMain, 0) == null)
                problem = "no memory for the move's finishing thread: the source VM's memory stays until the end of the run";
            return move;
        }

        /// <summary>Waits until no move is under way (the runner, before it reports the end of a run: the move's figures come first).</summary>
        public static void WaitUntilNoneActive()
        {
            while (Volatile.Read(ref s_active) != null)
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
        }

        private static void FinishMain(ulong unused)
        {
            s_active!.Finish();
        }

        /// <summary>
        /// Waits until every page has arrived (or the move failed) and both threads ended, then
        /// releases the source (its vCPU threads have ended). Prints the move's figures. Returns
        /// true when the move completed.
        /// </summary>
        public bool Finish()
        {
            while (Volatile.Read(ref _pusherDone) == 0 || Volatile.Read(ref _handlerDone) == 0 || Volatile.Read(ref Source.RunningVcpus) != 0)
                Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            Source.Release();
            ulong resumeUs = (ResumedTsc - PausedTsc) * 1_000_000 / Timer.TscPerSecond;
            Log.Info($"postcopy: vm {(ulong)Source.Id} released; pages filled on demand {(ulong)PagesOnDemand}, pushed {(ulong)PagesPushed}, already there {(ulong)AlreadyThere}, never touched {(ulong)PagesNeverTouched} (zero-filled on demand {(ulong)PagesZeroFilled}), fault requests {(ulong)Requests}, time to resume {resumeUs} us");
            if (Error != null)
                Log.Error($"postcopy: the move failed: {Error}");
            else if (Volatile.Read(ref _targetEnded) != 0)
                Log.Info($"postcopy: vm {(ulong)Target!.Id} ended before every page had arrived; the rest was not copied");
            bool ok = Complete && Error == null;
            Volatile.Write(ref s_active, null);     // last: the runner waits for this before it ends the run
            return ok;
        }
    }
}
