namespace Tandem.Kvm.Vmx
{
    /// <summary>Creates VMs: guest memory, the vCPU and its VMCS.</summary>
    public static unsafe class VmFactory
    {
        private static int s_nextId;

        /// <summary>Returns the VM, or null with <paramref name="problem"/> set.</summary>
        public static Vm? Create(IGuestMemory memory, out string? problem)
        {
            problem = VmxCpu.Enable();
            if (problem != null)
                return null;
            ulong vmcs = KvmHost.AllocatePage();
            ulong registers = KvmHost.AllocatePage();
            if (vmcs == 0 || registers == 0)
            {
                problem = "out of memory for the VMCS";
                return null;
            }
            *(uint*)vmcs = VmxCpu.RevisionId;
            var vm = new Vm(System.Threading.Interlocked.Increment(ref s_nextId), memory);
            vm.Vcpu = new Vcpu(vm, vmcs, registers);
            return vm;
        }
    }
}
