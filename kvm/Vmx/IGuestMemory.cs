namespace Tandem.Kvm.Vmx
{
    /// <summary>How a VM's guest-physical memory is backed and mapped by EPT.</summary>
    public unsafe interface IGuestMemory
    {
        /// <summary>The EPT pointer for the VMCS (SDM Vol. 3C, 25.6.11).</summary>
        ulong EptPointer { get; }

        /// <summary>Guest RAM size in bytes (gpa 0 .. size).</summary>
        ulong Size { get; }

        /// <summary>
        /// Copies <paramref name="length"/> bytes into guest-physical memory at <paramref name="gpa"/>
        /// (loaders), faulting pages in as needed. Each page is written while a reference on its
        /// frame is held, so reclaim cannot free it under the copy. False if the range leaves guest
        /// RAM or a page cannot be faulted in.
        /// </summary>
        bool Write(ulong gpa, byte* data, ulong length);

        /// <summary>Copies guest-physical memory out (checks, dumps); same rules as <see cref="Write"/>.</summary>
        bool Read(ulong gpa, byte* data, ulong length);

        /// <summary>
        /// Called by the run loop before every VM entry on <paramref name="cpu"/>: that CPU may cache
        /// this VM's EPT translations from now on, so remote INVEPTs must reach it.
        /// </summary>
        void ActivateOn(int cpu);

        /// <summary>
        /// True when <paramref name="gpa"/> is memory of this VM: its RAM, or memory shared into it
        /// from another VM (a foreign memslot, which may lie above RAM). Anything else is the bus's
        /// (devices, or unassigned).
        /// </summary>
        bool Maps(ulong gpa);

        /// <summary>Handles an EPT violation at <paramref name="gpa"/>; returns null or why the VM must stop.</summary>
        string? HandleViolation(ulong gpa, ulong qualification);

        /// <summary>Number of EPT violations resolved by faulting a page in.</summary>
        ulong FaultsHandled { get; }

        /// <summary>
        /// The VM has stopped and no vCPU will enter it again: gives its memory back through the mm
        /// core (the address space dies: its notifiers, the EPT among them, release their mappings
        /// and tables; the guest's frames go back to the pool). Calling it twice is harmless.
        /// </summary>
        void Release();
    }
}
