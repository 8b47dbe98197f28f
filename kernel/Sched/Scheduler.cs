using System.Runtime.InteropServices;
using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;

namespace Tandem.Kernel.Sched
{
    /// <summary>
    /// Kernel threads on per-CPU run queues, round robin, preempted by the LAPIC timer; blocking with
    /// an optional deadline, wake-ups with a reschedule IPI, kicks, pinning, and idle CPUs that
    /// steal queued threads. docs/scheduler.md has the design; the rules:
    /// <list type="bullet">
    /// <item>Every switch happens with interrupts off, on the CPU's own Current. A thread runs on at
    /// most one CPU: a CPU resumes a thread only after its OnCpu is 0 (its stack saved).</item>
    /// <item>Blocked to Runnable only by a waker's CAS; every other state change is made by the
    /// thread itself (or by the CPU switching it).</item>
    /// <item>The timer preempts only threads with PreemptCount 0. Kernel spin locks disable
    /// interrupts, so no thread is preempted holding one; a host thread that takes the mm core's
    /// locks (which do not) must call <see cref="PreemptDisable"/> first.</item>
    /// </list>
    /// </summary>
    public static unsafe class Scheduler
    {
        /// <summary>The reschedule IPI: wakes an idle CPU, and forces a CPU out of guest mode (a kick).</summary>
        public const byte RescheduleVector = 0xF1;

        /// <summary>A thread runs at least this long before the timer hands its CPU to a queued one.</summary>
        public const ulong QuantumMs = 10;

        private const ulong DefaultStackPages = 16;

        public static bool Started;
        private static int s_nextId;
        /// <summary>How long the current thread runs before a thread that woke may take its CPU.</summary>
        public const ulong GranularityUs = 1000;

        private static ulong s_quantumTsc, s_tickTsc, s_granularityTsc;

        /// <summary>The thread this CPU runs now (null before the scheduler started).</summary>
        public static KThread* Current
        {
            get
            {
                PerCpu* cpu = Cpu.Current;
                return cpu == null ? null : cpu->Current;
            }
        }

        /// <summary>On the BSP, interrupts off: the boot context becomes the thread "main" (pinned to CPU 0), and CPU 0 gets its idle thread.</summary>
        public static void Initialize()
        {
            s_tickTsc = Timer.TscPerSecond / Timer.Hz;
            s_quantumTsc = Timer.TscPerSecond / 1000 * QuantumMs;
            s_granularityTsc = Timer.TscPerSecond / 1_000_000 * GranularityUs;
            PerCpu* cpu = Cpu.Get(0);
            KThread* main = Adopt("main", 1UL);
            cpu->Current = main;
            cpu->Idle = Create("idle0", &IdleEntry, 0, 1UL, 4);
            cpu->Idle->State = ThreadState.Running;   // never queued: picked when nothing else is
            Volatile.Write(ref Started, true);
            StartTimer(cpu);
        }

        /// <summary>On an AP once <see cref="Started"/> is set: its boot context becomes its idle thread. Never returns.</summary>
        public static void RunIdleOnAp()
        {
            Native.Cli();
            PerCpu* cpu = Cpu.Current;
            KThread* idle = Adopt("idle", 1UL << cpu->Index);
            cpu->Idle = idle;
            cpu->Current = idle;
            StartTimer(cpu);
            IdleLoop();
        }

        private static KThread* Adopt(string name, ulong allowed)
        {
            KThread* t = NewThread(name, allowed);
            t->OnCpu = 1;
            t->State = ThreadState.Running;
            t->Cpu = Cpu.CurrentIndex;
            return t;
        }

        private static KThread* NewThread(string name, ulong allowed)
        {
            KThread* t = (KThread*)KernelHeap.Alloc((ulong)sizeof(KThread));
            if (t == null)
                Panic.Fail("out of memory for a thread");
            t->Id = Interlocked.Increment(ref s_nextId);
            t->Allowed = allowed == 0 ? ~0UL : allowed;
            t->SleepCpu = -1;
            for (int i = 0; i < name.Length && i < 23; i++)
                t->Name[i] = (byte)name[i];
            return t;
        }

