using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;
using Tandem.Kvm.Boot;

namespace Tandem.Kernel.Tests
{
    /// <summary>
    /// The guest loaders (kvm/Boot, fuzzed on the host by Tandem.Kvm.Tests.Loaders.LoaderFuzzTests)
    /// as the kernel runs them: bad images for each, the documented <see cref="LoadError"/>, one
    /// console line per refusal, and nothing written. They write into a byte array with guard
    /// pages on both sides, not into a VM: no VMX needed.
    /// </summary>
    internal static unsafe partial class ParserTests
    {
        private enum GuestLoader
        {
            Multiboot,
            Multiboot2,
            Linux,
            Pvh,
        }

        /// <summary>The fake guest's RAM: 2 MiB, so its map is [0, 0xA0000) RAM, the legacy hole, [1 MiB, 2 MiB) RAM.</summary>
        private const ulong FakeRamSize = 2UL << 20;
        private const int RamGuard = 4096;
        private const byte GuardByte = 0xA5;

        /// <summary>RamGuard bytes, the RAM, RamGuard bytes.</summary>
        private static byte[]? s_ram;
        private static int s_ramWrites, s_ramViolations;
        private static ulong s_violationGpa, s_violationLength;

        /// <summary>
        /// Guest RAM as a byte array. A write outside [0, 2 MiB) or into the legacy hole
        /// (0xA0000-0xFFFFF) is a loader bug: it is counted and refused, never carried out. The
        /// guard bytes around the array show any write that went past it some other way.
        /// </summary>
        private struct GuardedRam : IGuestRam
        {
            public bool Write(ulong gpa, byte* source, ulong length)
            {
                if (!Allowed(gpa, length))
                    return false;
                fixed (byte* ram = s_ram)
                    Native.MemCopy(ram + RamGuard + gpa, source, length);
                return true;
            }

            public bool Zero(ulong gpa, ulong length)
            {
                if (!Allowed(gpa, length))
                    return false;
                fixed (byte* ram = s_ram)
                    Native.MemSet(ram + RamGuard + gpa, 0, length);
                return true;
            }

            private static bool Allowed(ulong gpa, ulong length)
            {
                if (gpa > FakeRamSize || length > FakeRamSize - gpa
                    || (length != 0 && gpa < GuestMemoryMap.LegacyHoleEnd && gpa + length > GuestMemoryMap.LegacyHoleStart))
                {
                    if (s_ramViolations++ == 0)
                    {
                        s_violationGpa = gpa;
                        s_violationLength = length;
                    }
                    return false;
                }
                s_ramWrites++;
                return true;
            }
        }

        /// <summary>A <see cref="LoadError"/> into the kernel log.</summary>
        private struct LogSink : ITextSink
        {
            public void WriteChar(char c) => Log.WriteChar(c);

            public void WriteHex(ulong value) => Log.Hex(value);

            public void WriteDecimal(ulong value) => Log.Write(value);
        }

        private static void Refused(string parser, in LoadError error)
        {
            ulong f = RefusedBegin(parser);
            var sink = new LogSink();
            error.WriteTo(ref sink);
            Log.WriteChar('\n');
            Log.End(f);
        }

        /// <summary>What a loader said when the test expected something else.</summary>
        private static void Unexpected(bool loaded, in LoadError error)
        {
            if (loaded)
            {
                Log.Info($"parsers: the loader accepted the image");
                return;
            }
            // The error writes itself through a sink (WriteTo), which cannot be an interpolated hole.
            ulong f = Log.Begin();
            Log.Write("parsers: the loader's refusal was: ");
            var sink = new LogSink();
            error.WriteTo(ref sink);
            Log.WriteChar('\n');
            Log.End(f);
        }

        private static bool GuardsIntact()
        {
            byte[] ram = s_ram!;
            int end = RamGuard + (int)FakeRamSize;
            for (int i = 0; i < RamGuard; i++)
            {
                if (ram[i] != GuardByte || ram[end + i] != GuardByte)
                    return false;
            }
            return true;
        }

