namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// Where a local APIC sends the interprocessor interrupts its ICR requests: the VM's APIC bus
    /// (<see cref="ApicBus"/>), which delivers them to the other vCPUs' local APICs.
    /// </summary>
    public interface IIpiSink
    {
        /// <summary>
        /// The ICR was written. Called for every IPI except the self shorthand; the sending APIC
        /// has already taken its own share (a fixed IPI aimed at itself is in its IRR; an NMI,
        /// INIT or start-up aimed at itself is recorded), so the sink delivers to the destination
        /// APICs other than <see cref="IpiRequest.Source"/>. The one exception is lowest
        /// priority: the sender takes nothing itself, and the sink picks one APIC among all the
        /// targets, the sender included. Called with the VM's <see cref="DeviceLock"/> held.
        /// </summary>
        void SendIpi(IpiRequest request);
    }
}