        private static KThread* Create(string name, delegate*<ulong, void> entry, ulong argument, ulong allowed, ulong stackPages)
        {
            KThread* t = NewThread(name, allowed);
            ulong stack = FrameAllocator.AllocateContiguous(stackPages);
            if (stack == 0)
                return null;
            t->StackBase = stack;
            t->StackPages = stackPages;
            t->Entry = entry;
            t->Argument = argument;
            // tandem_switch pops r15, r14, r13, r12, rbx, rbp and returns: into ThreadStart, with
            // rsp = top - 8 as if ThreadStart had been called from a 16-byte aligned frame.
            ulong* top = (ulong*)(stack + stackPages * 4096);
            top[-1] = 0;
            top[-2] = (ulong)(delegate* unmanaged<void>)&ThreadStart;
            for (int i = 3; i <= 8; i++)
                top[-i] = 0;
            t->Rsp = (ulong)(top - 8);
            t->State = ThreadState.Runnable;
            return t;
        }

        /// <summary>
        /// Starts <paramref name="entry"/>(<paramref name="argument"/>) on a new thread that may run on
        /// the CPUs of <paramref name="allowed"/> (0: any). Returns null when out of memory.
        /// </summary>
        public static KThread* Spawn(string name, delegate*<ulong, void> entry, ulong argument, ulong allowed = 0, ulong stackPages = DefaultStackPages)
        {
            KThread* t = Create(name, entry, argument, allowed & OnlineMask(), stackPages);
            if (t == null)
                return null;
            t->Cpu = ChooseCpu(t);
            Enqueue(t->Cpu, t, wake: true);
            return t;
        }

        [UnmanagedCallersOnly]
        private static void ThreadStart()
        {
            AfterSwitch();
            Native.Sti();
            KThread* me = Current;
            me->Entry(me->Argument);
            Exit();
        }

        /// <summary>Ends the current thread (also what returning from its entry function does).</summary>
        public static void Exit()
        {
            Native.Cli();
            PerCpu* cpu = Cpu.Current;
            KThread* me = cpu->Current;
            Volatile.Write(ref me->Finished, 1);
            me->State = ThreadState.Dead;
            cpu->ToFree = me;
            Schedule(cpu);
            Panic.Fail("a dead thread was resumed");
        }

        /// <summary>Gives the CPU to a queued thread, if there is one.</summary>
        public static void Yield()
        {
            ulong flags = Native.ReadRflags();
            Native.Cli();
            Schedule(Cpu.Current);
            if ((flags & 0x200) != 0)
                Native.Sti();
        }

        public static void PreemptDisable() => Current->PreemptCount++;

        /// <summary>
        /// An mm spin lock was taken (mm/Sync/ILockPlatform.cs): as <see cref="PreemptDisable"/>,
        /// also before the scheduler runs (no thread yet: nothing to count).
        /// </summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public static void LockTaken()
        {
            KThread* me = Current;
            if (me != null)
                me->PreemptCount++;
        }

        /// <summary>The mm spin lock of <see cref="LockTaken"/> was released.</summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public static void LockReleased()
        {
            KThread* me = Current;
            if (me != null)
                me->PreemptCount--;
        }

        public static void PreemptEnable() => Current->PreemptCount--;