        private static bool RunLoader(GuestLoader loader, byte[] image, int length, string? cmdline, out LoadError error)
        {
            s_ramWrites = 0;
            var ram = new GuardedRam();
            var map = new GuestMemoryMap(FakeRamSize);
            byte[] command = Ascii(cmdline ?? "console=ttyS0");
            bool ok;
            fixed (byte* p = image)
            fixed (byte* c = command)
            {
                var input = new BootInput { Image = p, ImageLength = (ulong)length, Cmdline = c, CmdlineLength = (ulong)command.Length };
                BootEntry entry;
                switch (loader)
                {
                    case GuestLoader.Multiboot:
                        ok = MultibootLoader.Load(ref ram, map, input, out entry, out error);
                        break;
                    case GuestLoader.Multiboot2:
                        ok = Multiboot2Loader.Load(ref ram, map, input, out entry, out error);
                        break;
                    case GuestLoader.Linux:
                        ok = LinuxLoader.Load(ref ram, map, input, out entry, out error);
                        break;
                    default:
                        ok = PvhLoader.Load(ref ram, map, input, out entry, out error);
                        break;
                }
            }
            return ok;
        }

        /// <summary>After every load: no write outside RAM or into the hole, the guard bytes as they were.</summary>
        private static bool StayedInside(TestContext t)
        {
            if (s_ramViolations != 0)
                Log.Info($"parsers: a loader wrote outside the fake guest RAM: gpa {s_violationGpa:x}, length {s_violationLength:x}");
            return t.Check(s_ramViolations == 0, "a loader wrote outside guest RAM or into the legacy hole", (ulong)s_ramViolations)
                && t.Check(GuardsIntact(), "a guard byte around the fake guest RAM changed");
        }

        /// <summary>A well-formed image loads: the fake RAM and the builders are sound, so the refusals below are the bad field's.</summary>
        private static bool Loads(TestContext t, GuestLoader loader, byte[] image, string reason)
        {
            bool ok = RunLoader(loader, image, image.Length, null, out LoadError error);
            if (!ok)
                Unexpected(false, error);
            return t.Check(ok && s_ramWrites > 0, reason) && StayedInside(t);
        }

        /// <summary>
        /// The image (its first <paramref name="length"/> bytes; -1: all) is refused with an error of
        /// <paramref name="kind"/> whose template starts with <paramref name="expected"/>, nothing is
        /// written, and the refusal is printed.
        /// </summary>
        private static bool Refuses(TestContext t, GuestLoader loader, string name, byte[] image, LoadErrorKind kind, string expected, string reason,
            int length = -1, string? cmdline = null)
        {
            bool ok = RunLoader(loader, image, length < 0 ? image.Length : length, cmdline, out LoadError error);
            // A write outside RAM is the worse finding: it is reported first.
            bool inside = StayedInside(t);
            if (!inside || ok || error.Kind != kind || !StartsWith(error.Template, expected))
            {
                Unexpected(ok, error);
                t.Fail(reason);
                return false;
            }
            if (!t.Check(s_ramWrites == 0, "a refused image was partly written", (ulong)s_ramWrites))
                return false;
            Refused(name, error);
            return true;
        }

        private static bool StartsWith(string? text, string prefix)
        {
            if (text == null || text.Length < prefix.Length)
                return false;
            for (int i = 0; i < prefix.Length; i++)
            {
                if (text[i] != prefix[i])
                    return false;
            }
            return true;
        }

        private static void Put16(byte[] b, int at, uint v)
        {
            b[at] = (byte)v;
            b[at + 1] = (byte)(v >> 8);
        }

        /// <summary>Where the PT_LOAD segment's bytes start in the images of <see cref="Elf"/>.</summary>
        private const int ElfData = 0x100;

        /// <summary>
        /// An ELF executable (ELF64 x86-64 or ELF32 i386): one PT_LOAD of <paramref name="dataBytes"/>
        /// bytes at file offset 0x100 going to <paramref name="paddr"/> (p_vaddr the same), then,
        /// with <paramref name="note"/>, a PT_NOTE over it right after the data.
        /// </summary>
        private static byte[] Elf(bool is64, ulong entry, ulong paddr, int dataBytes, ulong memsz, byte[]? note)
        {
            int notes = note == null ? 0 : note.Length;
            var b = new byte[ElfData + dataBytes + notes];
            for (int i = 0; i < dataBytes; i++)
                b[ElfData + i] = (byte)(i % 251 + 1);
            for (int i = 0; i < notes; i++)
                b[ElfData + dataBytes + i] = note![i];
            b[0] = 0x7F; b[1] = (byte)'E'; b[2] = (byte)'L'; b[3] = (byte)'F';
            b[4] = (byte)(is64 ? 2 : 1);
            b[5] = 1;
            b[6] = 1;
            Put16(b, 16, 2);
            Put16(b, 18, is64 ? 62u : 3u);
            Put32(b, 20, 1);
            uint phnum = note == null ? 1u : 2u;
            int ph = is64 ? 64 : 52;
            if (is64)
            {
                Put64(b, 24, entry);
                Put64(b, 32, (ulong)ph);
                Put16(b, 52, 64);
                Put16(b, 54, 56);
                Put16(b, 56, phnum);
            }
            else
            {
                Put32(b, 24, (uint)entry);
                Put32(b, 28, (uint)ph);
                Put16(b, 40, 52);
                Put16(b, 42, 32);
                Put16(b, 44, phnum);
            }
            ProgramHeader(b, is64, 0, ElfImage.PtLoad, ElfData, paddr, (ulong)dataBytes, memsz);
            if (note != null)
                ProgramHeader(b, is64, 1, ElfImage.PtNote, (ulong)(ElfData + dataBytes), 0, (ulong)notes, 0);
            return b;
        }

