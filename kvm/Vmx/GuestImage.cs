namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// A guest image: a flat binary loaded at <see cref="LoadAddress"/>. Tandem's test guests start
    /// with a 16-byte header, "TGST", u32 mode (32 or 64), u32 entry offset, u32 reserved; an image
    /// without it is a 32-bit protected-mode image entered at its first byte.
    /// </summary>
    public static unsafe class GuestImage
    {
        public const ulong LoadAddress = 0x10_0000;
        private const ulong PageTables = 0x1000;     // PML4, PDPT, PD for 64-bit guests

        /// <summary>Copies the image into guest RAM and prepares the VMCS. Returns null or the reason it cannot run.</summary>
        public static string? Load(Vcpu vcpu, byte* image, ulong length)
        {
            IGuestMemory memory = vcpu.Vm.Memory;
            if (length == 0)
                return "the guest image is empty";
            if (LoadAddress + length > memory.Size)
                return "the guest image does not fit in guest RAM";
            GuestMode mode = GuestMode.Protected32;
            ulong entry = LoadAddress;
            if (length >= 16 && *(uint*)image == 0x54534754)   // "TGST"
            {
                uint m = *(uint*)(image + 4);
                uint offset = *(uint*)(image + 8);
                if (m != 32 && m != 64)
                    return "the guest image header names an unknown mode";
                if (offset >= length)
                    return "the guest image's entry point is outside the image";
                mode = (GuestMode)m;
                entry = LoadAddress + offset;
            }
            if (!memory.Write(LoadAddress, image, length))
                return "guest RAM could not be populated (out of host memory?)";

            ulong cr3 = 0;
            if (mode == GuestMode.Long64)
            {
                if (memory.Size > 1UL << 30)
                    return "64-bit test guests support at most 1 GiB of RAM";
                // Identity-map the first GiB with 2 MiB pages: PML4[0] → PDPT[0] → PD.
                ulong* table = stackalloc ulong[512];
                new System.Span<ulong>(table, 512).Clear();
                table[0] = (PageTables + 0x1000) | 3;
                bool ok = memory.Write(PageTables, (byte*)table, 4096);
                table[0] = (PageTables + 0x2000) | 3;
                ok &= memory.Write(PageTables + 0x1000, (byte*)table, 4096);
                for (ulong i = 0; i < 512; i++)
                    table[i] = (i << 21) | 0x83;                // present, writable, 2 MiB
                ok &= memory.Write(PageTables + 0x2000, (byte*)table, 4096);
                if (!ok)
                    return "guest page tables could not be written (out of host memory?)";
                cr3 = PageTables;
            }
            ulong stackTop = memory.Size - 64;
            vcpu.MakeCurrent();
            return VmcsSetup.Initialize(vcpu, mode, entry, stackTop, cr3);
        }
    }
}