        /// <summary>
        /// Sleeps until <see cref="Wake"/> is called for this thread (or was, since the last Block), or
        /// until the TSC reaches <paramref name="deadlineTsc"/> (0: no deadline). Returns true when a
        /// wake-up ended it. Callers re-check their condition: wake-ups may be spurious.
        /// </summary>
        public static bool Block(ulong deadlineTsc = 0)
        {
            ulong flags = Native.ReadRflags();
            Native.Cli();
            PerCpu* cpu = Cpu.Current;
            KThread* me = cpu->Current;
            bool woken;
            if (Interlocked.Exchange(ref me->WakeToken, 0) != 0)
            {
                woken = true;
            }
            else if (deadlineTsc != 0 && Native.Rdtsc() >= deadlineTsc)
            {
                woken = false;
            }
            else
            {
                if (deadlineTsc != 0)
                    AddSleeper(cpu, me, deadlineTsc);
                // Dekker with Wake: we publish Blocked, then look at the token; the waker publishes
                // the token, then looks at the state (both Interlocked: full barriers). One of us sees
                // the other.
                // The same with the timer: it takes us off its list (SleepCpu -1), then CASes our state.
                Interlocked.Exchange(ref me->State, ThreadState.Blocked);
                bool already = Volatile.Read(ref me->WakeToken) != 0 || (deadlineTsc != 0 && Volatile.Read(ref me->SleepCpu) < 0);
                if (!already || Interlocked.CompareExchange(ref me->State, ThreadState.Running, ThreadState.Blocked) != ThreadState.Blocked)
                {
                    // Blocked (or already made Runnable and queued by a waker: then Schedule just
                    // passes through the queue and we come back soon).
                    Schedule(cpu);
                }
                RemoveSleeper(me);
                woken = Interlocked.Exchange(ref me->WakeToken, 0) != 0;
            }
            if ((flags & 0x200) != 0)
                Native.Sti();
            return woken;
        }

        /// <summary>Wakes <paramref name="t"/> if it is blocked, or makes its next <see cref="Block"/> return at once.</summary>
        public static void Wake(KThread* t)
        {
            Interlocked.Exchange(ref t->WakeToken, 1);
            MakeRunnable(t);
        }

        /// <summary>Blocked to Runnable (a CAS: one waker wins) and onto a run queue.</summary>
        private static void MakeRunnable(KThread* t)
        {
            if (Interlocked.CompareExchange(ref t->State, ThreadState.Runnable, ThreadState.Blocked) != ThreadState.Blocked)
                return;
            int target = ChooseCpu(t);
            Enqueue(target, t, wake: true);
        }

        /// <summary>
        /// Forces <paramref name="t"/>'s CPU through the interrupt path (a running vCPU leaves guest
        /// mode) when it runs on another CPU now.
        /// </summary>
        public static void Kick(KThread* t)
        {
            int cpu = Volatile.Read(ref t->Cpu);
            if (Volatile.Read(ref t->State) == ThreadState.Running && cpu != Cpu.CurrentIndex)
                Lapic.SendIpi(Cpu.Get(cpu)->ApicId, RescheduleVector);
        }

        /// <summary>Sends the reschedule IPI to CPU <paramref name="index"/>.</summary>
        public static void Kick(int index)
        {
            if (index != Cpu.CurrentIndex)
                Lapic.SendIpi(Cpu.Get(index)->ApicId, RescheduleVector);
        }

        /// <summary>
        /// Lets <paramref name="t"/> run only on the CPUs of <paramref name="allowed"/> (0: any). A
        /// thread running elsewhere leaves its CPU at that CPU's next interrupt (a reschedule IPI is sent).
        /// </summary>
        public static void SetAffinity(KThread* t, ulong allowed)
        {
            ulong mask = allowed & OnlineMask();
            Volatile.Write(ref t->Allowed, mask == 0 ? ~0UL : mask);
            int cpu = Volatile.Read(ref t->Cpu);
            if (Volatile.Read(ref t->State) == ThreadState.Running)
            {
                if (cpu == Cpu.CurrentIndex)
                    Yield();
                else
                    Kick(cpu);
            }
        }

        private static ulong OnlineMask()
        {
            ulong mask = 0;
            for (int i = 0; i < Cpu.Count; i++)
            {
                if (Volatile.Read(ref Cpu.Get(i)->Online) != 0)
                    mask |= 1UL << i;
            }
            return mask;
        }

