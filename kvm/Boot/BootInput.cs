namespace Tandem.Kvm.Boot
{
    /// <summary>A module (or initrd) handed to the guest: its bytes and its own command line.</summary>
    public unsafe struct BootModule
    {
        /// <summary>The module's bytes.</summary>
        public byte* Data;
        /// <summary>Number of bytes at Data.</summary>
        public ulong Length;
        /// <summary>The module's command line; ends at its first NUL or after <see cref="CmdlineLength"/> bytes.</summary>
        public byte* Cmdline;
        /// <summary>Bytes at Cmdline (at most).</summary>
        public ulong CmdlineLength;
    }

    /// <summary>
    /// What a loader is given: the image it does not trust, the guest's command line and modules,
    /// and the ACPI RSDP address when the VM has ACPI tables (0 otherwise). Command lines end at
    /// their first NUL or after their length; the loader writes them with a terminating NUL.
    /// </summary>
    public unsafe struct BootInput
    {
        /// <summary>The image to load.</summary>
        public byte* Image;
        /// <summary>Its length in bytes.</summary>
        public ulong ImageLength;
        /// <summary>The guest's command line (may be null).</summary>
        public byte* Cmdline;
        /// <summary>Bytes at Cmdline (at most); the line ends at its first NUL.</summary>
        public ulong CmdlineLength;
        /// <summary>The modules (Linux: the first is the initrd).</summary>
        public BootModule* Modules;
        /// <summary>Number of entries at Modules.</summary>
        public int ModuleCount;
        /// <summary>Guest-physical address of the ACPI RSDP, or 0.</summary>
        public ulong RsdpAddress;
    }
}