        /// <summary>Writes program header <paramref name="index"/> (p_vaddr = p_paddr).</summary>
        private static void ProgramHeader(byte[] b, bool is64, int index, uint type, ulong offset, ulong paddr, ulong filesz, ulong memsz)
        {
            if (is64)
            {
                int at = 64 + index * 56;
                Put32(b, at, type);
                Put32(b, at + 4, 7);
                Put64(b, at + 8, offset);
                Put64(b, at + 16, paddr);
                Put64(b, at + 24, paddr);
                Put64(b, at + 32, filesz);
                Put64(b, at + 40, memsz);
            }
            else
            {
                int at = 52 + index * 32;
                Put32(b, at, type);
                Put32(b, at + 4, (uint)offset);
                Put32(b, at + 8, (uint)paddr);
                Put32(b, at + 12, (uint)paddr);
                Put32(b, at + 16, (uint)filesz);
                Put32(b, at + 20, (uint)memsz);
                Put32(b, at + 24, 7);
            }
        }

        /// <summary>Offset of ELF64 program header <paramref name="index"/>'s field at <paramref name="field"/>.</summary>
        private static int Ph64(int index, int field) => 64 + index * 56 + field;

        /// <summary>A "Xen" note of <paramref name="type"/> whose descriptor is <paramref name="descSize"/> bytes holding <paramref name="value"/>.</summary>
        private static byte[] XenNote(uint type, uint descSize, ulong value)
        {
            var b = new byte[16 + ((descSize + 3) & ~3u)];
            Put32(b, 0, 4);
            Put32(b, 4, descSize);
            Put32(b, 8, type);
            b[12] = (byte)'X'; b[13] = (byte)'e'; b[14] = (byte)'n';
            if (descSize >= 8)
                Put64(b, 16, value);
            else if (descSize >= 4)
                Put32(b, 16, (uint)value);
            return b;
        }

        /// <summary>A multiboot (v1) header at <paramref name="at"/>; the checksum is right plus <paramref name="checksumError"/>.</summary>
        private static void MultibootHeader(byte[] b, int at, uint flags, uint checksumError = 0)
        {
            Put32(b, at, MultibootLoader.HeaderMagic);
            Put32(b, at + 4, flags);
            Put32(b, at + 8, unchecked(0u - MultibootLoader.HeaderMagic - flags + checksumError));
        }

        /// <summary>
        /// A multiboot a.out-kludge image (flag 16): 0x40 bytes, the 32-byte header, 0x1A0 bytes; the
        /// header's address fields load the whole file at <paramref name="load"/>.
        /// </summary>
        private static byte[] MultibootAout(uint load, uint loadEnd, uint bssEnd)
        {
            var b = new byte[0x200];
            MultibootHeader(b, 0x40, 1u << 16);
            Put32(b, 0x40 + 12, load + 0x40);       // header_addr
            Put32(b, 0x40 + 16, load);              // load_addr
            Put32(b, 0x40 + 20, loadEnd);           // load_end_addr
            Put32(b, 0x40 + 24, bssEnd);            // bss_end_addr
            Put32(b, 0x40 + 28, load + 0x60);       // entry_addr
            return b;
        }

