using System.Runtime.InteropServices;
using Tandem.Arch.X86;
using Tandem.Kernel.Boot;
using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;

namespace Tandem.Kernel
{
    /// <summary>The entry point the boot stub calls in 64-bit mode, on the BSP, interrupts off.</summary>
    public static unsafe class KernelMain
    {
        public const string Version = "0.1.0";

        public static VmxFeatures Features;
        public static int OnlineCpus;

        [DllImport("*", EntryPoint = "tandem_runtime_init")]
        private static extern void InitializeRuntime(void* modulesStart, void* modulesEnd);

        [UnmanagedCallersOnly(EntryPoint = "tandem_main")]
        private static void Main(uint magic, ulong info)
        {
            KernelLayout* layout = KernelLayout.Get;
            Serial.Initialize();
            KernelHeap.AddChunk((byte*)layout->EarlyHeapStart, layout->EarlyHeapEnd - layout->EarlyHeapStart);
            InitializeRuntime((void*)layout->ModulesStart, (void*)layout->ModulesEnd);
            Log.Write("\ntandem: booting\n");

            string? problem = Multiboot2.Parse(magic, info);
            if (problem != null)
                BootFailure(problem);
            Multiboot2.ReportProblems(ref Multiboot2.Info);
            CommandLine.Parse(Multiboot2.CommandLine, Multiboot2.CommandLineLength);

            ulong reservedEnd = layout->ImageEnd;
            if (Multiboot2.InfoEnd > reservedEnd)
                reservedEnd = Multiboot2.InfoEnd;
            for (int i = 0; i < Multiboot2.ModuleCount; i++)
            {
                if (Multiboot2.Module(i).End > reservedEnd)
                    reservedEnd = Multiboot2.Module(i).End;
            }
            problem = FrameAllocator.Initialize(reservedEnd);
            if (problem != null)
                BootFailure(problem);
            Log.Line("boot: frames free ", FrameAllocator.FreeFrames);
            Symbols.Initialize();
            BootPaging.MakeUncached(Lapic.DefaultBase);

            Smp.InitializeBootProcessor();
            Log.Line("boot: descriptors and local APIC up");
            Acpi.Initialize();
            if (Acpi.Problem != null)
            {
                Log.Write("acpi: ");
                Log.Write(Acpi.Problem);
                Log.Write("; running on the boot CPU only\n");
            }
            Acpi.ReportProblems(ref Acpi.Info);
            Timer.Calibrate();
            Log.Line("boot: timer calibrated");
            HostRtc.Read(Timer.TscPerSecond);
            Log.Line("boot: cpus listed in the MADT: ", (ulong)Acpi.ApicCount);
            OnlineCpus = Smp.StartApplicationProcessors();
            Log.Line("boot: cpus online: ", (ulong)OnlineCpus);
            Sched.Scheduler.Initialize();
            Watchdog.Initialize();
            ulong pool = FrameAllocator.FreeFrames * FrameAllocator.PageSize / 2;
            problem = KernelMm.Initialize(pool > 256UL << 20 ? 256UL << 20 : pool & ~0x1FFFFFUL);
            if (problem != null)
                BootFailure(problem);
            Native.Sti();
            KernelReclaim.Initialize();

            Features = VmxFeatures.Detect();
            Virt.KvmGlue.Initialize();
            Monitor.MonitorShell.Start();
            PrintBanner();
            Virt.KvmGlue.EnableVmxEverywhere();

            int status = Machine.StatusSuccess;
            if (CommandLine.RunTests)
                status = Tests.TestRunner.RunAll() == 0 ? Machine.StatusSuccess : Machine.StatusTestsFailed;
            if (CommandLine.RunBench && status == Machine.StatusSuccess)
            {
                if (!CommandLine.BenchHotColdOnly)
                {
                    status = Bench.VmxBench.Run();
                    if (status == Machine.StatusSuccess)
                        status = Bench.SmpBench.Run();
                }
                if (status == Machine.StatusSuccess)
                    status = Bench.HotColdBench.Run();
            }
            if (CommandLine.FuzzCount > 0 && status == Machine.StatusSuccess)
                status = Virt.FuzzCampaign.RunFromCommandLine();
            if (CommandLine.VmCount > 0 && status == Machine.StatusSuccess)
                status = Virt.GuestRunner.RunFromCommandLine();
            else if (!CommandLine.RunTests && !CommandLine.RunBench && CommandLine.VmCount == 0 && CommandLine.FuzzCount == 0)
                Log.Line("tandem: nothing to run (add 'test' or 'vm=MODULE' to the command line)");
            Monitor.MonitorShell.RunCommandLineScript();      // monitor= without vm= VMs: at the end
            Machine.Exit(status);
        }

        private static string Present(bool present) => present ? "present" : "absent";

        /// <summary>Bad boot information or no memory: say why and end the run with status 2.</summary>
        private static void BootFailure(string problem)
        {
            Log.Write("boot: ");
            Log.Write(problem);
            Log.WriteChar('\n');
            Machine.Exit(Machine.StatusBadBoot);
        }

        private static void PrintBanner()
        {
            Log.Info($"Tandem {Version} | cpus {(ulong)OnlineCpus} | memory {FrameAllocator.UsableBytes >> 20} MiB | VT-x {Present(Features.Vmx)} | EPT {Present(Features.Ept)} | unrestricted guest {Present(Features.UnrestrictedGuest)} | EPT A/D {Present(Features.EptAccessedDirty)} | VPID {Present(Features.Vpid)} | preemption timer {Present(Features.PreemptionTimer)}");
            if (Features.Vmx && (Features.FeatureControl & 1) != 0 && (Features.FeatureControl & 4) == 0)
                Log.Info($"vmx: IA32_FEATURE_CONTROL is locked with VMX off: enable \"Intel Virtualization Technology\" (VT-x) in the firmware setup");
            Log.Info($"timer: lapic {Timer.LapicTicksPerSecond} Hz, tsc {Timer.TscPerSecond} Hz");
        }
    }
}
