namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// Where a local APIC sends the interprocessor interrupts its ICR requests (the VM's APIC
    /// bus, routed by the scheduler to the other vCPUs).
    /// </summary>
    public interface IIpiSink
    {
        /// <summary>
        /// The ICR was written. Called for every IPI except the self shorthand; the sending APIC
        /// has already taken its own share (it accepted a fixed IPI aimed at itself), so the sink
        /// delivers to the destination APICs other than <see cref="IpiRequest.Source"/>.
        /// </summary>
        void SendIpi(IpiRequest request);
    }
}
