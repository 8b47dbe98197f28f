namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// Tandem's MMIO test page at <see cref="Base"/> (like QEMU's test devices): 4 KiB that read back
    /// what was written, at any width and alignment inside the page, with every access counted. The
    /// test guests check the MMIO emulation through it (each decoded instruction form against a
    /// device that remembers); no real guest expects anything there.
    /// </summary>
    public sealed class ScratchMmio : IMmioDevice
    {
        /// <summary>Guest-physical base of the page (below the IOAPIC's 0xFEC00000, in the PCI hole).</summary>
        public const ulong Base = 0xFEB0_0000;

        /// <summary>Bytes of the page.</summary>
        public const ulong Size = 4096;

        private readonly byte[] _bytes = new byte[(int)Size];

        /// <summary>Reads and writes so far.</summary>
        public ulong Reads, Writes;

        /// <inheritdoc/>
        public ulong Read(ulong offset, int size)
        {
            Reads++;
            ulong v = 0;
            for (int i = size - 1; i >= 0; i--)
                v = (v << 8) | _bytes[(int)offset + i];
            return v;
        }

        /// <inheritdoc/>
        public void Write(ulong offset, int size, ulong value)
        {
            Writes++;
            for (int i = 0; i < size; i++)
            {
                _bytes[(int)offset + i] = (byte)value;
                value >>= 8;
            }
        }
    }
}
