namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// A device behind guest port I/O. <paramref name="port"/> is the port the guest used (a device
    /// may own several), <c>size</c> is 1, 2 or 4 bytes. Reads return the value in the low
    /// <c>size</c> bytes; the bus masks the rest. Called on the vCPU's CPU with the device's VM
    /// running there; a device shared by several vCPUs locks itself.
    /// </summary>
    public interface IPortDevice
    {
        uint Read(ushort port, int size);

        void Write(ushort port, int size, uint value);
    }
}
