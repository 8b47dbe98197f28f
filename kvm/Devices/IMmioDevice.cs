namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// A device behind guest-physical MMIO (the xAPIC page, the IOAPIC page). Offsets are from the
    /// device's base; sizes are 1, 2, 4 or 8 bytes. The VM loop reaches it after decoding the
    /// instruction that faulted on the device's page (kvm/Mmio, docs/mmio.md).
    /// </summary>
    public interface IMmioDevice
    {
        /// <summary>A guest read of <paramref name="size"/> bytes at <paramref name="offset"/>; the value zero-extended.</summary>
        ulong Read(ulong offset, int size);

        /// <summary>A guest write of the low <paramref name="size"/> bytes of <paramref name="value"/> at <paramref name="offset"/>.</summary>
        void Write(ulong offset, int size, ulong value);
    }
}
