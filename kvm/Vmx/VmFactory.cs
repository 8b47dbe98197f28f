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
            if (!MakeVcpus(vm, cpus, true, out problem))
                return null;
            VmRegistry.Add(vm);              // the monitor lists it (kvm/Vmx/VmRegistry.cs)
            return vm;
        }

        /// <summary>
        /// The VM that takes over from <paramref name="source"/> in an in-host move: as many vCPUs,
        /// each given the state the source's pause took (<see cref="Vcpu.SavedState"/>), and the
        /// source's device models with their state. Its guest RAM is <paramref name="memory"/> (a
        /// userfault region that is filled from the source's). The source must be paused with
        /// <see cref="Vm.SaveStateOnPause"/>, with every vCPU's state taken, and must not run again.
        /// Returns the VM, or null with <paramref name="problem"/> set (the source is unchanged then).
        /// </summary>
        public static Vm? CreateTakingOver(IGuestMemory memory, Vm source, out string? problem)
        {
            problem = VmxCpu.Enable();
            if (problem != null)
                return null;
            if (memory.Size != source.Memory.Size)
            {
                problem = "the new VM's RAM differs in size from the source's";
                return null;
            }
            for (int i = 0; i < source.Vcpus.Length; i++)
            {
                if (System.Threading.Volatile.Read(ref source.Vcpus[i].SavedState) == null)
                {
                    problem = "a vCPU of the source did not stop for the move (halted in the guest?)";
                    return null;
                }
            }
            var vm = new Vm(System.Threading.Interlocked.Increment(ref s_nextId), memory, source.Platform);
            if (!MakeVcpus(vm, source.Vcpus.Length, false, out problem))
            {
                source.Platform.AdoptBy(source, source);
                return null;
            }
            for (int i = 0; i < vm.Vcpus.Length; i++)
            {
                problem = source.Vcpus[i].SavedState!.Restore(vm.Vcpus[i]);
                if (problem != null)
                {
                    for (int k = 0; k < vm.Vcpus.Length; k++)
                        vm.Vcpus[k].Release();
                    source.Platform.AdoptBy(source, source);
                    return null;
                }
            }
            VmRegistry.Add(vm);
            return vm;
        }

        /// <summary>
        /// The vCPUs of a new VM (VPID, VMCS and register pages each); on failure everything taken is
        /// given back. <paramref name="powerOn"/>: the guest's TSC starts at 0 (a VM taking over keeps
        /// the source's TSC and local APIC timers instead).
        /// </summary>
        private static bool MakeVcpus(Vm vm, int cpus, bool powerOn, out string? problem)
        {
            problem = null;
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
                    return false;
                }
                *(uint*)vmcs = VmxCpu.RevisionId;
                vcpus[i] = new Vcpu(vm, i, vmcs, registers, vpid);
                if (powerOn)
                {
                    vcpus[i].TscOffset = tscOffset;
                    vm.Platform.Lapics[i].TscAtZero = tscOffset;
                }
            }
            vm.Vcpus = vcpus;
            vm.Vcpu = vcpus[0];
            return true;
        }
    }
}
