using Tandem.Kvm.Boot;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// Loads a guest image into a VM and prepares its VMCS from the loader's <see cref="BootEntry"/>.
    /// The format is recognised in this order: Tandem's test-guest header ("TGST": <see cref="FlatLoader"/>),
    /// a Linux bzImage (the "HdrS" setup header: <see cref="LinuxLoader"/>, 64-bit entry), a
    /// multiboot2 header, a multiboot (v1) header, an ELF with the Xen PHYS32_ENTRY note (PVH), and
    /// otherwise a flat 32-bit image loaded at 1 MiB. A malformed image is refused before anything
    /// runs, with the loader's message naming the field and its value (docs/guests.md).
    /// </summary>
    public static unsafe class GuestImage
    {
        public const ulong LoadAddress = FlatLoader.LoadAddress;

        /// <summary>The loader a format check picked, for the log.</summary>
        public enum Format
        {
            Flat,
            Linux,
            Multiboot2,
            Multiboot,
            Pvh,
        }

        /// <summary>Copies the image into guest RAM and prepares the VMCS. Returns null or the reason it cannot run.</summary>
        public static string? Load(Vcpu vcpu, byte* image, ulong length)
        {
            BootInput input = default;
            input.Image = image;
            input.ImageLength = length;
            return Load(vcpu, input, out _);
        }

        /// <summary>Loads <paramref name="input"/> (image, command line, modules) with the loader its format asks for.</summary>
        public static string? Load(Vcpu vcpu, in BootInput input, out Format format)
        {
            IGuestMemory memory = vcpu.Vm.Memory;
            var ram = new GuestMemoryRam(memory);
            var map = new GuestMemoryMap(memory.Size);
            format = Detect(input);
            // The ACPI tables (RSDP, XSDT/RSDT, FADT, FACS, MADT, DSDT with _S5) in the BIOS area at
            // 0xE0000, where a legacy scan finds the RSDP; PVH kernels get its address directly.
            BootInput boot = input;
            // The platform's fw_cfg file etc/acpi/rsdp holds the same RSDP (PcPlatform, same config and base).
            if (memory.Size >= Acpi.AcpiTables.BiosAreaEnd)
            {
                if (!Acpi.AcpiTables.Write(ref ram, vcpu.Vm.Platform.AcpiConfig, Devices.PcPlatform.AcpiBase, Acpi.AcpiTables.BiosAreaEnd, out Acpi.AcpiLayout acpi))
                    return "the ACPI tables could not be written into guest RAM (out of host memory?)";
                boot.RsdpAddress = acpi.Rsdp;
            }
            // fw_cfg's command line items carry the line the loader hands the guest.
            if (input.Cmdline != null)
            {
                ulong n = 0;
                while (n < input.CmdlineLength && input.Cmdline[n] != 0)
                    n++;
                vcpu.Vm.Platform.FwCfg.SetCommandLine(new System.ReadOnlySpan<byte>(input.Cmdline, (int)n));
            }
            BootEntry entry;
            LoadError error;
            bool ok;
            switch (format)
            {
                case Format.Linux: ok = LinuxLoader.Load(ref ram, map, boot, out entry, out error); break;
                case Format.Multiboot2: ok = Multiboot2Loader.Load(ref ram, map, boot, out entry, out error); break;
                case Format.Multiboot: ok = MultibootLoader.Load(ref ram, map, boot, out entry, out error); break;
                case Format.Pvh: ok = PvhLoader.Load(ref ram, map, boot, out entry, out error); break;
                default: ok = FlatLoader.Load(ref ram, map, boot, out entry, out error); break;
            }
            if (!ok)
            {
                // The message names the field and its value; the caller says which VM.
                var sink = new LogSink();
                ulong f = KvmHost.LogBegin();
                KvmHost.Write("vm: ");
                KvmHost.Write(FormatName(format));
                KvmHost.Write(": ");
                error.WriteTo(ref sink);
                KvmHost.WriteChar('\n');
                KvmHost.LogEnd(f);
                return "the guest image was refused (see the line above)";
            }
            GuestRegisters* r = vcpu.Registers;
            r->Rax = entry.Rax;
            r->Rbx = entry.Rbx;
            r->Rsi = entry.Rsi;
            // Interrupts off: the thread must not be switched (another vCPU's VMCS made current on
            // this CPU) between the VMPTRLD and the last VMWRITE.
            ulong flags = Vcpu.DisableInterrupts();
            vcpu.MakeCurrent();
            string? problem = VmcsSetup.Initialize(vcpu, entry);
            Vcpu.RestoreInterrupts(flags);
            return problem;
        }

        public static string FormatName(Format format)
        {
            switch (format)
            {
                case Format.Linux: return "Linux bzImage";
                case Format.Multiboot2: return "multiboot2";
                case Format.Multiboot: return "multiboot";
                case Format.Pvh: return "PVH ELF";
                default: return "flat image";
            }
        }

        public static Format Detect(in BootInput input)
        {
            var image = new ImageReader(input.Image, input.ImageLength);
            if (input.ImageLength >= 4 && *(uint*)input.Image == 0x54534754)    // "TGST"
                return Format.Flat;
            if (LinuxLoader.HasSetupHeader(image))
                return Format.Linux;
            if (Multiboot2Loader.FindHeader(image, out _, out LoadError e2) || e2.Kind == LoadErrorKind.Malformed)
                return Format.Multiboot2;
            if (MultibootLoader.FindHeader(image, out _, out LoadError e1) || e1.Kind == LoadErrorKind.Malformed)
                return Format.Multiboot;
            if (ElfImage.HasMagic(image))
                return Format.Pvh;
            return Format.Flat;
        }

        /// <summary>A loader's message into the kernel log.</summary>
        private struct LogSink : ITextSink
        {
            public void WriteChar(char c) => KvmHost.WriteChar(c);

            public void WriteHex(ulong value) => KvmHost.WriteHex(value);

            public void WriteDecimal(ulong value) => KvmHost.WriteDecimal(value);
        }
    }
}
