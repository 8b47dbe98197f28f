using System.Threading;
using Tandem.Arch.X86;
using Tandem.Mm;

namespace Tandem.Kernel.Memory
{
    /// <summary>
    /// The mm core's platform in the kernel: physical memory through the identity map, TLB flushes
    /// by INVLPG or a CR3 reload locally and by a call-function IPI on every other CPU in the mask
    /// (one shootdown per operation), PAUSE for spinning.
    /// </summary>
    public unsafe struct KernelMmPlatform : IMmPlatform
    {
        /// <summary>Remote shootdowns sent (IPIs to other CPUs), for tests and statistics.</summary>
        public static long Shootdowns;
        public static long LocalFlushes;

        public byte* PhysToVirt(PhysAddr address) => (byte*)address.Value;

        public int CurrentCpu => Cpu.CurrentIndex;

        public int CpuCount => Cpu.Count;

        public void FlushTlb(in TlbFlushRequest request)
        {
            int self = Cpu.CurrentIndex;
            if ((request.CpuMask & (1UL << self)) != 0)
                FlushLocal(request.Root.Value, request.Start.Value, request.End.Value);
            ulong others = request.CpuMask & ~(1UL << self);
            if (others == 0)
                return;
            FlushArguments args;
            args.Root = request.Root.Value;
            args.Start = request.Start.Value;
            args.End = request.End.Value;
            for (int cpu = 0; cpu < Cpu.Count; cpu++)
            {
                if ((others & (1UL << cpu)) == 0)
                    continue;
                // RunOn waits until the target has run the flush: the acknowledgement FlushTlb promises.
                // A shootdown that cannot complete would let the caller free a page that CPU
                // still translates: never ignored.
                if (!Smp.RunOn(cpu, &RemoteFlush, (ulong)&args))
                    Panic.Fail("TLB shootdown: a CPU in the address space's mask did not acknowledge the flush");
                Interlocked.Increment(ref Shootdowns);
            }
        }

        private struct FlushArguments
        {
            public ulong Root, Start, End;
        }

        private static void RemoteFlush(ulong argument)
        {
            FlushArguments* args = (FlushArguments*)argument;
            FlushLocal(args->Root, args->Start, args->End);
        }

        private static void FlushLocal(ulong root, ulong start, ulong end)
        {
            Interlocked.Increment(ref LocalFlushes);
            // Without PCIDs a CPU caches only the loaded address space's translations.
            if ((Native.ReadCr3() & ~0xFFFUL) != root)
                return;
            if (end - start > 64 * 4096)
            {
                Native.WriteCr3(Native.ReadCr3());
                return;
            }
            for (ulong va = start & ~0xFFFUL; va < end; va += 4096)
                Native.InvLpg(va);
        }

        /// <summary>
        /// A spin-wait step. It also runs a call-function request sent to this CPU: a vCPU spins here
        /// with interrupts off, and the lock's holder may be waiting for this CPU's INVEPT (or
        /// VMCLEAR) before it lets go.
        /// </summary>
        public void SpinPause() => Smp.ServeWhileSpinning();

        /// <summary>An mm lock is taken: the current thread is not preempted until it is released (mm/Sync/ILockPlatform.cs).</summary>
        public void PreemptDisable() => Sched.Scheduler.LockTaken();

        public void PreemptEnable() => Sched.Scheduler.LockReleased();

        /// <summary>
        /// The kernel does not reclaim retired snapshots yet: they stay allocated (each is small and
        /// made only when a region map or notifier list changes). Noted in the closing docs.
        /// </summary>
        public void DeferFree(object retired) { }

        /// <summary>
        /// A fault waiting for a userfault fill (mm/Space/AddressSpace.Userfault.cs; no mm lock is
        /// held): a thread that may sleep blocks in 1 ms naps, so the handler thread can run on this
        /// CPU too (a vCPU thread waiting in an EPT violation included: its switch-in hook makes its
        /// VMCS current again, as after HLT); before the scheduler runs, or with preemption off, it
        /// spins.
        /// </summary>
        public unsafe void WaitForChange(ref int word, int observed)
        {
            while (Volatile.Read(ref word) == observed)
            {
                if (Sched.Scheduler.Started && Sched.Scheduler.Current->PreemptCount == 0)
                    Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 1000);
                else
                    Native.Pause();
            }
        }

        public void FrameFreed(Pfn frame) { }

        public void Checkpoint(MmCheckpoint site) { }
    }
}
