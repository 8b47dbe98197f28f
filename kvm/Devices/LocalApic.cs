using System.Numerics;

namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// One vCPU's local APIC (Intel SDM volume 3, chapter 10): the xAPIC registers on their 4 KiB
    /// MMIO page (<see cref="Read"/>/<see cref="Write"/>), the same registers as x2APIC MSRs
    /// 0x800-0x8FF (<see cref="ReadMsr"/>/<see cref="WriteMsr"/>, this file's partner
    /// LocalApic.Msr.cs), IA32_APIC_BASE, interrupt acceptance and priority (IRR, ISR, TMR, TPR,
    /// PPR, EOI), the timer with its TSC-deadline mode (LocalApic.Timer.cs) and the ICR's IPIs.
    ///
    /// Version 0x14 with six LVT entries (timer, thermal, performance, LINT0, LINT1, error; no
    /// CMCI), no directed-EOI suppression, no focus processor checking (SPIV bit 9 is kept, not
    /// used). Delivery is instant, so the delivery status bits read 0. Thermal and performance
    /// LVTs hold their value but nothing raises them; LINT1 and the LINT pins' remote IRR are not
    /// emulated; LINT0 only answers <see cref="AcceptsPicInterrupts"/>. Like KVM, the BSP's
    /// LINT0 comes out of reset unmasked in ExtINT mode (virtual-wire mode, as a BIOS leaves it),
    /// so a guest without firmware still gets the 8259A's interrupts.
    /// </summary>
    public sealed partial class LocalApic : IMmioDevice, IApicBus
    {
        /// <summary>The architectural default base of the xAPIC page.</summary>
        public const ulong DefaultBase = 0xFEE0_0000;

        /// <summary>Size of the xAPIC MMIO page.</summary>
        public const ulong PageSize = 0x1000;

        /// <summary>The version register: version 0x14 (an integrated APIC), max LVT entry 5 in bits 23:16.</summary>
        public const uint VersionValue = 0x0005_0014;

        // xAPIC register offsets (SDM table 10-1); the x2APIC MSR is 0x800 + offset / 16 (table 10-6).
        private const int RegId = 0x020, RegVersion = 0x030, RegTpr = 0x080, RegApr = 0x090, RegPpr = 0x0A0;
        private const int RegEoi = 0x0B0, RegRrd = 0x0C0, RegLdr = 0x0D0, RegDfr = 0x0E0, RegSpiv = 0x0F0;
        private const int RegIsr = 0x100, RegTmr = 0x180, RegIrr = 0x200, RegEsr = 0x280;
        private const int RegIcrLow = 0x300, RegIcrHigh = 0x310, RegLvtTimer = 0x320, RegLvtError = 0x370;
        private const int RegTimerInitial = 0x380, RegTimerCurrent = 0x390, RegTimerDivide = 0x3E0, RegSelfIpi = 0x3F0;

        // LVT entries, indexed (offset - 0x320) / 16.
        private const int LvtTimer = 0, LvtLint0 = 3, LvtError = 5, LvtCount = 6;

        /// <summary>LVT bit 16: masked.</summary>
        private const uint LvtMasked = 1u << 16;

        // The writable bits of each LVT (SDM figure 10-8): vector 7:0 everywhere; delivery mode 10:8
        // for thermal, performance and LINT; polarity 13 and trigger 15 for LINT; timer mode 18:17.
        private static readonly uint[] s_lvtWritable = { 0x0007_00FF, 0x0001_07FF, 0x0001_07FF, 0x0001_A7FF, 0x0001_A7FF, 0x0001_00FF };

        // SPIV (SDM figure 10-23): bit 8 APIC software enable, bit 9 focus checking, 7:0 the spurious vector.
        private const uint SpivEnable = 1u << 8;
        private const uint SpivWritable = 0x3FF;

        // ESR bits (SDM figure 10-9).
        private const uint EsrSendIllegalVector = 1u << 5;
        private const uint EsrReceiveIllegalVector = 1u << 6;

        private readonly IDeviceClock _clock;
        private readonly IIpiSink? _ipis;
        private readonly bool _bsp;
        private readonly uint _initialId;

        private ulong _apicBase;
        private uint _id;                   // the APIC ID (8 bits in xAPIC mode, 32 in x2APIC mode)
        private uint _tpr;

        /// <summary>The task-priority register (what a 64-bit guest's MOV to or from CR8 reaches, bits 7:4).</summary>
        public uint TaskPriority
        {
            get => _tpr;
            set => _tpr = value & 0xFF;
        }
        private uint _ldr;
        private uint _dfr;
        private uint _spiv;
        private uint _esr;                  // what ESR reads: the errors latched by the last ESR write
        private uint _esrPending;           // errors seen since then
        private ulong _icr;                 // x2APIC layout; xAPIC ICR high is bits 63:56
        private readonly uint[] _lvt = new uint[LvtCount];
        private readonly uint[] _isr = new uint[8];
        private readonly uint[] _tmr = new uint[8];
        private readonly uint[] _irr = new uint[8];

        /// <summary>Where the EOI of a level-triggered vector goes (the IOAPIC); set when the VM is wired.</summary>
        public IEoiListener? EoiListener;

        /// <summary>xAPIC MMIO accesses ignored for their width or alignment (not a 32-bit access at a 16-byte boundary).</summary>
        public ulong BadMmioAccesses;

        /// <summary>An NMI arrived (an NMI IPI, or an NMI message from the IOAPIC); the VM loop injects it and clears it with <see cref="TakeNmi"/>.</summary>
        public bool NmiPending { get; private set; }

        /// <summary>
        /// An INIT arrived (never on the BSP, which ignores INIT here); the VM loop resets the vCPU
        /// to the wait-for-SIPI state and clears it with <see cref="TakeInit"/>.
        /// </summary>
        public bool InitPending { get; private set; }

        /// <summary>
        /// The vector (start page) of the start-up IPI that ended the wait for SIPI, or -1; the VM
        /// loop starts the vCPU at vector × 4 KiB and clears it with <see cref="TakeStartUp"/>.
        /// </summary>
        public int StartUpVector { get; private set; } = -1;

        /// <summary>
        /// In the wait-for-SIPI state: an INIT was received and no start-up IPI since. Only then is
        /// a start-up IPI recorded (SDM 8.4.4.1: a SIPI to a processor that is not waiting for one,
        /// such as the second SIPI of the INIT-SIPI-SIPI sequence, is ignored). False at power-on:
        /// an AP needs an INIT first, as under KVM.
        /// </summary>
        public bool WaitingForSipi { get; private set; }

        /// <summary>An NMI, INIT or start-up IPI waits for the VM loop (it wakes a halted vCPU too).</summary>
        public bool HasNmiInitOrStartUp => NmiPending || InitPending || StartUpVector >= 0;

        /// <summary>The VM loop takes the pending NMI: true if there was one (now cleared).</summary>
        public bool TakeNmi()
        {
            bool pending = NmiPending;
            NmiPending = false;
            return pending;
        }

        /// <summary>
        /// The VM loop takes the pending INIT: true if there was one (now cleared); the vCPU then
        /// resets its registers and waits for a start-up IPI. This APIC already reset its own
        /// registers when the INIT arrived (SDM 10.4.7.3) and is <see cref="WaitingForSipi"/>.
        /// </summary>
        public bool TakeInit()
        {
            bool pending = InitPending;
            InitPending = false;
            return pending;
        }

        /// <summary>The VM loop takes the start-up IPI: its vector (the start page), or -1 if none; cleared.</summary>
        public int TakeStartUp()
        {
            int vector = StartUpVector;
            StartUpVector = -1;
            return vector;
        }

        /// <summary>
        /// The local APIC of the vCPU with APIC ID <paramref name="apicId"/> (the BSP when
        /// <paramref name="bsp"/>), timed by <paramref name="clock"/>: its timer counts at
        /// <paramref name="timerHz"/> before the divider (the APIC bus clock; Tandem uses 1 GHz,
        /// as KVM does), the guest's TSC runs at <paramref name="tscHz"/> (for TSC-deadline mode,
        /// see <see cref="TscAtZero"/>), and IPIs other than self-IPIs go to
        /// <paramref name="ipis"/> (null: dropped).
        /// </summary>
        public LocalApic(uint apicId, bool bsp, IDeviceClock clock, ulong timerHz, ulong tscHz, IIpiSink? ipis)
        {
            if (timerHz == 0 || tscHz == 0)
                throw new System.ArgumentException("LocalApic: the timer and TSC frequencies must not be 0");
            _clock = clock;
            _ipis = ipis;
            _bsp = bsp;
            _initialId = apicId;
            _timerHz = timerHz;
            _tscHz = tscHz;
            _apicBase = DefaultBase | BaseEnable | (bsp ? BaseBsp : 0);
            _id = apicId & 0xFF;
            Reset();
        }

        /// <summary>
        /// The registers as after power-up or INIT (SDM 10.4.7.1): IRR, ISR, TMR, ICR, LDR, TPR,
        /// timer counts and ESR zero, DFR all ones, every LVT masked (the BSP's LINT0 in ExtINT
        /// mode, unmasked, see the type's remarks), SPIV 0xFF (software-disabled), timer disarmed.
        /// IA32_APIC_BASE and the ID are kept; pending NMI, INIT and start-up are not touched.
        /// </summary>
        public void Reset()
        {
            _tpr = 0;
            _ldr = 0;
            _dfr = 0xFFFF_FFFF;
            _spiv = 0xFF;
            _esr = 0;
            _esrPending = 0;
            _icr = 0;
            for (int i = 0; i < 8; i++)
            {
                _isr[i] = 0;
                _tmr[i] = 0;
                _irr[i] = 0;
            }
            for (int i = 0; i < LvtCount; i++)
                _lvt[i] = LvtMasked;
            if (_bsp)
                _lvt[LvtLint0] = (uint)IpiRequest.ExtInt << 8;
            ResetTimer();
            if (X2ApicMode)
                _ldr = X2ApicLdr(_id);
        }

        /// <summary>The APIC ID (bits 31:24 of the xAPIC ID register; the whole x2APIC ID register).</summary>
        public uint Id => _id;

        /// <summary>IA32_APIC_BASE as the guest reads it.</summary>
        public ulong ApicBase => _apicBase;

        /// <summary>The guest-physical base of the xAPIC page (IA32_APIC_BASE bits 51:12).</summary>
        public ulong BaseAddress => _apicBase & ~0xFFFUL;

        /// <summary>IA32_APIC_BASE bit 11: the APIC is globally (hardware) enabled.</summary>
        public bool HardwareEnabled => (_apicBase & BaseEnable) != 0;

        /// <summary>IA32_APIC_BASE bit 10 (with bit 11): x2APIC mode, registers as MSRs and the MMIO page gone.</summary>
        public bool X2ApicMode => (_apicBase & BaseExtd) != 0;

        /// <summary>The xAPIC page answers at <see cref="BaseAddress"/>: enabled and not in x2APIC mode.</summary>
        public bool MmioEnabled => HardwareEnabled && !X2ApicMode;

        /// <summary>SPIV bit 8: the APIC is software-enabled.</summary>
        public bool SoftwareEnabled => (_spiv & SpivEnable) != 0;

        /// <summary>
        /// The 8259A's INTR reaches the CPU through this APIC: the APIC is hardware-disabled (the
        /// PIC then drives INTR directly), or LINT0 is unmasked in ExtINT mode (virtual wire). The
        /// VM loop offers the PIC's interrupts only when this holds.
        /// </summary>
        public bool AcceptsPicInterrupts
        {
            get
            {
                uint lint0 = _lvt[LvtLint0];
                return !HardwareEnabled || ((lint0 & LvtMasked) == 0 && ((lint0 >> 8) & 7) == IpiRequest.ExtInt);
            }
        }

        // ---- interrupt acceptance and priority (SDM 10.8) ----

        private static bool TestBit(uint[] bits, int vector) => (bits[vector >> 5] & (1u << (vector & 31))) != 0;

        private static void SetBit(uint[] bits, int vector) => bits[vector >> 5] |= 1u << (vector & 31);

        private static void ClearBit(uint[] bits, int vector) => bits[vector >> 5] &= ~(1u << (vector & 31));

        /// <summary>The highest vector whose bit is set, or -1.</summary>
        private static int Highest(uint[] bits)
        {
            for (int i = 7; i >= 0; i--)
            {
                if (bits[i] != 0)
                    return i * 32 + 31 - BitOperations.LeadingZeroCount(bits[i]);
            }
            return -1;
        }

        /// <summary>
        /// A fixed interrupt arrives for this APIC: sets its IRR bit, and its TMR bit when
        /// <paramref name="level"/>-triggered (cleared for an edge). Refused (false) while the
        /// APIC is hardware- or software-disabled, and for vectors 0-15, which set ESR's
        /// "received illegal vector" instead (SDM 10.5.3). A vector already requested coalesces.
        /// </summary>
        public bool Accept(int vector, bool level)
        {
            if (!HardwareEnabled || !SoftwareEnabled || (uint)vector > 255)
                return false;
            if (vector < 16)
            {
                Error(EsrReceiveIllegalVector);
                return false;
            }
            SetBit(_irr, vector);
            if (level)
                SetBit(_tmr, vector);
            else
                ClearBit(_tmr, vector);
            return true;
        }

        /// <summary>The processor priority (SDM 10.8.3.1): TPR if its class is at least the highest in-service vector's class, else that class.</summary>
        public uint Ppr
        {
            get
            {
                int isrv = Highest(_isr);
                uint isrClass = isrv < 0 ? 0 : (uint)isrv & 0xF0;
                return (_tpr & 0xF0) >= isrClass ? _tpr & 0xFF : isrClass;
            }
        }

        /// <summary>The arbitration priority (SDM 10.8.3.1, figure 10-15's rule over TPR, the highest IRR and ISR vectors).</summary>
        public uint Apr
        {
            get
            {
                int irrv = Highest(_irr), isrv = Highest(_isr);
                uint irrClass = irrv < 0 ? 0 : (uint)irrv & 0xF0;
                uint isrClass = isrv < 0 ? 0 : (uint)isrv & 0xF0;
                uint tprClass = _tpr & 0xF0;
                if (tprClass >= irrClass && tprClass > isrClass)
                    return _tpr & 0xFF;
                uint max = tprClass > isrClass ? tprClass : isrClass;
                return max > irrClass ? max : irrClass;
            }
        }

        /// <summary>
        /// The vector the CPU would take now: the highest IRR vector whose priority class is above
        /// the PPR's class, or -1 (none, or the APIC is hardware-disabled). RFLAGS.IF and the
        /// interrupt shadow are the VM loop's business.
        /// </summary>
        public int PendingVector
        {
            get
            {
                if (!HardwareEnabled)
                    return -1;
                int v = Highest(_irr);
                if (v < 0 || ((uint)v & 0xF0) <= (Ppr & 0xF0))
                    return -1;
                return v;
            }
        }

        /// <summary>
        /// The interrupt acknowledge: <see cref="PendingVector"/> moves from IRR to ISR and is
        /// returned for injection; -1 if nothing may be taken (the VM loop checks
        /// <see cref="PendingVector"/> first, so the spurious vector never arises here).
        /// </summary>
        public int Acknowledge()
        {
            int v = PendingVector;
            if (v < 0)
                return -1;
            ClearBit(_irr, v);
            SetBit(_isr, v);
            return v;
        }

        /// <summary>
        /// The end of interrupt (a write to the EOI register): the highest in-service vector is
        /// retired; if it was accepted level-triggered (its TMR bit) it goes to
        /// <see cref="EoiListener"/>. Returns that vector, or -1 when nothing was in service.
        /// </summary>
        public int EndOfInterrupt()
        {
            int v = Highest(_isr);
            if (v < 0)
                return -1;
            ClearBit(_isr, v);
            if (TestBit(_tmr, v))
            {
                LastLevelEoi = v;
                EoiListener?.Eoi(v);
            }
            return v;
        }

        /// <summary>The last level-triggered vector retired by EOI, or -1.</summary>
        public int LastLevelEoi { get; private set; } = -1;

        private void Error(uint bit)
        {
            uint before = _esrPending;
            _esrPending |= bit;
            if (before == _esrPending)
                return;
            uint lvt = _lvt[LvtError];
            if ((lvt & LvtMasked) == 0 && (lvt & 0xFF) >= 16)
                Accept((int)(lvt & 0xFF), false);
        }

        /// <summary>An LVT's interrupt (timer, error): its vector as a fixed edge interrupt unless the entry is masked.</summary>
        private void RaiseLvt(int index)
        {
            uint lvt = _lvt[index];
            if ((lvt & LvtMasked) == 0)
                Accept((int)(lvt & 0xFF), false);
        }

        // ---- destinations and messages (SDM 10.6.2) ----

        /// <summary>
        /// This APIC is among <paramref name="destination"/>'s targets: physical, its ID or the
        /// broadcast ID (0xFF; 0xFFFFFFFF in x2APIC mode); logical, against the LDR: the flat
        /// (DFR 0xF) or cluster (DFR 0x0) model in xAPIC mode, the cluster ID in bits 31:16 and
        /// the member bit in 15:0 in x2APIC mode, 0xFF / 0xFFFFFFFF being everyone.
        /// </summary>
        public bool Matches(uint destination, bool logical)
        {
            if (X2ApicMode)
            {
                if (destination == 0xFFFF_FFFF)
                    return true;
                if (!logical)
                    return destination == _id;
                return (destination >> 16) == (_ldr >> 16) && (destination & _ldr & 0xFFFF) != 0;
            }
            destination &= 0xFF;
            if (destination == 0xFF)
                return true;
            if (!logical)
                return destination == _id;
            uint ldr = _ldr >> 24;
            if ((_dfr >> 28) == 0xF)
                return (destination & ldr) != 0;                                  // flat model
            return (destination >> 4) == (ldr >> 4) && (destination & ldr & 0xF) != 0;  // cluster model
        }

        /// <inheritdoc/>
        public bool Deliver(uint destination, bool logical, int deliveryMode, int vector, bool level)
        {
            if (!HardwareEnabled || !Matches(destination, logical))
                return false;
            return Receive(deliveryMode, vector, level);
        }

        /// <summary>
        /// A message the APIC bus already routed to this APIC (a shorthand, or a destination it
        /// matched): taken by delivery mode, as <see cref="Deliver"/> does; refused while the
        /// APIC is hardware-disabled.
        /// </summary>
        internal bool ReceiveRouted(int deliveryMode, int vector, bool level) => HardwareEnabled && Receive(deliveryMode, vector, level);

        /// <summary>A message addressed to this APIC, by delivery mode.</summary>
        private bool Receive(int deliveryMode, int vector, bool level)
        {
            switch (deliveryMode)
            {
                case IpiRequest.Fixed:
                case IpiRequest.LowestPriority:
                    return Accept(vector, level);
                case IpiRequest.Nmi:
                    NmiPending = true;
                    return true;
                case IpiRequest.Init:
                    // The BSP ignores INIT here (Tandem does not restart a VM's BSP from its reset
                    // vector). An AP resets its APIC (ID and APIC base kept, SDM 10.4.7.3) and
                    // waits for a start-up IPI; a start-up it had not yet started from is dropped.
                    if (_bsp)
                        return false;
                    Reset();
                    InitPending = true;
                    WaitingForSipi = true;
                    StartUpVector = -1;
                    return true;
                case IpiRequest.StartUp:
                    if (!WaitingForSipi)
                        return false;
                    WaitingForSipi = false;
                    StartUpVector = vector & 0xFF;
                    return true;
                case IpiRequest.ExtInt:
                    return AcceptsPicInterrupts;
                default:
                    return false;        // SMI and the reserved modes: nobody here takes them
            }
        }

        /// <summary>The ICR was written (SDM 10.6.1): the self shorthand stays here, everything else goes to the sink after this APIC takes its own share.</summary>
        private void SendIpi(ulong icr)
        {
            IpiRequest ipi = new IpiRequest(icr, _id);
            int mode = ipi.DeliveryMode;
            if ((mode == IpiRequest.Fixed || mode == IpiRequest.LowestPriority) && ipi.Vector < 16)
            {
                Error(EsrSendIllegalVector);
                return;
            }
            int shorthand = ipi.Shorthand;
            if (shorthand == IpiRequest.Self)
            {
                // Only fixed IPIs may go to self (SDM table 10-3).
                if (mode == IpiRequest.Fixed)
                    Accept(ipi.Vector, ipi.LevelTriggered);
                return;
            }
            if (ipi.IsInitDeassert)
            {
                _ipis?.SendIpi(ipi);
                return;
            }
            bool self = shorthand == IpiRequest.AllIncludingSelf
                || (shorthand == IpiRequest.NoShorthand && Matches(ipi.Destination, ipi.Logical));
            // Lowest priority picks one APIC among all the targets, this one included: with a
            // sink, the sink arbitrates (IIpiSink); alone, this APIC is the only candidate.
            if (self && !(mode == IpiRequest.LowestPriority && _ipis != null))
                Receive(mode, ipi.Vector, ipi.LevelTriggered);
            _ipis?.SendIpi(ipi);
        }

        /// <summary>The x2APIC logical ID derived from the x2APIC ID (SDM 10.12.10.2).</summary>
        private static uint X2ApicLdr(uint id) => ((id >> 4) << 16) | (1u << (int)(id & 0xF));

        // ---- the register file, shared by the xAPIC page and the x2APIC MSRs ----

        /// <summary>Reads register <paramref name="reg"/> (an xAPIC offset); false for one that does not exist in the current mode.</summary>
        private bool ReadRegister(int reg, out uint value)
        {
            value = 0;
            bool x2 = X2ApicMode;
            switch (reg)
            {
                case RegId:
                    value = x2 ? _id : _id << 24;
                    return true;
                case RegVersion:
                    value = VersionValue;
                    return true;
                case RegTpr:
                    value = _tpr;
                    return true;
                case RegApr:
                    if (x2)
                        return false;
                    value = Apr;
                    return true;
                case RegPpr:
                    value = Ppr;
                    return true;
                case RegEoi:
                    return !x2;                 // write-only: 0 on the page, #GP as an MSR
                case RegRrd:
                    return !x2;
                case RegLdr:
                    value = _ldr;
                    return true;
                case RegDfr:
                    value = _dfr;
                    return !x2;
                case RegSpiv:
                    value = _spiv;
                    return true;
                case RegEsr:
                    value = _esr;
                    return true;
                case RegIcrLow:
                    value = (uint)_icr;
                    return true;
                case RegIcrHigh:
                    value = (uint)(_icr >> 32) << 24;
                    return !x2;
                case RegTimerInitial:
                    value = _timerInitial;
                    return true;
                case RegTimerCurrent:
                    value = TimerCurrentCount(_clock.NowNs);
                    return true;
                case RegTimerDivide:
                    value = _divide;
                    return true;
                case RegSelfIpi:
                    return false;               // write-only, and x2APIC only
            }
            if (reg >= RegIsr && reg < RegIsr + 0x80)
            {
                value = _isr[(reg - RegIsr) >> 4];
                return true;
            }
            if (reg >= RegTmr && reg < RegTmr + 0x80)
            {
                value = _tmr[(reg - RegTmr) >> 4];
                return true;
            }
            if (reg >= RegIrr && reg < RegIrr + 0x80)
            {
                value = _irr[(reg - RegIrr) >> 4];
                return true;
            }
            if (reg >= RegLvtTimer && reg <= RegLvtError)
            {
                value = _lvt[(reg - RegLvtTimer) >> 4];
                return true;
            }
            return false;
        }

        /// <summary>
        /// Writes register <paramref name="reg"/> (an xAPIC offset) in xAPIC mode, or the low half
        /// of its MSR in x2APIC mode (the ICR's destination half arrives through
        /// <see cref="WriteMsr"/>); false for a register that is read-only or absent in this mode.
        /// </summary>
        private bool WriteRegister(int reg, uint value)
        {
            bool x2 = X2ApicMode;
            switch (reg)
            {
                case RegId:
                    if (x2)
                        return false;
                    _id = value >> 24;
                    return true;
                case RegTpr:
                    _tpr = value & 0xFF;
                    return true;
                case RegEoi:
                    EndOfInterrupt();
                    return true;
                case RegLdr:
                    if (x2)
                        return false;
                    _ldr = value & 0xFF00_0000;
                    return true;
                case RegDfr:
                    if (x2)
                        return false;
                    _dfr = value | 0x0FFF_FFFF;
                    return true;
                case RegSpiv:
                    WriteSpiv(value);
                    return true;
                case RegEsr:
                    // Any write latches the errors seen since the last one (SDM 10.5.3).
                    _esr = _esrPending;
                    _esrPending = 0;
                    return true;
                case RegIcrLow:
                    _icr = (_icr & 0xFFFF_FFFF_0000_0000UL) | (value & IpiRequest.ValidBits);
                    SendIpi(_icr);
                    return true;
                case RegIcrHigh:
                    if (x2)
                        return false;
                    _icr = (_icr & 0xFFFF_FFFFUL) | ((ulong)(value >> 24) << 32);
                    return true;
                case RegTimerInitial:
                    WriteTimerInitial(value);
                    return true;
                case RegTimerDivide:
                    WriteTimerDivide(value);
                    return true;
                case RegSelfIpi:
                    if (!x2)
                        return false;
                    SendIpi((ulong)IpiRequest.Self << 18 | (value & 0xFF));
                    return true;
            }
            if (reg >= RegLvtTimer && reg <= RegLvtError)
            {
                WriteLvt((reg - RegLvtTimer) >> 4, value);
                return true;
            }
            return false;                       // read-only (version, APR, PPR, ISR, TMR, IRR, current count) or reserved
        }

        private void WriteSpiv(uint value)
        {
            bool wasEnabled = SoftwareEnabled;
            _spiv = value & SpivWritable;
            if (wasEnabled && !SoftwareEnabled)
            {
                // Software disable masks every LVT (SDM 10.4.7.2).
                for (int i = 0; i < LvtCount; i++)
                    _lvt[i] |= LvtMasked;
            }
        }

        private void WriteLvt(int index, uint value)
        {
            uint v = value & s_lvtWritable[index];
            if (!SoftwareEnabled)
                v |= LvtMasked;                 // the mask cannot be cleared while software-disabled
            if (index == LvtTimer)
            {
                WriteLvtTimer(v);
                return;
            }
            _lvt[index] = v;
        }

        // ---- the xAPIC page ----

        /// <inheritdoc/>
        public ulong Read(ulong offset, int size)
        {
            if (size != 4 || (offset & 0xF) != 0 || offset >= PageSize)
            {
                BadMmioAccesses++;
                return 0;
            }
            if (!MmioEnabled)
                return 0;
            ReadRegister((int)offset, out uint value);
            return value;
        }

        /// <inheritdoc/>
        public void Write(ulong offset, int size, ulong value)
        {
            if (size != 4 || (offset & 0xF) != 0 || offset >= PageSize)
            {
                BadMmioAccesses++;
                return;
            }
            if (!MmioEnabled)
                return;
            WriteRegister((int)offset, (uint)value);
        }
    }
}
