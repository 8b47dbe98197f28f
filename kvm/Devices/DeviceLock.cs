using System.Runtime.CompilerServices;
using System.Threading;

namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The VM-wide device lock (docs/locking.md, "VM device lock"): one per
    /// <see cref="PcPlatform"/>, held by a vCPU thread for every call into the VM's devices. A
    /// test-and-test-and-set spin lock built on <see cref="Interlocked"/> and
    /// <see cref="Volatile"/> only (the portable subset: no Monitor, no pause hint), so the same
    /// source runs in the kernel and in the host tests.
    /// </summary>
    /// <remarks>
    /// Contract: every call from a vCPU thread into the platform's devices (port I/O, MMIO
    /// through <see cref="PcPlatform.FindMmio"/>, the local APIC MSRs, <c>Poll</c>,
    /// <c>HasInterruptFor</c>, <c>AcknowledgeInterrupt</c>, <c>NextEventNsFor</c>, <c>IsQuiet</c>,
    /// the NMI/INIT/SIPI takes) and the host console's <see cref="Uart16550.Receive"/> is made with
    /// the lock held. Deliveries into another vCPU's local APIC happen inside such a call, under
    /// the same lock, and so does every <see cref="IVcpuKick.Kick"/>, which must therefore never
    /// take it. Hold it for short, bounded device work only; never recursively; never across a
    /// VM entry or a wait. The holder should not be preempted or interrupted for long (the kernel
    /// takes it with interrupts off), since the other vCPUs of the VM spin meanwhile.
    /// </remarks>
    public sealed class DeviceLock
    {
        private int _state;

        /// <summary>Acquisitions that found the lock taken and had to spin (written by the holder only).</summary>
        public ulong ContendedAcquisitions;

        /// <summary>Acquires the lock, spinning while another thread holds it.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Enter()
        {
            // Acquire: the compare-exchange is a full barrier; it pairs with the release store in
            // Exit, so the previous holder's device writes are visible to us.
            if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
                EnterContended();
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private void EnterContended()
        {
            do
            {
                // Read-only spin: the line stays shared until the holder's Exit writes it.
                while (Volatile.Read(ref _state) != 0)
                {
                }
            }
            while (Interlocked.CompareExchange(ref _state, 1, 0) != 0);
            ContendedAcquisitions++;
        }

        /// <summary>Acquires the lock if it is free (true); never spins.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public bool TryEnter() => Interlocked.CompareExchange(ref _state, 1, 0) == 0;

        /// <summary>Releases the lock. Releasing a free lock is a bug (it throws).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Exit()
        {
            if (Volatile.Read(ref _state) == 0)
                throw new System.InvalidOperationException("DeviceLock: released while not held");
            // Release: pairs with the compare-exchange of the next Enter/TryEnter.
            Volatile.Write(ref _state, 0);
        }

        /// <summary>True while some thread holds the lock (for assertions only: it does not say which).</summary>
        public bool IsHeld => Volatile.Read(ref _state) != 0;
    }
}
