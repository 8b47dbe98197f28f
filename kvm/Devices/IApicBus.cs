namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// Where the IOAPIC sends its interrupt messages: the local APICs of the VM (one
    /// <see cref="LocalApic"/> itself implements it; with several vCPUs, the
    /// <see cref="ApicBus"/> routes to each).
    /// </summary>
    public interface IApicBus
    {
        /// <summary>
        /// An interrupt message: <paramref name="destination"/> (an APIC ID, or a logical
        /// destination when <paramref name="logical"/>), <paramref name="deliveryMode"/> (the
        /// <c>IpiRequest.Fixed</c> ... <c>IpiRequest.ExtInt</c> encodings), <paramref name="vector"/>,
        /// and <paramref name="level"/> true for a level-triggered interrupt. Returns true when at
        /// least one APIC accepted it.
        /// </summary>
        bool Deliver(uint destination, bool logical, int deliveryMode, int vector, bool level);
    }
}
