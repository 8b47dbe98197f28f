namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// How the devices of a VM with several vCPUs tell a vCPU that something became pending for
    /// it (an interrupt in its local APIC, a PIC interrupt for vCPU 0, an NMI, INIT or start-up
    /// IPI): the kernel wakes the vCPU's thread if it is halted, or forces it out of guest mode if
    /// it is running, so that its run loop looks at its devices again (docs/devices.md, "Several
    /// vCPUs").
    /// </summary>
    /// <remarks>
    /// Called with the VM's <see cref="DeviceLock"/> held, after the state the vCPU will find was
    /// updated: an implementation must never take that lock, nor wait for the target vCPU to
    /// answer (the target may be spinning on the lock). A kick must be sticky: one that arrives
    /// between the target's last look (under the lock) and its going to sleep must still wake it.
    /// The devices may kick the vCPU whose own exit caused the event (an IOAPIC message or a PIC
    /// interrupt raised by that vCPU's port write or poll): that must be harmless (at most a
    /// spurious wake-up or one more look at the devices).
    /// </remarks>
    public interface IVcpuKick
    {
        /// <summary>Something became pending for vCPU <paramref name="vcpu"/> (0 is the BSP).</summary>
        void Kick(int vcpu);
    }
}