        /// <summary>A multiboot2 header at <paramref name="at"/> with its checksum right plus <paramref name="checksumError"/> (the tags are the caller's).</summary>
        private static void Multiboot2Header(byte[] b, int at, uint architecture, uint length, uint checksumError = 0)
        {
            Put32(b, at, Multiboot2Loader.HeaderMagic);
            Put32(b, at + 4, architecture);
            Put32(b, at + 8, length);
            Put32(b, at + 12, unchecked(0u - Multiboot2Loader.HeaderMagic - architecture - length + checksumError));
        }

        private static void Tag(byte[] b, int at, ushort type, ushort flags, uint size)
        {
            Put16(b, at, type);
            Put16(b, at + 2, flags);
            Put32(b, at + 4, size);
        }

        /// <summary>A well-formed ELF64 at 1 MiB with a multiboot2 header of <paramref name="length"/> bytes at file offset 0x100 (the first tag at 0x110).</summary>
        private static byte[] Multiboot2Elf(uint length, uint checksumError = 0, uint architecture = 0)
        {
            byte[] b = Elf(true, 0x10_0100, 0x10_0000, 0x200, 0x1000, null);
            Multiboot2Header(b, ElfData, architecture, length, checksumError);
            for (int i = ElfData + 16; i < ElfData + 0x40; i++)
                b[i] = 0;
            return b;
        }

        /// <summary>A bzImage of protocol 2.15: one setup sector after the boot sector, a 4 KiB kernel, relocatable, pref_address 1 MiB, init_size 128 KiB.</summary>
        private static byte[] BzImage()
        {
            var b = new byte[2 * 512 + 0x1000];
            for (int i = 2 * 512; i < b.Length; i++)
                b[i] = (byte)(i % 251 + 1);
            b[(int)LinuxLoader.SetupSects] = 1;
            Put16(b, (int)LinuxLoader.BootFlag, 0xAA55);
            b[(int)LinuxLoader.Jump] = 0xEB;
            b[(int)LinuxLoader.Jump + 1] = 0x66;         // the setup header ends at 0x268
            Put32(b, (int)LinuxLoader.HeaderMagicOffset, LinuxLoader.HeaderMagic);
            Put16(b, (int)LinuxLoader.Version, 0x20F);
            b[(int)LinuxLoader.LoadFlags] = (byte)LinuxLoader.LoadedHigh;
            Put32(b, (int)LinuxLoader.InitrdAddrMax, 0x7FFF_FFFF);
            Put32(b, (int)LinuxLoader.KernelAlignment, 0x20_0000);
            b[(int)LinuxLoader.RelocatableKernel] = 1;
            Put16(b, (int)LinuxLoader.XLoadFlags, LinuxLoader.XlfKernel64);
            Put32(b, (int)LinuxLoader.CmdlineSize, 0x7FF);
            Put64(b, (int)LinuxLoader.PrefAddress, 0x10_0000);
            Put32(b, (int)LinuxLoader.InitSize, 0x2_0000);
            return b;
        }

        /// <summary>
        /// A PVH kernel: ELF64, a PT_LOAD (by default at 1 MiB), a PT_NOTE with
        /// XEN_ELFNOTE_PHYS32_ENTRY 0x10 bytes into the segment, so that only the checks of the
        /// segment itself stand between a bad one and the loader's writes.
        /// </summary>
        private static byte[] PvhElf(ulong paddr = 0x10_0000, ulong memsz = 0x1000) =>
            Elf(true, paddr + 0x10, paddr, 0x200, memsz, XenNote(PvhLoader.Phys32EntryNote, 4, paddr + 0x10));

        public static void GuestLoadersBadInputRefused(TestContext t)
        {
            s_ram = new byte[RamGuard + (int)FakeRamSize + RamGuard];
            for (int i = 0; i < s_ram.Length; i++)
                s_ram[i] = GuardByte;
            s_ramViolations = 0;
            LogCapture.Begin();
            bool done = ElfCases(t) && MultibootCases(t) && Multiboot2Cases(t) && LinuxCases(t) && PvhCases(t);
            LogCapture.End();
            // The console shows the refusals as the kernel prints them (a few lines as written).
            if (done)
            {
                t.Check(LogCapture.Saw("parsers: elf refused bad input: bad ELF: the file is 40 bytes, shorter than its 64-byte header\n")
                    && LogCapture.Saw("parsers: multiboot refused bad input: bad multiboot header at offset 0x100: checksum")
                    && LogCapture.Saw("parsers: linux refused bad input: Linux: boot protocol version 0x205 is older than 2.06 (0x206)\n")
                    && LogCapture.Saw("parsers: pvh refused bad input: bad ELF: note program header 1 ends past the file (offset 0x10000, size 0x14)\n"),
                    "a refusal's console line is not as printed");
            }
            byte[] ram = s_ram;
            s_ram = null;
            KernelHeap.Free(ram);
        }