        private static bool IsIdle(PerCpu* c) => c->Current == c->Idle && Volatile.Read(ref c->QueueLength) == 0;

        /// <summary>The thread's last CPU if it is idle, else an idle CPU it may use, else its last CPU, else its first allowed CPU.</summary>
        private static int ChooseCpu(KThread* t)
        {
            ulong allowed = t->Allowed & OnlineMask();
            if (allowed == 0)
                allowed = 1;
            int last = t->Cpu;
            if ((allowed & (1UL << last)) != 0 && IsIdle(Cpu.Get(last)))
                return last;
            for (int i = 0; i < Cpu.Count; i++)
            {
                if ((allowed & (1UL << i)) != 0 && IsIdle(Cpu.Get(i)))
                    return i;
            }
            if ((allowed & (1UL << last)) != 0)
                return last;
            for (int i = 0; i < Cpu.Count; i++)
            {
                if ((allowed & (1UL << i)) != 0)
                    return i;
            }
            return 0;
        }

        /// <summary>
        /// Queues <paramref name="t"/> on CPU <paramref name="index"/>: at the tail, or at the head for a
        /// thread that just woke (<paramref name="wake"/>), and then that CPU gets a reschedule IPI so it
        /// runs it soon (<see cref="OnReschedule"/>).
        /// </summary>
        private static void Enqueue(int index, KThread* t, bool wake)
        {
            PerCpu* c = Cpu.Get(index);
            ulong flags = c->QueueLock.Acquire();
            t->Cpu = index;
            if (wake)
            {
                t->Next = c->QueueHead;
                c->QueueHead = t;
                if (c->QueueTail == null)
                    c->QueueTail = t;
            }
            else
            {
                t->Next = null;
                if (c->QueueTail == null)
                    c->QueueHead = t;
                else
                    c->QueueTail->Next = t;
                c->QueueTail = t;
            }
            Volatile.Write(ref c->QueueLength, c->QueueLength + 1);
            c->QueueLock.Release(flags);
            if (wake && index != Cpu.CurrentIndex)
                Lapic.SendIpi(c->ApicId, RescheduleVector);
        }

        /// <summary>The first thread of <paramref name="c"/>'s queue that may run on CPU <paramref name="on"/>, unlinked.</summary>
        private static KThread* Dequeue(PerCpu* c, int on)
        {
            if (Volatile.Read(ref c->QueueLength) == 0)
                return null;
            ulong flags = c->QueueLock.Acquire();
            KThread* previous = null;
            KThread* t = c->QueueHead;
            KThread* self = Cpu.Get(on)->Current;
            // A thread whose stack is still being saved on another CPU (OnCpu 1: preempted or
            // blocking there this instant) is left for later: waiting for it here could wait on a
            // CPU that waits for us. The idle loop polls while such a thread is queued.
            while (t != null && ((t->Allowed & (1UL << on)) == 0 || (Volatile.Read(ref t->OnCpu) != 0 && t != self)))
            {
                previous = t;
                t = t->Next;
            }
            if (t != null)
            {
                if (previous == null)
                    c->QueueHead = t->Next;
                else
                    previous->Next = t->Next;
                if (c->QueueTail == t)
                    c->QueueTail = previous;
                t->Next = null;
                Volatile.Write(ref c->QueueLength, c->QueueLength - 1);
            }
            c->QueueLock.Release(flags);
            return t;
        }

        /// <summary>This CPU's next thread: its own queue first, then another CPU's (the thread moves here).</summary>
        private static KThread* PickNext(PerCpu* cpu)
        {
            KThread* t = Dequeue(cpu, cpu->Index);
            if (t != null)
                return t;
            for (int i = 1; i < Cpu.Count; i++)
            {
                PerCpu* other = Cpu.Get((cpu->Index + i) % Cpu.Count);
                t = Dequeue(other, cpu->Index);
                if (t != null)
                {
                    cpu->Steals++;
                    return t;
                }
            }
            return null;
        }

