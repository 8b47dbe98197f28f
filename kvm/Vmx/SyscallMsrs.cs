using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// The guest's SYSCALL and SWAPGS MSRs (STAR, LSTAR, CSTAR, FMASK, KERNEL_GS_BASE) live in the
    /// CPU itself while one of its vCPUs runs there: the VMCS has no fields for them, and SYSCALL,
    /// SYSRET and SWAPGS use the hardware MSRs without an exit. The host never executes those
    /// instructions, so it leaves the guest's values in place after an exit and reloads only when
    /// another vCPU comes to this CPU (the way KVM defers its "user return" MSRs).
    ///
    /// <para>Ownership: <c>s_owner[cpu]</c> is the vCPU whose values that CPU holds. It is read and
    /// written only on that CPU with interrupts off (the switch-in hook, an MSR exit, or the
    /// VMCLEAR call that <see cref="Vcpu.MakeCurrent"/> sends to the vCPU's previous CPU), so it
    /// needs no lock. SWAPGS changes KERNEL_GS_BASE in hardware without an exit, so the vCPU's copy
    /// of it is stale while it owns a CPU: <see cref="Release"/> reads it back before the CPU is
    /// given to another vCPU or the vCPU moves, and a guest RDMSR reads the hardware.</para>
    /// </summary>
    internal static unsafe class SyscallMsrs
    {
        public const uint Star = 0xC000_0081, Lstar = 0xC000_0082, Cstar = 0xC000_0083, Fmask = 0xC000_0084;
        public const uint KernelGsBase = 0xC000_0102;

        private const int MaxCpus = 64;
        private static readonly Vcpu?[] s_owner = new Vcpu?[MaxCpus];

        /// <summary>How often values were written into a CPU (a vCPU came to a CPU another had).</summary>
        public static long Loads;

        /// <summary>Before <paramref name="v"/> enters on this CPU: makes the CPU hold its values.</summary>
        public static void Acquire(Vcpu v)
        {
            int cpu = KvmHost.CurrentCpu();
            Vcpu? owner = s_owner[cpu];
            if (owner == v)
                return;
            if (owner != null)
                owner.Msrs.KernelGsBase = Native.ReadMsr(KernelGsBase);
            Native.WriteMsr(Star, v.Msrs.Star);
            Native.WriteMsr(Lstar, v.Msrs.Lstar);
            Native.WriteMsr(Cstar, v.Msrs.Cstar);
            Native.WriteMsr(Fmask, v.Msrs.Fmask);
            Native.WriteMsr(KernelGsBase, v.Msrs.KernelGsBase);
            s_owner[cpu] = v;
            Loads++;
        }

        /// <summary>
        /// On this CPU: if it holds <paramref name="v"/>'s values, reads back what SWAPGS may have
        /// changed and gives the CPU up, so the vCPU's copy is whole (before it moves or ends).
        /// </summary>
        public static void Release(Vcpu v)
        {
            int cpu = KvmHost.CurrentCpu();
            if (s_owner[cpu] != v)
                return;
            v.Msrs.KernelGsBase = Native.ReadMsr(KernelGsBase);
            s_owner[cpu] = null;
        }

        /// <summary>Whether this CPU holds <paramref name="v"/>'s values now (in an exit handler).</summary>
        public static bool Holds(Vcpu v) => s_owner[KvmHost.CurrentCpu()] == v;
    }
}
