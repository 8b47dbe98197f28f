namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// Hands out VPIDs (SDM Vol. 3C, 29.1): each live vCPU holds one until it is released, so two
    /// live vCPUs never share a VPID, however many were made before. Lock-free: a VPID is taken and
    /// given back with a compare-exchange on its word of the bitmap. VPID 0 is VMX root's and is
    /// never handed out. Portable (the host tests run it on real threads).
    /// </summary>
    public sealed class VpidAllocator
    {
        private readonly ulong[] _used;
        private readonly int _limit;

        /// <summary>Where the next search starts: a VPID just freed comes back only after all the others.</summary>
        private int _hint;

        /// <summary>An allocator of VPIDs 1 to <paramref name="limit"/> - 1 (<paramref name="limit"/> a power of two, 64 to 65536).</summary>
        public VpidAllocator(int limit)
        {
            if (limit < 64 || limit > 65536 || (limit & (limit - 1)) != 0)
                throw new System.ArgumentOutOfRangeException(nameof(limit));
            _limit = limit;
            _used = new ulong[limit / 64];
            _used[0] = 1;                                   // VPID 0 is VMX root's
        }

        /// <summary>One more than the largest VPID handed out.</summary>
        public int Limit => _limit;

        /// <summary>Takes a free VPID, or returns 0 when all <see cref="Limit"/> - 1 are held.</summary>
        public ushort Allocate()
        {
            int start = System.Threading.Volatile.Read(ref _hint);
            for (int n = 1; n <= _limit; n++)
            {
                int vpid = (start + n) & (_limit - 1);
                ref ulong word = ref _used[vpid >> 6];
                ulong bit = 1UL << (vpid & 63);
                ulong seen = System.Threading.Volatile.Read(ref word);
                while ((seen & bit) == 0)
                {
                    ulong was = System.Threading.Interlocked.CompareExchange(ref word, seen | bit, seen);
                    if (was == seen)
                    {
                        System.Threading.Volatile.Write(ref _hint, vpid);
                        return (ushort)vpid;
                    }
                    seen = was;                             // another bit of the word changed: try again
                }
            }
            return 0;
        }

        /// <summary>
        /// Gives <paramref name="vpid"/> back. The caller has invalidated its cached translations on
        /// every CPU that used it (INVVPID) first: the next holder must not find them.
        /// </summary>
        public void Free(ushort vpid)
        {
            if (vpid == 0 || vpid >= _limit)
                throw new System.ArgumentOutOfRangeException(nameof(vpid));
            ref ulong word = ref _used[vpid >> 6];
            ulong bit = 1UL << (vpid & 63);
            ulong seen = System.Threading.Volatile.Read(ref word);
            while (true)
            {
                if ((seen & bit) == 0)
                    throw new System.InvalidOperationException("a VPID freed twice");
                ulong was = System.Threading.Interlocked.CompareExchange(ref word, seen & ~bit, seen);
                if (was == seen)
                    return;
                seen = was;
            }
        }

        /// <summary>VPIDs held now.</summary>
        public int InUse()
        {
            int n = 0;
            for (int i = 0; i < _used.Length; i++)
                n += System.Numerics.BitOperations.PopCount(System.Threading.Volatile.Read(ref _used[i]));
            return n - 1;                                   // VPID 0 is nobody's
        }
    }
}
