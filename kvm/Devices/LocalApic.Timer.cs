namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The local APIC timer (SDM 10.5.4): one-shot, periodic and TSC-deadline modes (LVT timer
    /// bits 18:17 = 00, 01, 10), the divide configuration register, the initial and current
    /// counts. Nothing ticks: the timer remembers when it started and how many counts had passed
    /// then, and computes the current count from the clock. <see cref="Poll"/> raises the LVT
    /// timer vector when due; missed periods coalesce into one interrupt, as the single IRR bit
    /// would anyway. A masked timer keeps counting and interrupts nobody.
    /// </summary>
    public sealed partial class LocalApic
    {
        private const ulong NsPerSecond = 1_000_000_000;

        // LVT timer mode, bits 18:17.
        private const uint TimerModeMask = 3u << 17;
        private const uint TimerPeriodic = 1u << 17;
        private const uint TimerTscDeadline = 2u << 17;

        private readonly ulong _timerHz;
        private readonly ulong _tscHz;
        private uint _timerInitial;
        private uint _divide;               // the divide configuration register as written (bits 0, 1, 3)
        private int _divideShift;           // log2 of the divisor
        private ulong _timerStartNs;        // counting (re)started here ...
        private ulong _timerStartCounts;    // ... with this many counts already gone
        private ulong _timerNextCount;      // counts since the load at which the next interrupt is due; MaxValue = none
        private ulong _tscDeadline;         // IA32_TSC_DEADLINE; 0 = disarmed

        /// <summary>
        /// The guest's TSC when the clock reads 0: the guest TSC at clock time t is
        /// <c>TscAtZero + t × tscHz / 10^9</c> (modulo 2^64). The VM sets it from its TSC offset
        /// (and again when the guest writes IA32_TSC).
        /// </summary>
        public ulong TscAtZero;

        /// <summary>Timer interrupts raised into IRR (masked ones not counted).</summary>
        public ulong TimerInterrupts;

        /// <summary>The divisor of the timer's input clock (SDM figure 10-10): bits 3, 1:0 = 000 → 2, 001 → 4, ... 110 → 128, 111 → 1.</summary>
        public static int DivideShift(uint divideConfiguration)
        {
            uint code = ((divideConfiguration >> 1) & 4) | (divideConfiguration & 3);
            return (int)((code + 1) & 7);
        }

        /// <summary>Whole ticks of a <paramref name="hz"/> clock in <paramref name="ns"/> nanoseconds (no overflow below 18 GHz).</summary>
        public static ulong TicksIn(ulong ns, ulong hz) => ns / NsPerSecond * hz + ns % NsPerSecond * hz / NsPerSecond;

        /// <summary>Nanoseconds until tick <paramref name="ticks"/> of a <paramref name="hz"/> clock (rounded up).</summary>
        public static ulong NsFor(ulong ticks, ulong hz) => ticks / hz * NsPerSecond + (ticks % hz * NsPerSecond + hz - 1) / hz;

        private uint TimerMode => _lvt[LvtTimer] & TimerModeMask;

        /// <summary>The guest's TSC now.</summary>
        public ulong GuestTsc => TscAtZero + TicksIn(_clock.NowNs, _tscHz);

        private void ResetTimer()
        {
            _timerInitial = 0;
            _divide = 0;
            _divideShift = DivideShift(0);
            _timerStartNs = 0;
            _timerStartCounts = 0;
            _timerNextCount = ulong.MaxValue;
            _tscDeadline = 0;
        }

        /// <summary>Counts since the initial count was written.</summary>
        private ulong CountsAt(ulong now)
        {
            ulong run = now > _timerStartNs ? TicksIn(now - _timerStartNs, _timerHz) >> _divideShift : 0;
            return _timerStartCounts + run;
        }

        private uint TimerCurrentCount(ulong now)
        {
            if (_timerInitial == 0 || TimerMode == TimerTscDeadline)
                return 0;
            ulong counts = CountsAt(now);
            if (TimerMode == TimerPeriodic)
                return (uint)(_timerInitial - counts % _timerInitial);
            return counts >= _timerInitial ? 0 : (uint)(_timerInitial - counts);
        }

        /// <summary>The next interrupt point strictly after <paramref name="counts"/> in the current mode, or MaxValue.</summary>
        private ulong NextCountAfter(ulong counts)
        {
            if (_timerInitial == 0 || TimerMode == TimerTscDeadline)
                return ulong.MaxValue;
            if (TimerMode == TimerPeriodic)
                return (counts / _timerInitial + 1) * _timerInitial;
            return counts < _timerInitial ? _timerInitial : ulong.MaxValue;
        }

        private void WriteTimerInitial(uint value)
        {
            if (TimerMode == TimerTscDeadline)
                return;                         // ignored in TSC-deadline mode (SDM 10.5.4.1)
            _timerInitial = value;
            _timerStartNs = _clock.NowNs;
            _timerStartCounts = 0;
            _timerNextCount = value == 0 ? ulong.MaxValue : value;
        }

        private void WriteTimerDivide(uint value)
        {
            // A new rate from now on: keep the counts already gone, restart the clock.
            ulong now = _clock.NowNs;
            _timerStartCounts = CountsAt(now);
            _timerStartNs = now;
            _divide = value & 0xB;
            _divideShift = DivideShift(_divide);
        }

        private void WriteLvtTimer(uint value)
        {
            ulong now = _clock.NowNs;
            uint oldMode = TimerMode;
            bool wasMasked = (_lvt[LvtTimer] & LvtMasked) != 0;
            if ((value & TimerModeMask) == TimerModeMask)
                value &= ~TimerModeMask | TimerTscDeadline;   // mode 11 is reserved: taken as TSC-deadline
            _lvt[LvtTimer] = value;
            uint mode = TimerMode;
            if ((oldMode == TimerTscDeadline) != (mode == TimerTscDeadline))
            {
                // Entering or leaving TSC-deadline mode disarms the timer (as KVM does).
                _timerInitial = 0;
                _timerNextCount = ulong.MaxValue;
                _tscDeadline = 0;
                return;
            }
            if (mode != TimerTscDeadline && _timerInitial != 0)
            {
                // One-shot and periodic switch in place; after a masked spell, the periods that
                // passed unseen are dropped, not delivered at the unmask.
                ulong counts = CountsAt(now);
                bool unmasked = wasMasked && (value & LvtMasked) == 0;
                if (unmasked || (oldMode != mode && counts < _timerNextCount))
                    _timerNextCount = NextCountAfter(counts);
            }
            if (mode == TimerTscDeadline && wasMasked && (value & LvtMasked) == 0 && _tscDeadline != 0 && GuestTsc >= _tscDeadline)
                _tscDeadline = 0;               // it expired while masked
        }

        /// <summary>Raises the timer's interrupt if it is due by now (one per call, however many periods passed).</summary>
        public void Poll()
        {
            if (TimerMode == TimerTscDeadline)
            {
                if (_tscDeadline != 0 && GuestTsc >= _tscDeadline)
                {
                    _tscDeadline = 0;           // the timer disarms itself (SDM 10.5.4.1)
                    FireTimer();
                }
                return;
            }
            if (_timerNextCount == ulong.MaxValue)
                return;
            ulong counts = CountsAt(_clock.NowNs);
            if (counts < _timerNextCount)
                return;
            _timerNextCount = NextCountAfter(counts);
            FireTimer();
        }

        private void FireTimer()
        {
            if ((_lvt[LvtTimer] & LvtMasked) != 0)
                return;
            if (Accept((int)(_lvt[LvtTimer] & 0xFF), false))
                TimerInterrupts++;
        }

        /// <summary>
        /// The clock's time of the timer's next interrupt, or <see cref="ulong.MaxValue"/> if none
        /// is armed or the LVT is masked (a masked timer needs no wake-up).
        /// </summary>
        public ulong NextEventNs
        {
            get
            {
                if ((_lvt[LvtTimer] & LvtMasked) != 0)
                    return ulong.MaxValue;
                if (TimerMode == TimerTscDeadline)
                {
                    if (_tscDeadline == 0)
                        return ulong.MaxValue;
                    ulong tscNow = GuestTsc;
                    ulong now = _clock.NowNs;
                    if (tscNow >= _tscDeadline)
                        return now;
                    return now + NsFor(_tscDeadline - tscNow, _tscHz);
                }
                if (_timerNextCount == ulong.MaxValue)
                    return ulong.MaxValue;
                ulong left = _timerNextCount - _timerStartCounts;
                return _timerStartNs + NsFor(left << _divideShift, _timerHz);
            }
        }

        private ulong ReadTscDeadline() => TimerMode == TimerTscDeadline ? _tscDeadline : 0;

        private void WriteTscDeadline(ulong value)
        {
            if (TimerMode != TimerTscDeadline)
                return;                         // ignored in the other modes (SDM 10.5.4.1)
            _tscDeadline = value;
            Poll();                             // a deadline already past fires at once
        }
    }
}
