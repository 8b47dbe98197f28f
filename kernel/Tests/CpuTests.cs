using System.Threading;
using Tandem.Arch.X86;

namespace Tandem.Kernel.Tests
{
    internal static unsafe class CpuTests
    {
        public static void Breakpoint(TestContext t)
        {
            int before = Volatile.Read(ref Interrupts.BreakpointsSeen);
            Volatile.Write(ref Interrupts.ExpectBreakpoint, 1);
            Native.Int3();
            Volatile.Write(ref Interrupts.ExpectBreakpoint, 0);
            t.Check(Volatile.Read(ref Interrupts.BreakpointsSeen) == before + 1, "the #BP handler did not run exactly once");
        }

        public static void PageFaultProbe(TestContext t)
        {
            int before = Volatile.Read(ref Interrupts.ProbeFaultsFixed);
            ulong value = 0;
            // Far above the 4 GiB identity map: not present, so the probe's load takes a #PF.
            int status = Native.ProbeRead64(0x0000_4000_0000_0000UL, &value);
            if (!t.Check(status == 1, "probe of an unmapped address did not report a fault"))
                return;
            if (!t.Check(Volatile.Read(ref Interrupts.ProbeFaultsFixed) == before + 1, "the #PF handler did not fix up exactly once"))
                return;
            ulong mapped = 0x1234_5678_9ABC_DEF0UL;
            status = Native.ProbeRead64((ulong)&mapped, &value);
            t.Check(status == 0 && value == mapped, "probe of a mapped address failed");
        }

        public static void VmxFeaturesReported(TestContext t)
        {
            VmxFeatures f = KernelMain.Features;
            if (CommandLine.ExpectVmx < 0)
            {
                t.Skip("no expect_vmx= on the command line: nothing to compare the detection with");
                return;
            }
            if (CommandLine.ExpectVmx == 1)
            {
                t.Check(f.Vmx && f.Ept && f.UnrestrictedGuest && f.EptAccessedDirty, "expected VT-x, EPT, unrestricted guest and EPT A/D, but one is missing");
            }
            else
            {
                t.Check(!f.Vmx && !f.Ept && !f.UnrestrictedGuest && !f.EptAccessedDirty, "expected no VT-x, but it was detected");
            }
        }

        public static void TimerTicks(TestContext t)
        {
            PerCpu* cpu = Cpu.Current;
            ulong before = Volatile.Read(ref cpu->TimerTicks);
            for (int i = 0; i < 5; i++)
                Pit.Wait(11932);   // 5 x 10 ms with interrupts on: expect about 5 ticks at 100 Hz
            ulong ticks = Volatile.Read(ref cpu->TimerTicks) - before;
            if (ticks < 2)
                t.Fail("timer ticked fewer than 2 times in 50 ms", ticks);
            else if (ticks > 50)
                t.Fail("timer ticked implausibly often in 50 ms", ticks);
        }
    }
}
