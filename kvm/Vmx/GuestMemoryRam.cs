using Tandem.Kvm.Boot;

namespace Tandem.Kvm.Vmx
{
    /// <summary>The loaders' view (<see cref="IGuestRam"/>) of a VM's <see cref="IGuestMemory"/>.</summary>
    public readonly unsafe struct GuestMemoryRam : IGuestRam
    {
        private readonly IGuestMemory _memory;

        public GuestMemoryRam(IGuestMemory memory)
        {
            _memory = memory;
        }

        public bool Write(ulong gpa, byte* source, ulong length) => _memory.Write(gpa, source, length);

        public bool Zero(ulong gpa, ulong length)
        {
            byte* zeros = stackalloc byte[512];
            new System.Span<byte>(zeros, 512).Clear();
            while (length != 0)
            {
                ulong n = length < 512 ? length : 512;
                if (!_memory.Write(gpa, zeros, n))
                    return false;
                gpa += n;
                length -= n;
            }
            return true;
        }
    }
}
