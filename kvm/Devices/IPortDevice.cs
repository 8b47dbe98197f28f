namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// A device behind guest port I/O. Called on the vCPU's CPU while the device's VM runs there;
    /// a device shared by several vCPUs locks itself.
    /// </summary>
    public interface IPortDevice
    {
        /// <summary>A guest read of <paramref name="size"/> bytes (1, 2 or 4) from <paramref name="port"/>; the value is in the low bytes (the bus masks the rest).</summary>
        uint Read(ushort port, int size);

        /// <summary>A guest write of <paramref name="size"/> bytes (1, 2 or 4) to <paramref name="port"/>; <paramref name="value"/> is already masked to the size.</summary>
        void Write(ushort port, int size, uint value);
    }
}
