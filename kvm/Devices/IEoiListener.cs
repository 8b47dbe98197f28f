namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// Where a local APIC reports the EOI of a level-triggered interrupt (one whose TMR bit was
    /// set when it was accepted): the IOAPIC, which clears the remote IRR of the pins with that
    /// vector (the EOI broadcast of SDM 10.8.5).
    /// </summary>
    public interface IEoiListener
    {
        /// <summary>The guest wrote EOI for level-triggered <paramref name="vector"/>.</summary>
        void Eoi(int vector);
    }
}
