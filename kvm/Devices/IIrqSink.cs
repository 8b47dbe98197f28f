namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// Where a device's interrupt line goes: the VM's interrupt routing (the PIC pair, and the
    /// IOAPIC once there is one). Edge-triggered devices raise and then lower the line
    /// (<see cref="IrqLines.Pulse"/>); level-triggered ones hold it raised while their condition lasts.
    /// </summary>
    public interface IIrqSink
    {
        /// <summary>Sets ISA/GSI line <paramref name="irq"/> to <paramref name="level"/> (true = raised).</summary>
        void SetIrq(int irq, bool level);
    }

    /// <summary>Helpers over <see cref="IIrqSink"/>.</summary>
    public static class IrqLines
    {
        /// <summary>An edge on line <paramref name="irq"/>: raise, then lower.</summary>
        public static void Pulse(IIrqSink sink, int irq)
        {
            sink.SetIrq(irq, true);
            sink.SetIrq(irq, false);
        }
    }
}
