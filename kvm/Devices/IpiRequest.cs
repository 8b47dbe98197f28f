namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// One write of the interrupt command register (SDM 10.6.1, figure 10-12), in the x2APIC
    /// layout: bits 7:0 vector, 10:8 delivery mode, 11 destination mode (1 = logical), 14 level
    /// (0 = de-assert, used only by INIT level de-assert), 15 trigger mode (1 = level), 19:18
    /// destination shorthand, 63:32 destination (an xAPIC write's 8-bit destination from ICR
    /// high bits 31:24 is moved here). <see cref="Source"/> is the sending APIC's ID.
    /// </summary>
    public readonly struct IpiRequest
    {
        /// <summary>Delivery mode 000: the vector to the destination's IRR.</summary>
        public const int Fixed = 0;

        /// <summary>Delivery mode 001: fixed, to the destination APIC with the lowest priority.</summary>
        public const int LowestPriority = 1;

        /// <summary>Delivery mode 010: an SMI (the vector is ignored).</summary>
        public const int Smi = 2;

        /// <summary>Delivery mode 100: an NMI (the vector is ignored).</summary>
        public const int Nmi = 4;

        /// <summary>Delivery mode 101: INIT (or INIT level de-assert when <see cref="Assert"/> is clear and the trigger is level).</summary>
        public const int Init = 5;

        /// <summary>Delivery mode 110: a start-up IPI; the vector is the page number of the AP's start address.</summary>
        public const int StartUp = 6;

        /// <summary>Delivery mode 111 (IOAPIC and LINT only): the PIC's vector, acknowledged through the 8259A.</summary>
        public const int ExtInt = 7;

        /// <summary>Shorthand 00: the destination field names the targets.</summary>
        public const int NoShorthand = 0;

        /// <summary>Shorthand 01: the sender only.</summary>
        public const int Self = 1;

        /// <summary>Shorthand 10: every APIC, the sender included.</summary>
        public const int AllIncludingSelf = 2;

        /// <summary>Shorthand 11: every APIC but the sender.</summary>
        public const int AllExcludingSelf = 3;

        /// <summary>The ICR bits that mean something (the delivery status bit 12 and reserved bits dropped).</summary>
        public const ulong ValidBits = 0xFFFF_FFFF_000C_CFFFUL;

        /// <summary>The command, in the x2APIC ICR layout (see the type's summary).</summary>
        public readonly ulong Icr;

        /// <summary>The sending APIC's ID.</summary>
        public readonly uint Source;

        /// <summary>A request for <paramref name="icr"/> (x2APIC layout) sent by APIC <paramref name="source"/>.</summary>
        public IpiRequest(ulong icr, uint source)
        {
            Icr = icr & ValidBits;
            Source = source;
        }

        /// <summary>Bits 7:0: the vector (the start page for a start-up IPI).</summary>
        public int Vector => (int)(Icr & 0xFF);

        /// <summary>Bits 10:8: <see cref="Fixed"/>, <see cref="LowestPriority"/>, <see cref="Smi"/>, <see cref="Nmi"/>, <see cref="Init"/> or <see cref="StartUp"/>.</summary>
        public int DeliveryMode => (int)(Icr >> 8) & 7;

        /// <summary>Bit 11: the destination is logical (matched against the LDR), not an APIC ID.</summary>
        public bool Logical => (Icr & (1UL << 11)) != 0;

        /// <summary>Bit 14: assert (clear only for the INIT level de-assert message).</summary>
        public bool Assert => (Icr & (1UL << 14)) != 0;

        /// <summary>Bit 15: level-triggered.</summary>
        public bool LevelTriggered => (Icr & (1UL << 15)) != 0;

        /// <summary>Bits 19:18: <see cref="NoShorthand"/>, <see cref="Self"/>, <see cref="AllIncludingSelf"/> or <see cref="AllExcludingSelf"/>.</summary>
        public int Shorthand => (int)(Icr >> 18) & 3;

        /// <summary>Bits 63:32: the destination (an xAPIC destination is 8 bits, 0xFF = broadcast).</summary>
        public uint Destination => (uint)(Icr >> 32);

        /// <summary>The INIT level de-assert message (SDM 10.6.1): no CPU acts on it.</summary>
        public bool IsInitDeassert => DeliveryMode == Init && !Assert && LevelTriggered;
    }
}
