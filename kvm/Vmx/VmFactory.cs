using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx
{
    /// <summary>Creates VMs: guest memory, the vCPU and its VMCS.</summary>
    public static unsafe class VmFactory
    {
        private static int s_nextId;

        /// <summary>Returns the VM, or null with <paramref name="problem"/> set.</summary>
        /// <summary>The most vCPUs one VM may have.</summary>
        public const int MaxCpus = 16;

        public static Vm? Create(IGuestMemory memory, out string? problem, int cpus = 1)
        {
            problem = VmxCpu.Enable();
            if (problem != null)
                return null;
            if (cpus < 1 || cpus > MaxCpus)
            {
                problem = "a VM has 1 to 16 vCPUs";
                return null;
            }
            var vm = new Vm(System.Threading.Interlocked.Increment(ref s_nextId), memory, cpus);
            var vcpus = new Vcpu[cpus];
            // Every vCPU's TSC starts at 0 now, as on a machine just switched on, and they agree: the
            // host's TSC (its uptime) is not the guest's business. Where TSC offsetting is missing
            // the offset is not used (VmcsSetup), and the guest sees the host's TSC.
            ulong tscOffset = 0UL - Native.Rdtsc();
            for (int i = 0; i < cpus; i++)
            {
                ulong vmcs = KvmHost.AllocatePage();
                ulong registers = KvmHost.AllocatePage();
                if (vmcs == 0 || registers == 0)
                {
                    problem = "out of memory for the VMCS";
                    return null;
                }
                *(uint*)vmcs = VmxCpu.RevisionId;
                vcpus[i] = new Vcpu(vm, i, vmcs, registers);
                vcpus[i].TscOffset = tscOffset;
                vm.Platform.Lapics[i].TscAtZero = tscOffset;
            }
            vm.Vcpus = vcpus;
            vm.Vcpu = vcpus[0];
            VmRegistry.Add(vm);              // the monitor lists it (kvm/Vmx/VmRegistry.cs)
            return vm;
        }
    }
}