        /// <summary>ElfImage (under the PVH loader, which reads nothing before it): each check of the header and of PT_LOAD.</summary>
        private static bool ElfCases(TestContext t)
        {
            const GuestLoader L = GuestLoader.Pvh;
            if (!Loads(t, L, PvhElf(), "a good PVH ELF did not load"))
                return false;
            byte[] b = PvhElf();
            if (!Refuses(t, L, "elf", b, LoadErrorKind.Malformed, "bad ELF: the file is {d} bytes, shorter than its", "a truncated ELF header was not refused", length: 40))
                return false;
            b[4] = 3;
            if (!Refuses(t, L, "elf", b, LoadErrorKind.Malformed, "bad ELF: class {d}", "an ELF class of 3 was not refused"))
                return false;
            b = PvhElf();
            b[5] = 2;
            if (!Refuses(t, L, "elf", b, LoadErrorKind.Unsupported, "bad ELF: data encoding", "a big-endian ELF was not refused"))
                return false;
            b = PvhElf();
            Put16(b, 16, 3);
            if (!Refuses(t, L, "elf", b, LoadErrorKind.Unsupported, "bad ELF: e_type {d} is not an executable", "a shared object was not refused"))
                return false;
            b = PvhElf();
            Put16(b, 56, 0);
            if (!Refuses(t, L, "elf", b, LoadErrorKind.Malformed, "bad ELF: no program headers", "an ELF without program headers was not refused"))
                return false;
            b = PvhElf();
            Put16(b, 54, 16);
            if (!Refuses(t, L, "elf", b, LoadErrorKind.Malformed, "bad ELF: e_phentsize {d} is smaller", "a 16-byte e_phentsize was not refused"))
                return false;
            b = PvhElf();
            Put64(b, 32, 0xFFFF_FFFF_FFFF_FFF0);
            if (!Refuses(t, L, "elf", b, LoadErrorKind.Malformed, "bad ELF: the program header table ends past the file", "a program header table past the file was not refused"))
                return false;
            b = PvhElf();
            Put64(b, Ph64(0, 32), 0x2000);
            if (!Refuses(t, L, "elf", b, LoadErrorKind.Malformed, "bad ELF: program header {d} has p_filesz {x} larger than p_memsz", "p_filesz above p_memsz was not refused"))
                return false;
            b = PvhElf();
            Put64(b, Ph64(0, 8), 0x1_0000);
            if (!Refuses(t, L, "elf", b, LoadErrorKind.Malformed, "bad ELF: program header {d} ends past the file", "a segment past the end of the file was not refused"))
                return false;
            if (!Refuses(t, L, "elf", PvhElf(0xFFFF_FFFF_FFFF_F000, 0x2000), LoadErrorKind.Malformed, "bad ELF: program header {d} wraps around", "a segment wrapping past 2^64 was not refused")
                || !Refuses(t, L, "elf", PvhElf(0x1_0000_0000, 0x1000), LoadErrorKind.Unsupported, "ELF: program header {d} ends above what a 32-bit entry reaches", "a segment above 4 GiB was not refused")
                || !Refuses(t, L, "elf", PvhElf(0xA_0000, 0x1000), LoadErrorKind.DoesNotFit, "ELF: program header {d} is not inside guest RAM", "a segment in the legacy hole was not refused")
                || !Refuses(t, L, "elf", PvhElf(0x1F_F000, 0x2000), LoadErrorKind.DoesNotFit, "ELF: program header {d} is not inside guest RAM", "a segment past the end of RAM was not refused"))
                return false;
            return true;
        }

