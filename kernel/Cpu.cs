using System.Threading;
using Tandem.Arch.X86;

namespace Tandem.Kernel
{
    /// <summary>Per-CPU state, in kernel-heap memory that never moves.</summary>
    public unsafe struct PerCpu
    {
        public int Index;
        public uint ApicId;
        public int Online;
        public ulong TimerTicks;
        public ulong StackTop;
        public Gdt Gdt;
        public Tss Tss;

        // The call-function mailbox (see Smp.RunOn). Pending is written last by the sender and
        // cleared last by the receiver.
        public delegate*<ulong, void> CallFunction;
        public ulong CallArgument;
        public int CallPending;
        public int CallLock;
        public int CallsCompleted;

        // The scheduler's per-CPU state (kernel/Sched/Scheduler.cs; docs/scheduler.md). The queue,
        // its length and the sleeper list are under QueueLock; Current and Idle change only on this
        // CPU with interrupts off.
        public Sched.KThread* Current;
        public Sched.KThread* Idle;
        public Sync.SpinLock QueueLock;
        public Sched.KThread* QueueHead;
        public Sched.KThread* QueueTail;
        public int QueueLength;
        public Sched.KThread* Sleepers;
        /// <summary>A dead thread whose stack the next thread on this CPU frees.</summary>
        public Sched.KThread* ToFree;
        /// <summary>TSC of the next periodic tick, of the one-shot the LAPIC timer is armed for, and of the current thread's switch-in.</summary>
        public ulong NextTickTsc, ArmedTsc, QuantumStart;
        /// <summary>When a thread that woke may take this CPU from the current one (0: none waits); the timer is armed for it.</summary>
        public ulong PreemptAtTsc;
        // The watchdog's spin tracking (Watchdog.SpinStep): this CPU's current spin-wait.
        public ulong SpinLastTsc, SpinStartTsc;
        public int SpinReported;
        public ulong ContextSwitches, Steals;
    }

    /// <summary>Finds the current CPU's <see cref="PerCpu"/> from its LAPIC id.</summary>
    public static unsafe class Cpu
    {
        public const int MaxCpus = 64;

        private static PerCpu** s_cpus;
        private static byte* s_apicToIndex;
        private static int s_count;

        public static int Count => Volatile.Read(ref s_count);

        public static void Initialize()
        {
            s_cpus = (PerCpu**)Memory.KernelHeap.Alloc((ulong)(sizeof(PerCpu*) * MaxCpus));
            s_apicToIndex = (byte*)Memory.KernelHeap.Alloc(256);
            for (int i = 0; i < 256; i++)
                s_apicToIndex[i] = 0xFF;
        }

        /// <summary>Registers a CPU by APIC id; returns its per-CPU block (the BSP is index 0).</summary>
        public static PerCpu* Add(uint apicId)
        {
            int index = s_count;
            if (index >= MaxCpus || apicId > 255)
                return null;
            PerCpu* cpu = (PerCpu*)Memory.KernelHeap.Alloc((ulong)sizeof(PerCpu));
            cpu->Index = index;
            cpu->ApicId = apicId;
            s_cpus[index] = cpu;
            s_apicToIndex[apicId] = (byte)index;
            Volatile.Write(ref s_count, index + 1);
            return cpu;
        }

        public static PerCpu* Get(int index) => s_cpus[index];

        /// <summary>The current CPU's index (0 before the APIC is known).</summary>
        public static int CurrentIndex
        {
            get
            {
                if (s_apicToIndex == null || !Smp.ApicReady)
                    return 0;
                byte index = s_apicToIndex[Lapic.CurrentId];
                return index == 0xFF ? 0 : index;
            }
        }

        public static PerCpu* Current => s_cpus == null ? null : s_cpus[CurrentIndex];
    }
}
