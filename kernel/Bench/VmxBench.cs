using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Bench
{
    /// <summary>
    /// In-kernel benchmarks (command line <c>bench</c>). Under Bochs with <c>clock: sync=none</c>
    /// the TSC counts executed instructions, so these figures are instruction counts, repeatable
    /// run to run.
    /// </summary>
    public static unsafe class VmxBench
    {
        private const ulong Iterations = 1000;
        private const ulong GuestInstructionsPerIteration = 4;   // mov eax,0; cpuid; dec edi; jnz
        private static ulong s_start, s_end;

        private static void Phase(Vm vm, ulong phase)
        {
            if (phase == 1)
                s_start = Native.Rdtsc();
            else if (phase == 2)
                s_end = Native.Rdtsc();
        }

        /// <summary>Returns 0 when the benchmark ran.</summary>
        public static int Run()
        {
            if (!KernelMain.Features.Vmx)
            {
                Log.Line("bench: SKIP cpuid_exit_round_trip: no VT-x on this CPU");
                return 0;
            }
            if (!KvmGlue.FindModule("cpuidloop64", out byte* image, out ulong length))
            {
                Log.Line("bench: the cpuidloop64 guest is not on the boot image");
                return 1;
            }
            Vm? vm = GuestRunner.Create(16UL << 20, image, length, out string? problem);
            if (vm == null)
            {
                Log.Write("bench: ");
                Log.Line(problem ?? "VM creation failed");
                return 1;
            }
            vm.PhaseHandler = &Phase;
            RunLoop.Run(vm.Vcpu!);
            if (vm.ExitStatus != 0 || s_end <= s_start)
            {
                Log.Line("bench: the cpuid guest did not complete");
                return 1;
            }

            // Baseline in the same run: the same CPUID loop natively on the host.
            ulong nativeStart = Native.Rdtsc();
            for (ulong i = 0; i < Iterations; i++)
                Native.CpuId(0);
            ulong nativePerIteration = (Native.Rdtsc() - nativeStart) / Iterations;

            ulong perIteration = (s_end - s_start) / Iterations;
            ulong hostPerExit = perIteration > GuestInstructionsPerIteration ? perIteration - GuestInstructionsPerIteration : 0;
            Log.Info($"bench: cpuid_exit_round_trip total_per_iteration={perIteration} host_per_exit={hostPerExit} native_cpuid_call={nativePerIteration} ratio_vs_native={(nativePerIteration == 0 ? 0 : perIteration / nativePerIteration)} (tsc units; instructions under Bochs; goal host_per_exit <= 150)");
            return 0;
        }
    }
}
