namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// The VMs that exist, for the monitor (docs/monitor.md): <see cref="VmFactory"/> adds each VM it
    /// makes, <see cref="Vm.Release"/> takes it out. A fixed table, lock-free (compare-exchange on
    /// the slots). When it is full, a VM that was never released gives its slot up: first a stopped
    /// one, then one without vCPU threads (made but never started, or run by a test on its own
    /// thread). A VM that finds no slot at all is simply not listed (the monitor does not see it);
    /// one that loses its slot is only hidden from the monitor.
    /// </summary>
    public static class VmRegistry
    {
        public const int Capacity = 64;
        private static readonly Vm?[] s_slots = new Vm?[Capacity];

        /// <summary>Lists <paramref name="vm"/>; false when every slot holds a live VM.</summary>
        public static bool Add(Vm vm)
        {
            for (int pass = 0; pass < 3; pass++)
            {
                for (int i = 0; i < Capacity; i++)
                {
                    Vm? old = s_slots[i];
                    bool idle = old != null && System.Threading.Volatile.Read(ref old.RunningVcpus) == 0;
                    bool free = old == null || (pass == 1 && idle && old.Stopped) || (pass == 2 && idle);
                    if (free && System.Threading.Interlocked.CompareExchange(ref s_slots[i], vm, old) == old)
                        return true;
                }
            }
            return false;
        }

        /// <summary>Takes <paramref name="vm"/> off the list (a no-op when it is not there).</summary>
        public static void Remove(Vm vm)
        {
            for (int i = 0; i < Capacity; i++)
            {
                if (s_slots[i] == vm)
                    System.Threading.Interlocked.CompareExchange(ref s_slots[i], null, vm);
            }
        }

        /// <summary>The VM in slot <paramref name="index"/> (0 to <see cref="Capacity"/> - 1), or null.</summary>
        public static Vm? At(int index) => (uint)index < Capacity ? s_slots[index] : null;

        /// <summary>The listed VM with this id, or null.</summary>
        public static Vm? Find(int id)
        {
            for (int i = 0; i < Capacity; i++)
            {
                Vm? vm = s_slots[i];
                if (vm != null && vm.Id == id)
                    return vm;
            }
            return null;
        }
    }
}
