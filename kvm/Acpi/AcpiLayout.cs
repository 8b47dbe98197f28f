namespace Tandem.Kvm.Acpi
{
    /// <summary>Where <see cref="AcpiTables"/> put each table: guest-physical addresses, all below 4 GiB.</summary>
    public struct AcpiLayout
    {
        /// <summary>The RSDP (the address the loaders hand on: <c>BootInput.RsdpAddress</c>); the base of the block.</summary>
        public ulong Rsdp;
        /// <summary>The FACS (64-byte aligned).</summary>
        public ulong Facs;
        /// <summary>The DSDT.</summary>
        public ulong Dsdt;
        /// <summary>The FADT ("FACP").</summary>
        public ulong Fadt;
        /// <summary>The MADT ("APIC").</summary>
        public ulong Madt;
        /// <summary>The XSDT.</summary>
        public ulong Xsdt;
        /// <summary>The RSDT.</summary>
        public ulong Rsdt;
        /// <summary>Bytes from <see cref="Rsdp"/> to the end of the last table.</summary>
        public int Length;
    }
}
