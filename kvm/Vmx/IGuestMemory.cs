namespace Tandem.Kvm.Vmx
{
    /// <summary>How a VM's guest-physical memory is backed and mapped by EPT.</summary>
    public unsafe interface IGuestMemory
    {
        /// <summary>The EPT pointer for the VMCS (SDM Vol. 3C, 25.6.11).</summary>
        ulong EptPointer { get; }

        /// <summary>Guest RAM size in bytes (gpa 0 .. size).</summary>
        ulong Size { get; }

        /// <summary>Host pointer to guest-physical <paramref name="gpa"/>, for loaders and checks; null if outside RAM.</summary>
        byte* HostPointer(ulong gpa);

        /// <summary>Handles an EPT violation at <paramref name="gpa"/>; returns null or why the VM must stop.</summary>
        string? HandleViolation(ulong gpa, ulong qualification);

        /// <summary>Number of EPT violations resolved by faulting a page in.</summary>
        ulong FaultsHandled { get; }
    }
}