        private static bool MultibootCases(TestContext t)
        {
            const GuestLoader L = GuestLoader.Multiboot;
            byte[] elf = Elf(false, 0x10_0010, 0x10_0000, 0x200, 0x1000, null);
            MultibootHeader(elf, ElfData, 0);
            if (!Loads(t, L, elf, "a good multiboot ELF did not load")
                || !Loads(t, L, MultibootAout(0x10_0000, 0, 0x10_4000), "a good multiboot a.out image did not load"))
                return false;
            MultibootHeader(elf, ElfData, 0, 1);
            if (!Refuses(t, L, "multiboot", elf, LoadErrorKind.Malformed, "bad multiboot header at offset {x}: checksum", "a bad multiboot checksum was not refused"))
                return false;
            elf[ElfData] = 0;
            if (!Refuses(t, L, "multiboot", elf, LoadErrorKind.NotThisFormat, "not a multiboot image", "an image without a multiboot header was not refused"))
                return false;
            MultibootHeader(elf, ElfData, 1u << 3);
            if (!Refuses(t, L, "multiboot", elf, LoadErrorKind.Unsupported, "multiboot: header flags {x} require features", "an unknown required multiboot flag was not refused"))
                return false;
            MultibootHeader(elf, ElfData, 0);
            Put32(elf, 24, 0x20_0000);
            if (!Refuses(t, L, "multiboot", elf, LoadErrorKind.Malformed, "bad ELF: entry point {x} is outside every loadable segment", "an entry point outside the image was not refused"))
                return false;
            elf = Elf(false, 0x1F_F010, 0x1F_F000, 0x200, 0x2000, null);
            MultibootHeader(elf, ElfData, 0);
            if (!Refuses(t, L, "multiboot", elf, LoadErrorKind.DoesNotFit, "ELF: program header {d} is not inside guest RAM", "a multiboot ELF segment past RAM was not refused"))
                return false;
            if (!Refuses(t, L, "multiboot", MultibootAout(0x10_0000, 0, 0), LoadErrorKind.Malformed, "bad multiboot header at offset {x}: flag 16 is set but the address fields end past the file",
                    "a header cut inside its address fields was not refused", length: 0x40 + 16)
                || !Refuses(t, L, "multiboot", MultibootAout(0x10_0000, 0x10_1000, 0), LoadErrorKind.Malformed, "bad multiboot header: load_end_addr {x} runs past the end of the file",
                    "load_end_addr past the file was not refused")
                || !Refuses(t, L, "multiboot", MultibootAout(0x10_0000, 0x10_0100, 0x10_0080), LoadErrorKind.Malformed, "bad multiboot header: bss_end_addr {x} is below",
                    "bss_end_addr below the loaded file was not refused")
                || !Refuses(t, L, "multiboot", MultibootAout(0x30_0000, 0, 0), LoadErrorKind.DoesNotFit, "multiboot: the image is not inside guest RAM",
                    "an a.out image loaded past RAM was not refused")
                || !Refuses(t, L, "multiboot", MultibootAout(0xA_0000, 0, 0), LoadErrorKind.DoesNotFit, "multiboot: the image is not inside guest RAM",
                    "an a.out image loaded into the legacy hole was not refused"))
                return false;
            return true;
        }

