using System.Threading;
using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// Host time stamps (TSC) for the in-kernel SMP benchmarks (kernel/Bench/SmpBench.cs), taken at
    /// the points the figures are split at. A benchmark attaches one to the vCPUs it watches
    /// (<see cref="Vcpu.Bench"/>); it is null otherwise, and then those points pay one null test each:
    /// <see cref="Vm.Kick"/>, the switch-in hook (<see cref="Vcpu.OnSwitchIn"/>), an injection in
    /// <see cref="Events"/>' delivery (only when the entry has work), and the yield hypercall. None of
    /// them is on the per-exit fast path (a CPUID exit passes none).
    /// </summary>
    /// <remarks>
    /// <para><b>IPI round trip</b> (attached to the vCPU that receives the IPIs): a kick stamps the
    /// time and forgets any earlier switch-in; the first switch-in of the vCPU's thread after it
    /// stamps the time the thread runs again; the injection of <see cref="Vector"/> closes the round
    /// and stores the three stamps (kick, switch-in, injection) at index <see cref="Rounds"/>. A round
    /// whose switch-in stamp is 0 had no switch-in between its kick and its injection: the vCPU was not
    /// blocked in HLT when the kick came.</para>
    /// <para><b>Yield</b> (one object attached to every vCPU that yields, all on one CPU, between
    /// <see cref="Start"/> and <see cref="Stop"/>): the guest passes the TSC it read just before its
    /// VMCALL in ESI (low) and EDI (high). At the yield the host adds "exit" (from that TSC to the call
    /// of the scheduler's yield) and, for the vCPU's previous yield, "entry" (from when that yield
    /// returned to the TSC the guest read next, its first instruction after the VMCALL but two). When a
    /// yield returns on another vCPU than the one that called the last yield, "switch" (the scheduler's
    /// switch and the switch-in hook: VMPTRLD, and VMCLEAR on the old CPU when the thread moved) is
    /// added; a yield that came back to its own vCPU counts as <see cref="Unswitched"/>. The
    /// bookkeeping between two stamps of one thread is in no part.</para>
    /// </remarks>
    public sealed unsafe class VcpuBench
    {
        /// <summary>The vector whose injection closes an IPI round (-1: none).</summary>
        public int Vector = -1;

        /// <summary>Per IPI round: the kick, the first switch-in after it (0: none), the injection.</summary>
        public readonly ulong[] KickTsc, SwitchInTsc, InjectTsc;

        /// <summary>IPI rounds recorded.</summary>
        public int Rounds;

        private ulong _kick, _switchIn;

        /// <summary>Yield: sums and sample counts of the three parts, and yields that did not switch.</summary>
        public ulong ExitSum, ExitCount, SwitchSum, SwitchCount, EntrySum, EntryCount, Unswitched;

        private bool _recording;
        private ulong _lastYield;
        private int _lastYielder = -1;
        private readonly ulong[] _back = new ulong[16];

        public VcpuBench(int maxRounds)
        {
            KickTsc = new ulong[maxRounds];
            SwitchInTsc = new ulong[maxRounds];
            InjectTsc = new ulong[maxRounds];
        }

        // ---- IPI round trip ----

        internal void OnKick()
        {
            ulong now = Native.Rdtsc();
            Volatile.Write(ref _switchIn, 0);
            Volatile.Write(ref _kick, now);
        }

        internal void OnSwitchIn()
        {
            ulong now = Native.Rdtsc();
            if (Volatile.Read(ref _kick) != 0 && _switchIn == 0)
                _switchIn = now;
        }

        internal void OnInject(int vector)
        {
            ulong now = Native.Rdtsc();
            if (vector != Vector || Rounds >= InjectTsc.Length)
                return;
            KickTsc[Rounds] = Volatile.Read(ref _kick);
            SwitchInTsc[Rounds] = _switchIn;
            InjectTsc[Rounds] = now;
            Rounds++;
            _kick = 0;
            _switchIn = 0;
        }

        // ---- yield ----

        /// <summary>Clears the yield sums and starts recording (the guest's phase 1).</summary>
        public void Start()
        {
            ExitSum = ExitCount = SwitchSum = SwitchCount = EntrySum = EntryCount = Unswitched = 0;
            _lastYield = 0;
            _lastYielder = -1;
            for (int i = 0; i < _back.Length; i++)
                _back[i] = 0;
            Volatile.Write(ref _recording, true);
        }

        /// <summary>Stops recording (the guest's phase 2).</summary>
        public void Stop() => Volatile.Write(ref _recording, false);

        internal void BeforeYield(Vcpu v)
        {
            ulong now = Native.Rdtsc();
            if (!Volatile.Read(ref _recording))
                return;
            GuestRegisters* r = v.Registers;
            // The guest's RDTSC before its VMCALL, on the host's time line.
            ulong guest = v.HostTscOf((r->Rsi & 0xFFFF_FFFFUL) | (r->Rdi << 32));
            int i = v.Index & 15;
            ulong back = _back[i];
            if (back != 0 && guest > back)
            {
                EntrySum += guest - back;
                EntryCount++;
            }
            if (now > guest)
            {
                ExitSum += now - guest;
                ExitCount++;
            }
            _lastYielder = v.Index;
            _lastYield = Native.Rdtsc();
        }

        internal void AfterYield(Vcpu v)
        {
            ulong now = Native.Rdtsc();
            if (!Volatile.Read(ref _recording))
                return;
            if (_lastYield != 0 && _lastYielder != v.Index)
            {
                SwitchSum += now - _lastYield;
                SwitchCount++;
            }
            else
            {
                Unswitched++;
            }
            _back[v.Index & 15] = Native.Rdtsc();
        }
    }
}
