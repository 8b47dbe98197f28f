namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The PC's pair of 8259A interrupt controllers: the master at 0x20/0x21 (IRQ 0-7), the slave
    /// at 0xA0/0xA1 (IRQ 8-15) cascaded on the master's IRQ 2, and the edge/level control
    /// registers (ELCR) at 0x4D0/0x4D1. Emulated: ICW1-ICW4 (vector base, single mode, ICW4's
    /// automatic EOI), OCW1 (mask), OCW2 (non-specific and specific EOI, rotation, set priority),
    /// OCW3 (read IRR or ISR, poll), fully nested priority with rotation, edge and level inputs.
    /// Not emulated: special mask mode, special fully nested mode, buffered mode (accepted and
    /// ignored). An acknowledge with nothing pending gives the spurious IRQ 7 (or 15) without
    /// setting its in-service bit, as the hardware does.
    /// </summary>
    public sealed class Pic8259 : IPortDevice, IIrqSink
    {
        /// <summary>One 8259A.</summary>
        private struct Chip
        {
            public byte Irr, Isr, Imr, Elcr, Lines;
            public byte VectorBase;
            public byte PriorityAdd;     // the IRQ with the highest priority
            public byte InitStep;        // 0 = operational; 2, 3, 4 = expecting ICW2, ICW3, ICW4
            public bool Icw4Needed, Single, AutoEoi, RotateOnAutoEoi, ReadIsr, Poll;
        }

        private Chip _master;
        private Chip _slave;
        private bool _int;       // the master's INT output, recomputed after every state change

        /// <summary>Acknowledged interrupts (vectors delivered), spurious ones included.</summary>
        public ulong Acknowledged;

        /// <summary>
        /// The master's INT pin, if wired: <c>SetIrq(0, level)</c> each time the output changes,
        /// after the chips' state was updated (the platform wires it to the BSP, to kick vCPU 0).
        /// </summary>
        public IIrqSink? IntOutput;

        /// <summary>Both chips as after power-on: uninitialised, everything masked off (IMR 0), vector bases 0x08 and 0x70 as the BIOS leaves them.</summary>
        public Pic8259()
        {
            _master.VectorBase = 0x08;
            _slave.VectorBase = 0x70;
        }

        /// <summary>Registers the device's ports (0x20-0x21, 0xA0-0xA1, 0x4D0-0x4D1) on <paramref name="bus"/>.</summary>
        public bool Attach(PortBus bus) => bus.Register(0x20, 2, this) && bus.Register(0xA0, 2, this) && bus.Register(0x4D0, 2, this);

        /// <summary>IRR of the master (low byte) and slave (high byte), for tests and the monitor.</summary>
        public ushort Irr => (ushort)(_master.Irr | (_slave.Irr << 8));

        /// <summary>ISR of the master (low byte) and slave (high byte).</summary>
        public ushort Isr => (ushort)(_master.Isr | (_slave.Isr << 8));

        /// <summary>IMR of the master (low byte) and slave (high byte).</summary>
        public ushort Imr => (ushort)(_master.Imr | (_slave.Imr << 8));

        /// <inheritdoc/>
        public void SetIrq(int irq, bool level)
        {
            if ((uint)irq >= 16)
                return;
            if (irq < 8)
                SetLine(ref _master, irq, level);
            else
                SetLine(ref _slave, irq - 8, level);
            UpdateCascade();
        }

        /// <summary>True when the master's INT output is raised: an interrupt waits for the CPU.</summary>
        public bool HasInterrupt
        {
            [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
            get => _int;
        }

        /// <summary>
        /// The CPU's interrupt acknowledge: the vector of the highest-priority pending interrupt,
        /// which becomes in service (unless automatic EOI). Spurious IRQ 7 / 15 when nothing is pending.
        /// </summary>
        public int Acknowledge()
        {
            Acknowledged++;
            int irq = Output(ref _master);
            if (irq < 0)
                return _master.VectorBase + 7;
            Ack(ref _master, irq);
            if (irq != 2 || _master.Single)
            {
                UpdateCascade();
                return _master.VectorBase + irq;
            }
            int slaveIrq = Output(ref _slave);
            int vector;
            if (slaveIrq < 0)
            {
                vector = _slave.VectorBase + 7;
            }
            else
            {
                Ack(ref _slave, slaveIrq);
                vector = _slave.VectorBase + slaveIrq;
            }
            UpdateCascade();
            return vector;
        }

        /// <inheritdoc/>
        public uint Read(ushort port, int size)
        {
            switch (port)
            {
                case 0x20: return ReadCommand(ref _master, false);
                case 0x21: return _master.Imr;
                case 0xA0: return ReadCommand(ref _slave, true);
                case 0xA1: return _slave.Imr;
                case 0x4D0: return _master.Elcr;
                case 0x4D1: return _slave.Elcr;
                default: return 0xFF;
            }
        }

        /// <inheritdoc/>
        public void Write(ushort port, int size, uint value)
        {
            byte v = (byte)value;
            switch (port)
            {
                case 0x20: WriteCommand(ref _master, v); break;
                case 0x21: WriteData(ref _master, v); break;
                case 0xA0: WriteCommand(ref _slave, v); break;
                case 0xA1: WriteData(ref _slave, v); break;
                // IRQ 0, 1, 2 (master) and 8, 13 (slave) are always edge-triggered.
                case 0x4D0: _master.Elcr = (byte)(v & 0xF8); break;
                case 0x4D1: _slave.Elcr = (byte)(v & 0xDE); break;
            }
            UpdateCascade();
        }

        private static void SetLine(ref Chip c, int irq, bool level)
        {
            byte bit = (byte)(1 << irq);
            if ((c.Elcr & bit) != 0)
            {
                // Level: IRR follows the line.
                if (level)
                    c.Irr |= bit;
                else
                    c.Irr &= (byte)~bit;
            }
            else if (level && (c.Lines & bit) == 0)
            {
                c.Irr |= bit;       // rising edge
            }
            if (level)
                c.Lines |= bit;
            else
                c.Lines &= (byte)~bit;
        }

        /// <summary>The slave's INT output is the master's IRQ 2 input.</summary>
        private void UpdateCascade()
        {
            SetLine(ref _master, 2, Output(ref _slave) >= 0);
            bool was = _int;
            _int = Output(ref _master) >= 0;
            if (_int != was)
                IntOutput?.SetIrq(0, _int);
        }

        /// <summary>The highest-priority IRQ in <paramref name="mask"/> (rotation applied), or -1.</summary>
        private static int Highest(ref Chip c, int mask)
        {
            if (mask == 0)
                return -1;
            for (int p = 0; p < 8; p++)
            {
                int irq = (p + c.PriorityAdd) & 7;
                if ((mask & (1 << irq)) != 0)
                    return irq;
            }
            return -1;
        }

        /// <summary>The IRQ this chip would deliver now (pending, unmasked, above everything in service), or -1.</summary>
        private static int Output(ref Chip c)
        {
            if (c.InitStep != 0)
                return -1;
            int irq = Highest(ref c, c.Irr & ~c.Imr);
            if (irq < 0)
                return -1;
            int inService = Highest(ref c, c.Isr);
            if (inService >= 0 && ((inService - c.PriorityAdd) & 7) <= ((irq - c.PriorityAdd) & 7))
                return -1;
            return irq;
        }

        private static void Ack(ref Chip c, int irq)
        {
            byte bit = (byte)(1 << irq);
            // Edge: the request is consumed. Level: IRR keeps following the line.
            if ((c.Elcr & bit) == 0)
                c.Irr &= (byte)~bit;
            if (c.AutoEoi)
            {
                if (c.RotateOnAutoEoi)
                    c.PriorityAdd = (byte)((irq + 1) & 7);
            }
            else
            {
                c.Isr |= bit;
            }
        }

        private uint ReadCommand(ref Chip c, bool slave)
        {
            if (c.Poll)
            {
                // Poll: acknowledge like an INTA cycle and return 0x80 | IRQ, or 0.
                c.Poll = false;
                int irq = Output(ref c);
                if (irq < 0)
                    return 0;
                Ack(ref c, irq);
                UpdateCascade();
                return 0x80u | (uint)irq;
            }
            return c.ReadIsr ? c.Isr : c.Irr;
        }

        private static void WriteCommand(ref Chip c, byte v)
        {
            if ((v & 0x10) != 0)
            {
                // ICW1: start initialisation. Clears the mask and in-service bits; the edge sense
                // is reset, so a line that is high must go low and high again to request.
                c.Icw4Needed = (v & 0x01) != 0;
                c.Single = (v & 0x02) != 0;
                c.Imr = 0;
                c.Isr = 0;
                c.Irr &= c.Elcr;
                c.PriorityAdd = 0;
                c.AutoEoi = false;
                c.RotateOnAutoEoi = false;
                c.ReadIsr = false;
                c.Poll = false;
                c.InitStep = 2;
                return;
            }
            if ((v & 0x08) != 0)
            {
                // OCW3.
                if ((v & 0x04) != 0)
                    c.Poll = true;
                if ((v & 0x02) != 0)
                    c.ReadIsr = (v & 0x01) != 0;
                return;
            }
            // OCW2.
            int irq = v & 7;
            switch (v >> 5)
            {
                case 0: c.RotateOnAutoEoi = false; break;
                case 4: c.RotateOnAutoEoi = true; break;
                case 1:   // non-specific EOI
                case 5:   // rotate on non-specific EOI
                    {
                        int top = Highest(ref c, c.Isr);
                        if (top >= 0)
                        {
                            c.Isr &= (byte)~(1 << top);
                            if (v >> 5 == 5)
                                c.PriorityAdd = (byte)((top + 1) & 7);
                        }
                        break;
                    }
                case 3:   // specific EOI
                    c.Isr &= (byte)~(1 << irq);
                    break;
                case 7:   // rotate on specific EOI
                    c.Isr &= (byte)~(1 << irq);
                    c.PriorityAdd = (byte)((irq + 1) & 7);
                    break;
                case 6:   // set priority: irq becomes the lowest
                    c.PriorityAdd = (byte)((irq + 1) & 7);
                    break;
            }
        }

        private static void WriteData(ref Chip c, byte v)
        {
            switch (c.InitStep)
            {
                case 2:
                    c.VectorBase = (byte)(v & 0xF8);
                    c.InitStep = c.Single ? (byte)(c.Icw4Needed ? 4 : 0) : (byte)3;
                    break;
                case 3:
                    // ICW3: the cascade wiring, fixed on a PC (slave on IRQ 2).
                    c.InitStep = c.Icw4Needed ? (byte)4 : (byte)0;
                    break;
                case 4:
                    c.AutoEoi = (v & 0x02) != 0;
                    c.InitStep = 0;
                    break;
                default:
                    c.Imr = v;
                    break;
            }
        }
    }
}