        private static bool Multiboot2Cases(TestContext t)
        {
            const GuestLoader L = GuestLoader.Multiboot2;
            const int Tags = ElfData + 16;
            byte[] b = Multiboot2Elf(24);
            Tag(b, Tags, 0, 0, 8);
            if (!Loads(t, L, b, "a good multiboot2 ELF did not load"))
                return false;
            b = Multiboot2Elf(24, 1);
            Tag(b, Tags, 0, 0, 8);
            if (!Refuses(t, L, "multiboot2", b, LoadErrorKind.Malformed, "bad multiboot2 header at offset {x}: checksum", "a bad multiboot2 checksum was not refused"))
                return false;
            b = Multiboot2Elf(24, 0, 4);
            Tag(b, Tags, 0, 0, 8);
            if (!Refuses(t, L, "multiboot2", b, LoadErrorKind.Unsupported, "multiboot2: header architecture {d} is not i386", "a MIPS multiboot2 header was not refused"))
                return false;
            b = Multiboot2Elf(0x1_0000);
            Tag(b, Tags, 0, 0, 8);
            if (!Refuses(t, L, "multiboot2", b, LoadErrorKind.Malformed, "bad multiboot2 header: header_length {x} does not fit in the file", "a header_length past the file was not refused"))
                return false;
            b = Multiboot2Elf(16);
            if (!Refuses(t, L, "multiboot2", b, LoadErrorKind.Malformed, "bad multiboot2 header: the tag list has no end tag", "a header without an end tag was not refused"))
                return false;
            b = Multiboot2Elf(24);
            Tag(b, Tags, 1, 0, 0x100);
            if (!Refuses(t, L, "multiboot2", b, LoadErrorKind.Malformed, "bad multiboot2 header: tag {d} at offset {x} has size {x}, outside the header", "a tag larger than the header was not refused"))
                return false;
            b = Multiboot2Elf(16 + 24 + 8);
            Tag(b, Tags, Multiboot2Loader.TagFramebuffer, 0, 20);
            Tag(b, Tags + 24, 0, 0, 8);
            if (!Refuses(t, L, "multiboot2", b, LoadErrorKind.Unsupported, "multiboot2: the header has required tag {d}", "a required framebuffer tag was not refused"))
                return false;
            b = Multiboot2Elf(16 + 16 + 8);
            Tag(b, Tags, Multiboot2Loader.TagInformationRequest, 0, 12);
            Put32(b, Tags + 8, 8);
            Tag(b, Tags + 16, 0, 0, 8);
            if (!Refuses(t, L, "multiboot2", b, LoadErrorKind.Unsupported, "multiboot2: the header requires boot information tag {d}", "a required framebuffer information tag was not refused"))
                return false;
            // An address tag loading the file (header at offset 0) at 3 MiB, past the 2 MiB of RAM.
            b = new byte[0x400];
            Multiboot2Header(b, 0, 0, 16 + 24 + 16 + 8);
            Tag(b, 16, Multiboot2Loader.TagAddress, 0, 24);
            Put32(b, 24, 0x30_0000);
            Put32(b, 28, 0x30_0000);
            Put32(b, 32, 0);
            Put32(b, 36, 0x30_4000);
            Tag(b, 40, Multiboot2Loader.TagEntryAddress, 0, 12);
            Put32(b, 48, 0x30_0100);
            Tag(b, 56, 0, 0, 8);
            if (!Refuses(t, L, "multiboot2", b, LoadErrorKind.DoesNotFit, "multiboot: the image is not inside guest RAM", "an address tag loading past RAM was not refused"))
                return false;
            b = Multiboot2Elf(24);
            Tag(b, Tags, 0, 0, 8);
            ProgramHeader(b, true, 0, ElfImage.PtLoad, ElfData, 0x1F_F000, 0x200, 0x2000);
            Put64(b, 24, 0x1F_F100);
            if (!Refuses(t, L, "multiboot2", b, LoadErrorKind.DoesNotFit, "ELF: program header {d} is not inside guest RAM", "a multiboot2 ELF segment past RAM was not refused"))
                return false;
            return true;
        }

        private static bool LinuxCases(TestContext t)
        {
            const GuestLoader L = GuestLoader.Linux;
            if (!Loads(t, L, BzImage(), "a good bzImage did not load"))
                return false;
            byte[] b = BzImage();
            if (!Refuses(t, L, "linux", b, LoadErrorKind.Malformed, "bad bzImage: the file is {d} bytes, too short for a setup header", "a bzImage cut inside its setup header was not refused", length: 0x210))
                return false;
            b[(int)LinuxLoader.Jump + 1] = 0x8E;
            if (!Refuses(t, L, "linux", b, LoadErrorKind.Malformed, "bad bzImage: the setup header ends at {x}, past the file", "a setup header longer than the file was not refused", length: 0x270))
                return false;
            b = BzImage();
            Put16(b, (int)LinuxLoader.BootFlag, 0x55AA);
            if (!Refuses(t, L, "linux", b, LoadErrorKind.Malformed, "bad bzImage: boot_flag {x} is not 0xAA55", "a bad boot_flag was not refused"))
                return false;
            b = BzImage();
            Put16(b, (int)LinuxLoader.Version, 0x205);
            if (!Refuses(t, L, "linux", b, LoadErrorKind.Unsupported, "Linux: boot protocol version {x} is older than 2.06", "protocol 2.05 was not refused"))
                return false;
            b = BzImage();
            b[(int)LinuxLoader.LoadFlags] = 0;
            if (!Refuses(t, L, "linux", b, LoadErrorKind.Unsupported, "Linux: loadflags {x} lack LOADED_HIGH", "a zImage was not refused"))
                return false;
            b = BzImage();
            Put16(b, (int)LinuxLoader.XLoadFlags, 0);
            if (!Refuses(t, L, "linux", b, LoadErrorKind.Unsupported, "Linux: xloadflags {x} lack XLF_KERNEL_64", "a kernel without a 64-bit entry was not refused"))
                return false;
            b = BzImage();
            b[(int)LinuxLoader.SetupSects] = 40;
            if (!Refuses(t, L, "linux", b, LoadErrorKind.Malformed, "bad bzImage: setup_sects {d} puts the kernel at offset {x}, at or past the end", "setup_sects past the file was not refused"))
                return false;
            b = BzImage();
            Put32(b, (int)LinuxLoader.KernelAlignment, 0x3000);
            if (!Refuses(t, L, "linux", b, LoadErrorKind.Malformed, "bad bzImage: kernel_alignment {x} is not a power of two", "a kernel_alignment of 0x3000 was not refused"))
                return false;
            b = BzImage();
            Put32(b, (int)LinuxLoader.CmdlineSize, 4);
            if (!Refuses(t, L, "linux", b, LoadErrorKind.Unsupported, "Linux: the command line is {d} bytes, longer than the kernel's cmdline_size", "a command line over cmdline_size was not refused"))
                return false;
            b = BzImage();
            b[(int)LinuxLoader.RelocatableKernel] = 0;
            Put64(b, (int)LinuxLoader.PrefAddress, 0x30_0000);
            if (!Refuses(t, L, "linux", b, LoadErrorKind.DoesNotFit, "Linux: no room for the kernel", "a fixed kernel at 3 MiB in 2 MiB of RAM was not refused"))
                return false;
            b = BzImage();
            Put32(b, (int)LinuxLoader.InitSize, 0x40_0000);
            if (!Refuses(t, L, "linux", b, LoadErrorKind.DoesNotFit, "Linux: no room for the kernel", "an init_size of 4 MiB in 2 MiB of RAM was not refused"))
                return false;
            return true;
        }