        /// <summary>Switches to the next thread if there is one (or to idle when the current one stopped running). Interrupts off.</summary>
        private static void Schedule(PerCpu* cpu)
        {
            KThread* prev = cpu->Current;
            KThread* next = PickNext(cpu);
            if (next == null)
            {
                if (prev->State == ThreadState.Running && (prev->Allowed & (1UL << cpu->Index)) != 0)
                    return;
                next = cpu->Idle;
            }
            if (next == prev)
            {
                // A waker queued us while we were blocking, and we took ourselves off the queue.
                prev->State = ThreadState.Running;
                return;
            }
            if (prev->State == ThreadState.Running && prev != cpu->Idle)
            {
                prev->State = ThreadState.Runnable;
                if ((prev->Allowed & (1UL << cpu->Index)) != 0)
                    Enqueue(cpu->Index, prev, wake: false);
                else
                    Enqueue(ChooseCpu(prev), prev, wake: true);     // its affinity changed: it moves
            }
            // Dequeue took it with OnCpu 0 (its stack saved), and only this CPU can run it now.
            next->OnCpu = 1;
            if (next != cpu->Idle)
                next->State = ThreadState.Running;
            if (next->Cpu != cpu->Index)
                next->Migrations++;
            Volatile.Write(ref next->Cpu, cpu->Index);
            next->Switches++;
            cpu->Current = next;
            cpu->QuantumStart = Native.Rdtsc();
            cpu->PreemptAtTsc = 0;
            cpu->ContextSwitches++;
            Native.Switch(&prev->Rsp, next->Rsp, &prev->OnCpu);
            AfterSwitch();
        }

        /// <summary>Runs on the thread just switched in: frees a dead thread's stack, calls the switch-in hook.</summary>
        private static void AfterSwitch()
        {
            PerCpu* cpu = Cpu.Current;
            KThread* dead = cpu->ToFree;
            if (dead != null)
            {
                cpu->ToFree = null;
                if (dead->StackBase != 0)
                    FrameAllocator.FreeContiguous(dead->StackBase, dead->StackPages);
                dead->StackBase = 0;
            }
            KThread* me = cpu->Current;
            if (me->SwitchIn != null)
                me->SwitchIn(me->SwitchInArgument);
        }

        private static void IdleEntry(ulong unused) => IdleLoop();

        private static void IdleLoop()
        {
            while (true)
            {
                Native.Cli();
                PerCpu* cpu = Cpu.Current;
                Schedule(cpu);
                if (QueuedFor(cpu->Index))
                {
                    // A queued thread is still leaving another CPU: take it in a moment.
                    Native.Sti();
                    Native.Pause();
                    continue;
                }
                // sti; hlt: an interrupt (the tick, a reschedule IPI) cannot slip in between.
                Native.StiHlt();
            }
        }

        // ---- The timer: a periodic tick for preemption, plus the deadlines of sleeping threads ----

        private static void StartTimer(PerCpu* cpu)
        {
            cpu->NextTickTsc = Native.Rdtsc() + s_tickTsc;
            Arm(cpu);
        }

        /// <summary>Programs the LAPIC one-shot for the earlier of the next tick and the first sleeper's deadline.</summary>
        private static void Arm(PerCpu* cpu)
        {
            ulong when = cpu->NextTickTsc;
            if (cpu->PreemptAtTsc != 0 && cpu->PreemptAtTsc < when)
                when = cpu->PreemptAtTsc;
            for (KThread* s = cpu->Sleepers; s != null; s = s->NextSleeper)
            {
                if (s->SleepUntil < when)
                    when = s->SleepUntil;
            }
            cpu->ArmedTsc = when;
            ulong now = Native.Rdtsc();
            ulong delta = when > now ? when - now : 0;
            if (delta > s_tickTsc)
                delta = s_tickTsc;
            ulong counts = delta * Timer.LapicTicksPerSecond / Timer.TscPerSecond;
            Lapic.ArmOneShot(Interrupts.TimerVector, counts > 0xFFFF_FFFF ? 0xFFFF_FFFF : (uint)counts);
        }

