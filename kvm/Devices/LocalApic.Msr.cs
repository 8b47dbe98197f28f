namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The local APIC's MSRs: IA32_APIC_BASE (0x1B, SDM 10.4.4 and 10.12.5), IA32_TSC_DEADLINE
    /// (0x6E0, SDM 10.5.4.1) and the x2APIC registers 0x800-0x8FF (SDM 10.12.1.2, table 10-6),
    /// where MSR 0x800 + n is the xAPIC register at offset n × 16, except the ICR, one 64-bit
    /// MSR (0x830) with the destination in bits 63:32, and SELF IPI (0x83F), which exists only
    /// here. A false return is where a real CPU raises #GP: the VM loop injects it.
    /// </summary>
    public sealed partial class LocalApic
    {
        /// <summary>IA32_APIC_BASE.</summary>
        public const uint MsrApicBase = 0x1B;

        /// <summary>IA32_TSC_DEADLINE.</summary>
        public const uint MsrTscDeadline = 0x6E0;

        /// <summary>The first x2APIC register MSR.</summary>
        public const uint MsrX2ApicFirst = 0x800;

        /// <summary>The last MSR of the x2APIC range.</summary>
        public const uint MsrX2ApicLast = 0x8FF;

        /// <summary>IA32_APIC_BASE bit 8: this is the bootstrap processor (read-only here).</summary>
        public const ulong BaseBsp = 1UL << 8;

        /// <summary>IA32_APIC_BASE bit 10 (EXTD): x2APIC mode.</summary>
        public const ulong BaseExtd = 1UL << 10;

        /// <summary>IA32_APIC_BASE bit 11 (EN): the APIC is globally enabled.</summary>
        public const ulong BaseEnable = 1UL << 11;

        /// <summary>
        /// MAXPHYADDR as the vCPU's CPUID reports it: IA32_APIC_BASE bits from here up are
        /// reserved. Set it when the VM is built (default 39).
        /// </summary>
        public int PhysAddrBits = 39;

        /// <summary>True for the MSRs <see cref="ReadMsr"/> and <see cref="WriteMsr"/> own.</summary>
        public static bool Handles(uint msr) => msr == MsrApicBase || msr == MsrTscDeadline || (msr >= MsrX2ApicFirst && msr <= MsrX2ApicLast);

        /// <summary>A RDMSR of <paramref name="msr"/>; false where the CPU raises #GP (an x2APIC MSR outside x2APIC mode, a reserved or write-only one, an MSR not listed in <see cref="Handles"/>).</summary>
        public bool ReadMsr(uint msr, out ulong value)
        {
            value = 0;
            if (msr == MsrApicBase)
            {
                value = _apicBase;
                return true;
            }
            if (msr == MsrTscDeadline)
            {
                value = ReadTscDeadline();
                return true;
            }
            if (msr < MsrX2ApicFirst || msr > MsrX2ApicLast || !X2ApicMode)
                return false;
            int reg = (int)(msr - MsrX2ApicFirst) << 4;
            if (reg == RegIcrLow)
            {
                value = _icr;
                return true;
            }
            if (!ReadRegister(reg, out uint v))
                return false;
            value = v;
            return true;
        }

        /// <summary>
        /// A WRMSR of <paramref name="value"/> to <paramref name="msr"/>; false where the CPU
        /// raises #GP: an x2APIC MSR outside x2APIC mode, a read-only or reserved one, bits 63:32
        /// set (but in the ICR), a non-zero EOI or ESR write, a SELF IPI above bit 7, an illegal
        /// IA32_APIC_BASE value or transition (<see cref="WriteApicBase"/>).
        /// </summary>
        public bool WriteMsr(uint msr, ulong value)
        {
            if (msr == MsrApicBase)
                return WriteApicBase(value);
            if (msr == MsrTscDeadline)
            {
                WriteTscDeadline(value);
                return true;
            }
            if (msr < MsrX2ApicFirst || msr > MsrX2ApicLast || !X2ApicMode)
                return false;
            int reg = (int)(msr - MsrX2ApicFirst) << 4;
            if (reg == RegIcrLow)
            {
                _icr = value & IpiRequest.ValidBits;
                SendIpi(_icr);
                return true;
            }
            if ((value >> 32) != 0)
                return false;
            if ((reg == RegEoi || reg == RegEsr) && value != 0)
                return false;
            if (reg == RegSelfIpi && value > 0xFF)
                return false;
            return WriteRegister(reg, (uint)value);
        }

        /// <summary>
        /// Writes IA32_APIC_BASE. Reserved bits (7:0, 9, MAXPHYADDR and up) refuse the write; the
        /// BSP bit is kept as it is. Of the (EN, EXTD) states disabled (0,0), xAPIC (1,0) and
        /// x2APIC (1,1), the legal moves (SDM 10.12.5, figure 10-28) are disabled ↔ xAPIC,
        /// xAPIC → x2APIC and x2APIC → disabled; x2APIC → xAPIC, disabled → x2APIC and the invalid
        /// state (0,1) are refused. Disabling resets the APIC's registers (and the ID to the
        /// initial one); entering x2APIC mode sets the ID to the initial APIC ID and derives the
        /// logical ID from it. The base address may change in any state; the VM moves the xAPIC
        /// page to <see cref="BaseAddress"/>.
        /// </summary>
        public bool WriteApicBase(ulong value)
        {
            ulong addressBits = PhysAddrBits >= 64 ? ~0UL : (1UL << PhysAddrBits) - 1;
            ulong allowed = (addressBits & ~0xFFFUL) | BaseBsp | BaseExtd | BaseEnable;
            if ((value & ~allowed) != 0)
                return false;
            bool en = (value & BaseEnable) != 0, extd = (value & BaseExtd) != 0;
            bool wasEnabled = HardwareEnabled, wasX2 = X2ApicMode;
            if (extd && !en)
                return false;                   // invalid state
            if (wasX2 && en && !extd)
                return false;                   // x2APIC → xAPIC
            if (!wasEnabled && extd)
                return false;                   // disabled → x2APIC
            _apicBase = (value & ~BaseBsp) | (_apicBase & BaseBsp);
            if (wasEnabled && !en)
            {
                _id = _initialId & 0xFF;
                Reset();
            }
            else if (!wasX2 && extd)
            {
                _id = _initialId;
                _ldr = X2ApicLdr(_id);
            }
            return true;
        }
    }
}
