namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// One VM's PC devices and their wiring: the port bus, the 8259A pair (the interrupt
    /// controller every device line reaches) and the 8254 PIT. The VM loop calls
    /// <see cref="Poll"/> before each entry, injects <see cref="AcknowledgeInterrupt"/>'s vector
    /// when <see cref="HasInterrupt"/> and the guest can take it, and bounds the guest's run (or a
    /// halted vCPU's wait) by <see cref="NextEventNs"/>.
    /// </summary>
    public sealed class PcPlatform : IIrqSink
    {
        /// <summary>The VM's port I/O space.</summary>
        public readonly PortBus Ports;

        /// <summary>The interrupt controllers.</summary>
        public readonly Pic8259 Pic;

        /// <summary>The interval timer (IRQ 0).</summary>
        public readonly Pit8254 Pit;

        /// <summary>The VM's clock.</summary>
        public readonly IDeviceClock Clock;

        /// <summary>Devices on a fresh bus, timed by <paramref name="clock"/>.</summary>
        public PcPlatform(IDeviceClock clock)
        {
            Clock = clock;
            Ports = new PortBus(32);
            Pic = new Pic8259();
            Pit = new Pit8254(this, clock);
            if (!Pic.Attach(Ports) || !Pit.Attach(Ports))
                throw new System.InvalidOperationException("PC platform: overlapping device ports");
        }

        /// <inheritdoc/>
        public void SetIrq(int irq, bool level) => Pic.SetIrq(irq, level);

        /// <summary>Nothing to do before an entry: no timer armed and no interrupt waiting (the exit path's fast check).</summary>
        public bool Quiet
        {
            [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
            get => !Pit.Armed && !Pic.HasInterrupt;
        }

        /// <summary>Lets the timers raise what is due by now.</summary>
        public void Poll() => Pit.Poll();

        /// <summary>The VM clock's time of the next timer event, or <see cref="ulong.MaxValue"/>.</summary>
        public ulong NextEventNs => Pit.NextIrqNs;

        /// <summary>An external interrupt waits for the vCPU.</summary>
        public bool HasInterrupt => Pic.HasInterrupt;

        /// <summary>The interrupt acknowledge cycle: the vector to inject.</summary>
        public int AcknowledgeInterrupt() => Pic.Acknowledge();
    }
}