        private static bool PvhCases(TestContext t)
        {
            const GuestLoader L = GuestLoader.Pvh;
            // Where the note of PvhElf is: after the 0x200 bytes of the segment.
            const int Note = ElfData + 0x200;
            if (!Refuses(t, L, "pvh", Elf(true, 0x10_0010, 0x10_0000, 0x200, 0x1000, null), LoadErrorKind.NotThisFormat, "not a PVH kernel", "an ELF without a PVH note was not refused"))
                return false;
            byte[] b = PvhElf();
            Put64(b, Ph64(1, 8), 0x1_0000);
            if (!Refuses(t, L, "pvh", b, LoadErrorKind.Malformed, "bad ELF: note program header {d} ends past the file", "a note segment outside the image was not refused"))
                return false;
            b = PvhElf();
            Put64(b, Ph64(1, 32), 0xFFFF_FFFF_FFFF_FF00);
            if (!Refuses(t, L, "pvh", b, LoadErrorKind.Malformed, "bad ELF: note program header {d} ends past the file", "a note segment of 2^64 bytes was not refused"))
                return false;
            b = PvhElf();
            Put32(b, Note, 0x1000);         // namesz runs past the note area: the walk stops, no note found
            if (!Refuses(t, L, "pvh", b, LoadErrorKind.NotThisFormat, "not a PVH kernel", "a note whose name runs past its segment was used"))
                return false;
            b = Elf(true, 0x10_0010, 0x10_0000, 0x200, 0x1000, XenNote(PvhLoader.Phys32EntryNote, 2, 0));
            if (!Refuses(t, L, "pvh", b, LoadErrorKind.Malformed, "bad PVH note: PHYS32_ENTRY descriptor is {d} bytes", "a 2-byte PHYS32_ENTRY was not refused"))
                return false;
            b = Elf(true, 0x10_0010, 0x10_0000, 0x200, 0x1000, XenNote(PvhLoader.Phys32EntryNote, 8, 0x1_0010_0010));
            if (!Refuses(t, L, "pvh", b, LoadErrorKind.Malformed, "bad PVH note: PHYS32_ENTRY {x} is above 4 GiB", "a PHYS32_ENTRY above 4 GiB was not refused"))
                return false;
            b = Elf(true, 0x10_0010, 0x10_0000, 0x200, 0x1000, XenNote(PvhLoader.Phys32EntryNote, 4, 0x18_0000));
            if (!Refuses(t, L, "pvh", b, LoadErrorKind.Malformed, "bad PVH note: PHYS32_ENTRY {x} is outside every loadable segment", "a PHYS32_ENTRY outside the image was not refused"))
                return false;
            return Refuses(t, L, "pvh", PvhElf(0x1F_F000, 0x2000), LoadErrorKind.DoesNotFit, "ELF: program header {d} is not inside guest RAM", "a PVH segment past RAM was not refused");
        }
    }
}
