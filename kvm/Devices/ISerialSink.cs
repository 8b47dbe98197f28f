namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// Where a UART's transmitted bytes go (the kernel: the VM's <c>[vm N]</c> line relay to the
    /// host console; host tests: a recorder). Called once per byte on the vCPU's CPU; it must not
    /// allocate or block for long.
    /// </summary>
    public interface ISerialSink
    {
        /// <summary>The guest sent <paramref name="b"/>.</summary>
        void Put(byte b);
    }
}
