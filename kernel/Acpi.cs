using System;
using Tandem.Kernel.Boot;
using Tandem.Kernel.Console;
using Tandem.Kernel.Parsers;

namespace Tandem.Kernel
{
    /// <summary>
    /// Just enough ACPI to find the processors, through the portable <see cref="AcpiParser"/>: the
    /// RSDP from GRUB's ACPI tag, else from the BIOS area (0xE0000-0xFFFFF), then RSDT/XSDT → MADT.
    /// This class only reads physical memory (the boot identity map) for the parser and keeps its result.
    /// </summary>
    public static unsafe class Acpi
    {
        public const int MaxApics = AcpiInfo.MaxApics;
        public static int ApicCount;
        public static uint* ApicIds;
        public static string? Problem;
        public static AcpiInfo Info;

        /// <summary>Physical memory through the boot identity map (the first 4 GiB).</summary>
        public struct IdentityMap : IPhysicalReader
        {
            public ReadOnlySpan<byte> Read(ulong address, int length)
            {
                if (address == 0 || length < 0 || address >= AcpiParser.AddressLimit || (ulong)length > AcpiParser.AddressLimit - address)
                    return ReadOnlySpan<byte>.Empty;
                return new ReadOnlySpan<byte>((void*)address, length);
            }
        }

        public static void Initialize()
        {
            ApicIds = (uint*)Memory.KernelHeap.Alloc(sizeof(uint) * MaxApics);
            ReadOnlySpan<byte> rsdp = ReadOnlySpan<byte>.Empty;
            if (Multiboot2.Rsdp != 0)
                rsdp = new ReadOnlySpan<byte>((void*)Multiboot2.Rsdp, Multiboot2.RsdpLength);
            else
            {
                ReadOnlySpan<byte> bios = new ReadOnlySpan<byte>((void*)0xE0000, 0x20000);
                int at = AcpiParser.FindRsdp(bios);
                if (at >= 0)
                    rsdp = bios.Slice(at, Math.Min(AcpiParser.RsdpV2Length, bios.Length - at));
            }
            if (rsdp.IsEmpty)
            {
                Problem = AcpiParser.NoRsdp;
                return;
            }
            var memory = new IdentityMap();
            Problem = AcpiParser.Parse(ref memory, rsdp, ref Info);
            ApicCount = Info.ApicCount;
            for (int i = 0; i < Info.ApicCount; i++)
                ApicIds[i] = Info.ApicId(i);
        }

        /// <summary>One console line for each thing the MADT got wrong that the kernel worked around; returns how many.</summary>
        public static int ReportProblems(ref AcpiInfo info)
        {
            int lines = 0;
            if (info.DroppedCpus > 0)
            {
                Log.Info($"acpi: the MADT lists {(ulong)(info.ApicCount + info.DroppedCpus)} CPUs, more than the {(ulong)MaxApics} Tandem supports: the first {(ulong)MaxApics} are used");
                lines++;
            }
            if (info.DuplicateIds > 0)
            {
                Log.Line("acpi: MADT entries naming an APIC id listed before, ignored: ", (ulong)info.DuplicateIds);
                lines++;
            }
            if (info.MadtTruncated)
            {
                Log.Line("acpi: the MADT has an entry with a bad length; the entries after it are not used");
                lines++;
            }
            return lines;
        }
    }
}
