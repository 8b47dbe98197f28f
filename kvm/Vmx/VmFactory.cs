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
                ushort vpid = Vcpu.AllocateVpid();
                ulong vmcs = vpid == 0 ? 0 : KvmHost.AllocatePage();
                ulong registers = vmcs == 0 ? 0 : KvmHost.AllocatePage();
                if (registers == 0)
                {
                    problem = vpid == 0 ? "no VPID is free: 4095 vCPUs are live" : "out of memory for the VMCS";
                    if (vmcs != 0)
                        KvmHost.FreePages(vmcs, 1);
                    for (int k = 0; k < i; k++)
                        vcpus[k].Release();     // never loaded: gives back the VPID and the pages
                    if (vpid != 0)
                        Vcpu.ReleaseUnusedVpid(vpid);
                    return null;
                }
                *(uint*)vmcs = VmxCpu.RevisionId;
                vcpus[i] = new Vcpu(vm, i, vmcs, registers, vpid);
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
