namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The VM's MMIO space: guest-physical ranges claimed by devices, outside RAM. Registration
    /// happens while the VM is built; lookups are then read-only.
    /// </summary>
    public sealed class MmioMap
    {
        private readonly ulong[] _base;
        private readonly ulong[] _size;
        private readonly IMmioDevice[] _device;
        private int _ranges;

        /// <summary>A map with room for <paramref name="capacity"/> ranges.</summary>
        public MmioMap(int capacity)
        {
            _base = new ulong[capacity];
            _size = new ulong[capacity];
            _device = new IMmioDevice[capacity];
        }

        /// <summary>Claims [<paramref name="baseAddress"/>, + <paramref name="size"/>). False if full, empty, wrapping or overlapping.</summary>
        public bool Register(ulong baseAddress, ulong size, IMmioDevice device)
        {
            if (size == 0 || baseAddress + size < baseAddress || _ranges == _base.Length)
                return false;
            for (int i = 0; i < _ranges; i++)
            {
                if (baseAddress < _base[i] + _size[i] && _base[i] < baseAddress + size)
                    return false;
            }
            _base[_ranges] = baseAddress;
            _size[_ranges] = size;
            _device[_ranges] = device;
            _ranges++;
            return true;
        }

        /// <summary>The device whose range holds all of [<paramref name="gpa"/>, + <paramref name="size"/>), and the offset into it; null if none.</summary>
        public IMmioDevice? Find(ulong gpa, int size, out ulong offset)
        {
            for (int i = 0; i < _ranges; i++)
            {
                ulong o = gpa - _base[i];
                if (gpa >= _base[i] && o < _size[i] && (ulong)size <= _size[i] - o)
                {
                    offset = o;
                    return _device[i];
                }
            }
            offset = 0;
            return null;
        }
    }
}
