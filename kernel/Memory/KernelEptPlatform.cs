using Tandem.Arch.X86;
using Tandem.Kvm.Ept;
using Tandem.Mm;

namespace Tandem.Kernel.Memory
{
    /// <summary>
    /// The EPT shadow's platform in the kernel: table pages from the frame allocator (identity
    /// mapped), INVEPT on this CPU, and a call-function IPI that runs INVEPT on the others.
    /// </summary>
    public unsafe struct KernelEptPlatform : IEptPlatform
    {
        public static long Invepts;

        /// <summary>INVEPTs each CPU ran at another CPU's request (a shootdown), by CPU index.</summary>
        public static readonly long[] RemoteInveptsOn = new long[Cpu.MaxCpus];

        public bool AllocateTable(out PhysAddr address, out ulong* entries)
        {
            ulong page = FrameAllocator.Allocate();
            address = new PhysAddr(page);
            entries = (ulong*)page;
            if (page == 0)
                return false;
            Native.MemSet(entries, 0, 4096);
            return true;
        }

        public ulong* TableAt(PhysAddr address) => (ulong*)address.Value;

        /// <summary>
        /// Called by EptMmu after its grace period and the INVEPT on every CPU of its mask: no
        /// lockless walker and no hardware walk can still reach the page.
        /// </summary>
        public void FreeTable(PhysAddr address) => FrameAllocator.Free(address.Value);

        public void InvEptSingleContext(ulong eptPointer) => InvEptLocal(eptPointer);

        private static void InvEptLocal(ulong eptPointer)
        {
            ulong* descriptor = stackalloc ulong[2];
            descriptor[0] = eptPointer;
            descriptor[1] = 0;
            Native.InvEpt(1, descriptor);
            System.Threading.Interlocked.Increment(ref Invepts);
        }

        private static void InvEptForRemote(ulong eptPointer)
        {
            InvEptLocal(eptPointer);
            System.Threading.Interlocked.Increment(ref RemoteInveptsOn[Cpu.CurrentIndex]);
        }

        public void FlushRemote(ulong eptPointer, ulong cpuMask)
        {
            for (int cpu = 0; cpu < Cpu.Count; cpu++)
            {
                if ((cpuMask & (1UL << cpu)) != 0 && cpu != Cpu.CurrentIndex)
                {
                    // The caller frees the zapped frames once this returns: a CPU that did not
                    // run its INVEPT might still use them. Never ignored.
                    if (!Smp.RunOn(cpu, &InvEptForRemote, eptPointer))
                        Panic.Fail("EPT shootdown: a CPU in the EPT's mask did not acknowledge INVEPT");
                }
            }
        }

        public int CurrentCpu => Cpu.CurrentIndex;

        /// <summary>
        /// A spin-wait step. It also runs a call-function request sent to this CPU: a vCPU spins here
        /// with interrupts off, and the lock's holder may be waiting for this CPU's INVEPT (or
        /// VMCLEAR) before it lets go.
        /// </summary>
        public void SpinPause() => Smp.ServeWhileSpinning();

        /// <summary>An mm lock is taken: the current thread is not preempted until it is released (mm/Sync/ILockPlatform.cs).</summary>
        public void PreemptDisable() => Sched.Scheduler.LockTaken();

        public void PreemptEnable() => Sched.Scheduler.LockReleased();

        public void Checkpoint(MmCheckpoint site) { }
    }
}
