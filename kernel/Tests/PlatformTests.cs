using Tandem.Kernel.Console;
using Tandem.Kernel.Virt;
using Tandem.Kvm;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Tests
{
    /// <summary>The guest platform as a guest uses it: the MSRs it owns, and console input through COM1.</summary>
    internal static unsafe class PlatformTests
    {
        /// <summary>Where msr64 records whether it checked RDTSCP (TestGuests.Msr64RdtscpSlot): 1 checked, 2 not offered.</summary>
        private const ulong RdtscpSlot = 0x7400;

        /// <summary>
        /// msr64: FS/GS base, KERNEL_GS_BASE, SYSENTER, STAR/LSTAR/CSTAR/FMASK, PAT, TSC_AUX, EFER
        /// and TSC writes take effect in a 64-bit guest (segment-relative loads, SWAPGS, SYSCALL and
        /// SYSRET, RDTSC; the guest's exit status is the number of the check that failed), and the
        /// host injected no #GP on the way.
        /// </summary>
        public static void MsrWritesTakeEffectIn64BitMode(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            Vm? vm = VmxTests.Start(t, "msr64");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            uint rdtscp = 0;
            vm.Memory.Read(RdtscpSlot, (byte*)&rdtscp, 4);
            if (rdtscp == 1 || rdtscp == 2)
            {
                ulong f = Log.Begin();
                Log.Write(rdtscp == 1 ? "msr64: RDTSCP offered and checked\n" : "msr64: RDTSCP not offered (CPUID 0x80000001 EDX[27] clear): its check skipped\n");
                Log.End(f);
            }
            // msr64 exits with the number of the first check that failed (TestGuests.Msr64).
            if (!t.Check(vm.ExitStatus == 0, vm.StopReason ?? "an MSR check in the 64-bit guest failed (exit status = its number)", (ulong)vm.ExitStatus))
                return;
            if (!t.Check(vm.Vcpu!.MsrFaults == 0, "the host injected #GP for an MSR access the guest owns", vm.Vcpu!.MsrFaults))
                return;
            t.Check(rdtscp == 1 || rdtscp == 2, "the guest did not get to its RDTSCP check", rdtscp);
        }

        // --- console input: KvmHost.ReadConsole, as the kernel's serial console feeds it ---------

        private static int s_fakeAt;
        private static int s_fakeReads;

        /// <summary>The fake console: the bytes of TestGuests.UartInText, then -1 (nothing typed).</summary>
        private static int FakeConsole()
        {
            const string Text = "tnd";
            s_fakeReads++;
            if (s_fakeAt >= Text.Length)
                return -1;
            return Text[s_fakeAt++];
        }

        /// <summary>
        /// Bytes typed on the host console reach the guest by the path the kernel's serial console
        /// takes: <see cref="KvmHost.ReadConsole"/> (swapped for a fake source that yields "tnd"),
        /// polled by the run loop (Events.PollConsole), into the VM's COM1 and IRQ 4. uartin32 exits
        /// with the number of its first failed check (TestGuests.UartIn32). The hook is restored
        /// before anything is checked.
        /// </summary>
        public static void ConsoleInputReachesTheGuestUart(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            Vm? vm = VmxTests.Start(t, "uartin32");
            if (vm == null)
                return;
            vm.MaxQuanta = 200;
            delegate*<int> saved = KvmHost.ReadConsole;
            s_fakeAt = 0;
            s_fakeReads = 0;
            // No return between the swap and the restore (and nothing in the run loop unwinds).
            KvmHost.ReadConsole = &FakeConsole;
            RunLoop.Run(vm.Vcpu!);
            KvmHost.ReadConsole = saved;
            GuestRunner.Report(vm);
            if (!t.Check(s_fakeAt == 3, "the run loop did not take every byte from the console hook", (ulong)s_fakeAt))
                return;
            if (!t.Check(vm.ExitStatus == 0, vm.StopReason ?? "a console input check in the guest failed (exit status = its number)", (ulong)vm.ExitStatus))
                return;
            t.Check(vm.Platform.Com1.Dropped == 0, "COM1 dropped console bytes", vm.Platform.Com1.Dropped);
        }
    }
}