        private static void AddSleeper(PerCpu* cpu, KThread* t, ulong deadline)
        {
            ulong flags = cpu->QueueLock.Acquire();
            t->SleepUntil = deadline;
            t->SleepCpu = cpu->Index;
            t->NextSleeper = cpu->Sleepers;
            cpu->Sleepers = t;
            if (deadline < cpu->ArmedTsc)
                Arm(cpu);
            cpu->QueueLock.Release(flags);
        }

        private static void RemoveSleeper(KThread* t)
        {
            int index = Volatile.Read(ref t->SleepCpu);
            if (index < 0)
                return;
            PerCpu* c = Cpu.Get(index);
            ulong flags = c->QueueLock.Acquire();
            if (t->SleepCpu == index)
            {
                KThread** link = &c->Sleepers;
                while (*link != null && *link != t)
                    link = &(*link)->NextSleeper;
                if (*link == t)
                    *link = t->NextSleeper;
                t->NextSleeper = null;
                t->SleepCpu = -1;
            }
            c->QueueLock.Release(flags);
        }

        /// <summary>The timer interrupt (after EOI): counts ticks, wakes expired sleepers, re-arms, preempts.</summary>
        internal static void OnTimer()
        {
            PerCpu* cpu = Cpu.Current;
            if (cpu == null)
                return;
            if (cpu->Idle == null)
            {
                cpu->TimerTicks++;          // before the scheduler runs here: the boot-time periodic tick
                return;
            }
            ulong now = Native.Rdtsc();
            if (now >= cpu->NextTickTsc)
            {
                cpu->TimerTicks++;
                cpu->NextTickTsc += s_tickTsc;
                if (cpu->NextTickTsc <= now)
                    cpu->NextTickTsc = now + s_tickTsc;
                Watchdog.OnTick(cpu);
            }
            // Expired sleepers are collected in a local array, never through their NextSleeper link:
            // once off the list and unlocked, a thread that was woken otherwise may already be
            // sleeping again on another CPU's list through that same link.
            const int MaxExpired = 16;
            KThread** expired = stackalloc KThread*[MaxExpired];
            int count = 0;
            ulong flags = cpu->QueueLock.Acquire();
            if (cpu->PreemptAtTsc != 0 && now >= cpu->PreemptAtTsc)
                cpu->PreemptAtTsc = 0;      // due: PreemptForWaker below decides
            KThread** link = &cpu->Sleepers;
            while (*link != null)
            {
                KThread* s = *link;
                if (s->SleepUntil <= now && count < MaxExpired)
                {
                    *link = s->NextSleeper;
                    s->NextSleeper = null;
                    Volatile.Write(ref s->SleepCpu, -1);
                    expired[count++] = s;
                }
                else
                {
                    link = &s->NextSleeper;
                }
            }
            Arm(cpu);                 // more than MaxExpired: the rest are due, so it fires again at once
            cpu->QueueLock.Release(flags);
            for (int i = 0; i < count; i++)
                MakeRunnable(expired[i]);      // a deadline, not a wake-up: no token
            KThread* current = cpu->Current;
            if (current != cpu->Idle && current->PreemptCount == 0 && now - cpu->QuantumStart >= s_quantumTsc && HasWork(cpu))
            {
                current->Preemptions++;
                Schedule(cpu);
            }
            else
            {
                PreemptForWaker(cpu, now);
            }
        }

