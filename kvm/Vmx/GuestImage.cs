using Tandem.Kvm.Boot;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// A guest image: a flat binary loaded at <see cref="LoadAddress"/>. Tandem's test guests start
    /// with a 16-byte header, "TGST", u32 mode (32 or 64), u32 entry offset, u32 reserved; an image
    /// without it is a 32-bit protected-mode image entered at its first byte. The loading itself is
    /// <see cref="FlatLoader"/> (kvm/Boot); this class hands its result to the VMCS.
    /// </summary>
    public static unsafe class GuestImage
    {
        public const ulong LoadAddress = FlatLoader.LoadAddress;

        /// <summary>Copies the image into guest RAM and prepares the VMCS. Returns null or the reason it cannot run.</summary>
        public static string? Load(Vcpu vcpu, byte* image, ulong length)
        {
            IGuestMemory memory = vcpu.Vm.Memory;
            var ram = new GuestMemoryRam(memory);
            var map = new GuestMemoryMap(memory.Size);
            BootInput input = default;
            input.Image = image;
            input.ImageLength = length;
            if (!FlatLoader.Load(ref ram, map, input, out BootEntry entry, out LoadError error))
                return error.Template;
            vcpu.MakeCurrent();
            GuestMode mode = entry.Mode == BootMode.Long64 ? GuestMode.Long64 : GuestMode.Protected32;
            return VmcsSetup.Initialize(vcpu, mode, entry.Rip, entry.Rsp, entry.Cr3);
        }
    }
}
