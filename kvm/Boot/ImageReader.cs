namespace Tandem.Kvm.Boot
{
    /// <summary>
    /// Bounds-checked little-endian reads from an untrusted image: every read checks
    /// offset + size against the length without overflowing, and a failed read returns false
    /// with the value 0.
    /// </summary>
    public readonly unsafe struct ImageReader
    {
        private readonly byte* _data;
        /// <summary>The image's length in bytes (0 for a null image).</summary>
        public readonly ulong Length;

        /// <summary>A reader over length bytes at data.</summary>
        public ImageReader(byte* data, ulong length)
        {
            _data = data;
            Length = data == null ? 0 : length;
        }

        /// <summary>The image's bytes (for copies of ranges checked with <see cref="Contains"/>).</summary>
        public byte* Data => _data;

        /// <summary>True if [offset, offset + size) lies inside the image.</summary>
        public bool Contains(ulong offset, ulong size) => offset <= Length && size <= Length - offset;

        /// <summary>Reads a byte; false past the end.</summary>
        public bool U8(ulong offset, out byte value)
        {
            value = 0;
            if (!Contains(offset, 1))
                return false;
            value = _data[offset];
            return true;
        }

        /// <summary>Reads a little-endian 16-bit value; false past the end.</summary>
        public bool U16(ulong offset, out ushort value)
        {
            value = 0;
            if (!Contains(offset, 2))
                return false;
            value = (ushort)(_data[offset] | (_data[offset + 1] << 8));
            return true;
        }

        /// <summary>Reads a little-endian 32-bit value; false past the end.</summary>
        public bool U32(ulong offset, out uint value)
        {
            value = 0;
            if (!Contains(offset, 4))
                return false;
            value = (uint)_data[offset] | ((uint)_data[offset + 1] << 8) | ((uint)_data[offset + 2] << 16) | ((uint)_data[offset + 3] << 24);
            return true;
        }

        /// <summary>Reads a little-endian 64-bit value; false past the end.</summary>
        public bool U64(ulong offset, out ulong value)
        {
            value = 0;
            if (!U32(offset, out uint low) || !U32(offset + 4, out uint high))
                return false;
            value = low | ((ulong)high << 32);
            return true;
        }

        /// <summary>Reads without a check; only for offsets a caller has already checked with <see cref="Contains"/>.</summary>
        public uint U32Unchecked(ulong offset) =>
            (uint)_data[offset] | ((uint)_data[offset + 1] << 8) | ((uint)_data[offset + 2] << 16) | ((uint)_data[offset + 3] << 24);
    }
}