        /// <summary>Some queue holds a thread that may run on CPU <paramref name="index"/> (a hint: no lock).</summary>
        private static bool QueuedFor(int index)
        {
            for (int i = 0; i < Cpu.Count; i++)
            {
                PerCpu* c = Cpu.Get(i);
                if (Volatile.Read(ref c->QueueLength) == 0)
                    continue;
                ulong flags = c->QueueLock.Acquire();
                bool found = false;
                for (KThread* t = c->QueueHead; t != null && !found; t = t->Next)
                    found = (t->Allowed & (1UL << index)) != 0;
                c->QueueLock.Release(flags);
                if (found)
                    return true;
            }
            return false;
        }

        /// <summary>A thread waits on this CPU's queue, or on another CPU's that is busy.</summary>
        private static bool HasWork(PerCpu* cpu)
        {
            if (Volatile.Read(ref cpu->QueueLength) != 0)
                return true;
            for (int i = 0; i < Cpu.Count; i++)
            {
                PerCpu* other = Cpu.Get(i);
                if (other != cpu && Volatile.Read(ref other->QueueLength) != 0 && other->Current != other->Idle)
                    return true;
            }
            return false;
        }

        /// <summary>The reschedule IPI (after EOI): an idle CPU looks at the queues when the handler returns into its loop.</summary>
        internal static void OnReschedule()
        {
            PerCpu* cpu = Cpu.Current;
            if (cpu == null || cpu->Idle == null)
                return;
            KThread* current = cpu->Current;
            if (current != cpu->Idle && current->PreemptCount == 0 && (Volatile.Read(ref current->Allowed) & (1UL << cpu->Index)) == 0)
            {
                Schedule(cpu);                // SetAffinity took this CPU away from it
                return;
            }
            PreemptForWaker(cpu, Native.Rdtsc());
        }

        /// <summary>
        /// A thread that woke waits at the head of this CPU's queue: it takes the CPU once the current
        /// thread has run <see cref="GranularityUs"/> (a sleeper that wakes gets its turn soon,
        /// without letting two wakers bounce a CPU between them at every wake-up). Before that point
        /// the timer is armed for it: the next tick may be a whole tick away, and a sleeper whose
        /// period is the tick's woke just after each quantum start and waited a tick every time.
        /// </summary>
        private static void PreemptForWaker(PerCpu* cpu, ulong now)
        {
            KThread* current = cpu->Current;
            if (current == cpu->Idle || current->PreemptCount != 0 || Volatile.Read(ref cpu->QueueLength) == 0)
                return;
            if (now - cpu->QuantumStart >= s_granularityTsc)
            {
                current->Preemptions++;
                Schedule(cpu);
                return;
            }
            ulong at = cpu->QuantumStart + s_granularityTsc;
            if (cpu->PreemptAtTsc == at)
                return;
            ulong flags = cpu->QueueLock.Acquire();     // Arm reads the sleeper list
            cpu->PreemptAtTsc = at;
            if (at < cpu->ArmedTsc)
                Arm(cpu);
            cpu->QueueLock.Release(flags);
        }

        /// <summary>One line per CPU: context switches, steals, queue length.</summary>
        public static void Report()
        {
            for (int i = 0; i < Cpu.Count; i++)
            {
                PerCpu* c = Cpu.Get(i);
                int sleepers = 0;
                for (KThread* t = c->Sleepers; t != null && sleepers < 100; t = t->NextSleeper)
                    sleepers++;
                ulong now = Native.Rdtsc();
                ulong armed = c->ArmedTsc;
                ulong d = armed >= now ? armed - now : now - armed;
                Log.Info($"sched: cpu {(ulong)i} switches {c->ContextSwitches} steals {c->Steals} queued {(ulong)c->QueueLength} running {Ascii.Span(c->Current->Name, 24)} ticks {c->TimerTicks} sleepers {(ulong)sleepers} {(armed >= now ? "timer due in us" : "timer overdue by us")} {d / (Timer.TscPerSecond / 1_000_000)}");
            }
        }
    }
}
