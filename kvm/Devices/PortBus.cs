namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The VM's port I/O space: ranges of ports claimed by devices. A port nobody claims reads as
    /// all ones and ignores writes, as on a PC's ISA bus. Registration happens while the VM is
    /// built (single-threaded); lookups are then read-only.
    /// </summary>
    public sealed class PortBus
    {
        private readonly ushort[] _first;
        private readonly ushort[] _count;
        private readonly IPortDevice[] _device;
        private int _ranges;

        /// <summary>A bus with room for <paramref name="capacity"/> port ranges.</summary>
        public PortBus(int capacity)
        {
            _first = new ushort[capacity];
            _count = new ushort[capacity];
            _device = new IPortDevice[capacity];
        }

        /// <summary>Ranges registered so far.</summary>
        public int Ranges => _ranges;

        /// <summary>Claims ports <paramref name="first"/> .. first + count - 1. False if full, empty, past 0xFFFF or overlapping.</summary>
        public bool Register(ushort first, int count, IPortDevice device)
        {
            if (count <= 0 || first + count > 0x10000 || _ranges == _first.Length)
                return false;
            for (int i = 0; i < _ranges; i++)
            {
                if (first < _first[i] + _count[i] && _first[i] < first + count)
                    return false;
            }
            _first[_ranges] = first;
            _count[_ranges] = (ushort)count;
            _device[_ranges] = device;
            _ranges++;
            return true;
        }

        /// <summary>The device that claims <paramref name="port"/>, or null.</summary>
        public IPortDevice? Find(ushort port)
        {
            for (int i = 0; i < _ranges; i++)
            {
                if ((uint)(port - _first[i]) < _count[i])
                    return _device[i];
            }
            return null;
        }

        /// <summary>The value mask of an access of <paramref name="size"/> bytes.</summary>
        public static uint Mask(int size) => size == 1 ? 0xFFu : size == 2 ? 0xFFFFu : 0xFFFF_FFFFu;

        /// <summary>A guest read of <paramref name="size"/> bytes (1, 2 or 4).</summary>
        public uint Read(ushort port, int size)
        {
            IPortDevice? d = Find(port);
            return (d == null ? 0xFFFF_FFFFu : d.Read(port, size)) & Mask(size);
        }

        /// <summary>A guest write of <paramref name="size"/> bytes (1, 2 or 4).</summary>
        public void Write(ushort port, int size, uint value)
        {
            IPortDevice? d = Find(port);
            if (d != null)
                d.Write(port, size, value & Mask(size));
        }
    }
}
