using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Monitor;
using Tandem.Kernel.Sched;
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
            if (rdtscp == 1)
                Log.Info($"msr64: RDTSCP offered and checked");
            else if (rdtscp == 2)
                Log.Info($"msr64: RDTSCP not offered (CPUID 0x80000001 EDX[27] clear): its check skipped");
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

        // --- a paste: more input than the guest's UART holds ----------------------------------

        /// <summary>TestGuests.UartPasteLength, UartPasteCount and UartPasteBuffer (uartpaste32).</summary>
        private const int PasteLength = 4096;
        private const ulong PasteCount = 0x7600, PasteBuffer = 0x20_0000;

        /// <summary>The pasted line's byte <paramref name="i"/>: printable (no Ctrl-A for the console switch), never periodic within 4 KiB.</summary>
        private static byte PasteByte(int i) => (byte)(0x20 + (i * 37 + (i >> 7)) % 95);

        private static void Sleep(ulong ms) => Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 1000 * ms);

        /// <summary>
        /// A 4 KiB line pasted on the console reaches the guest whole and in order. uartpaste32 runs
        /// as a thread with the focus; once it has enabled COM1's receive interrupt the test hands
        /// the monitor all 4096 bytes at once (<see cref="MonitorShell.OnByte"/>, the monitor
        /// thread's own path), far faster than a 16-byte FIFO drains. They wait in the monitor's
        /// queue and vCPU 0 moves only what the UART has room for (Events.PollConsole). Checks: the
        /// guest counted exactly 4096 bytes and saw no overrun (its exit status), the bytes in its
        /// memory are the pasted ones in order, nothing was dropped by the queue or the UART, and
        /// nothing is left waiting. Then the queue's own bound: with no VM reading, a paste of more
        /// than the queue holds is cut there, counted, and reported by one <c>console:</c> line.
        /// </summary>
        public static void ConsolePasteReachesTheGuestWhole(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            if (!t.Check(MonitorShell.Started, "the monitor is not running: console input has no queue"))
                return;
            Vm? vm = VmxTests.Start(t, "uartpaste32");
            if (vm == null)
                return;
            vm.MaxQuanta = VmcsSetup.BudgetUnits(600);
            ulong droppedBefore = Volatile.Read(ref MonitorShell.BytesDropped);
            Volatile.Write(ref KvmHost.ConsoleFocus, vm.Id);
            VmThreads.Start(vm, 0);
            ulong start = Native.Rdtsc();
            while (!vm.Platform.Com1.ReceiveInterruptEnabled && !vm.Stopped && Native.Rdtsc() - start < 120 * Timer.TscPerSecond)
                Sleep(10);
            bool ready = vm.Platform.Com1.ReceiveInterruptEnabled;
            if (ready)
            {
                for (int i = 0; i < PasteLength; i++)
                    MonitorShell.OnByte(PasteByte(i));
            }
            else
                vm.Stop(255, "the paste test gave up: the guest did not enable COM1's receive interrupt");
            Vm[] one = new Vm[1];
            one[0] = vm;
            VmThreads.WaitAll(one, 1);
            Volatile.Write(ref KvmHost.ConsoleFocus, 0);
            GuestRunner.Report(vm);
            uint count = 0;
            vm.Memory.Read(PasteCount, (byte*)&count, 4);
            int firstWrong = -1;
            byte* got = stackalloc byte[256];
            for (int at = 0; at < PasteLength && firstWrong < 0; at += 256)
            {
                vm.Memory.Read(PasteBuffer + (ulong)at, got, 256);
                for (int k = 0; k < 256; k++)
                {
                    if (got[k] != PasteByte(at + k))
                    {
                        firstWrong = at + k;
                        break;
                    }
                }
            }
            ulong dropped = Volatile.Read(ref MonitorShell.BytesDropped) - droppedBefore;
            int waiting = MonitorShell.VmInputWaiting;
            ulong uartDropped = vm.Platform.Com1.Dropped;
            Log.Info($"paste: 4096 bytes pasted at once; the guest counted {(ulong)count}, first wrong byte {(long)firstWrong}, dropped by the queue {dropped}, by the UART {uartDropped}, left waiting {(ulong)waiting}");
            bool ok = t.Check(ready, "uartpaste32 did not enable COM1's receive interrupt")
                && t.Check(vm.ExitStatus == 0, vm.StopReason ?? "uartpaste32 failed a check (1: not exactly 4096 bytes came, 2: an overrun)", (ulong)vm.ExitStatus)
                && t.Check(count == PasteLength, "the guest did not count 4096 bytes", count)
                && t.Check(firstWrong < 0, "a pasted byte arrived wrong or out of order (its index)", (ulong)firstWrong)
                && t.Check(dropped == 0 && uartDropped == 0, "console input was dropped on the way", dropped + uartDropped)
                && t.Check(waiting == 0, "pasted bytes were left waiting in the queue", (ulong)waiting);
            vm.Release();
            if (!ok)
                return;

            // The bound: no VM runs, so nothing drains the queue; a paste past it is cut and reported.
            droppedBefore = Volatile.Read(ref MonitorShell.BytesDropped);
            LogCapture.Begin();
            for (int i = 0; i < MonitorShell.RingSize + 100; i++)
                MonitorShell.OnByte(PasteByte(i));
            Sleep(2500);                 // the monitor thread reports within 10 ms, at most a line a second
            LogCapture.End();
            waiting = MonitorShell.VmInputWaiting;
            dropped = Volatile.Read(ref MonitorShell.BytesDropped) - droppedBefore;
            MonitorShell.DiscardVmInput();
            if (!t.Check(waiting == MonitorShell.RingSize - 1 && dropped == 101, "the queue did not hold 16383 bytes and drop the rest", dropped))
                return;
            t.Check(LogCapture.Saw(" typed bytes for the VMs dropped: the 16384-byte input queue was full (the focused VM is not reading its COM1); "), "the overflow gave no console: line with its count");
        }
    }
}
