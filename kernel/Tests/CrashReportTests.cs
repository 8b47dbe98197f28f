using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Tests
{
    /// <summary>
    /// The crash reports themselves (docs/debugging.md): the host's code line and page-fault
    /// decoding, and a VM's stop dump. Each captures what the kernel prints (<see cref="LogCapture"/>)
    /// and looks for the exact text a person and the build driver's decoder read.
    /// </summary>
    internal static unsafe class CrashReportTests
    {
        /// <summary>
        /// The code line of a host address whose bytes are known (0, 1, 2... in a heap array): the
        /// 24 bytes before RIP, the byte at RIP in brackets, 15 after. An unmapped RIP says so, and
        /// the probe's faults leave no "fixed up" lines in the dump.
        /// </summary>
        public static void HostCodeLineMarksRip(TestContext t)
        {
            byte[] code = new byte[64];
            for (int i = 0; i < code.Length; i++)
                code[i] = (byte)(0xA0 + i);
            fixed (byte* p = code)
            {
                LogCapture.Begin();
                CrashDump.WriteHostCode((ulong)(p + 30));
                CrashDump.WriteHostCode(0x0000_4000_0000_0000UL);
                LogCapture.End();
            }
            t.Check(LogCapture.Saw("code: a6 a7 a8 "), "the code line does not start 24 bytes before RIP");
            t.Check(LogCapture.Saw(" bc bd <be> bf c0 "), "the byte at RIP is not the one marked");
            t.Check(LogCapture.Saw(" cc cd\n"), "the code line does not end 15 bytes after RIP");
            t.Check(LogCapture.Saw("code: unreadable at rip 0x0000400000000000\n"), "an unmapped RIP is not reported as unreadable");
            t.Check(!LogCapture.Saw("probe instruction"), "the dump's own probe faults were reported");
        }

        /// <summary>A #PF error code in words and bit by bit, for two codes with different bits.</summary>
        public static void PageFaultErrorCodeDecoded(TestContext t)
        {
            LogCapture.Begin();
            CrashDump.WritePageFaultError(0x2, 0x0000_4000_0000_0000UL);
            CrashDump.WritePageFaultError(0x7D, 0x1000);
            LogCapture.End();
            t.Check(LogCapture.Saw("#PF: error code 0x2: not-present page, write, supervisor (P=0 W/R=1 U/S=0 RSVD=0 I/D=0 PK=0 SS=0)  cr2 0x0000400000000000\n"),
                "a supervisor write to a not-present page is not decoded");
            t.Check(LogCapture.Saw("#PF: error code 0x7d: protection violation, read, user, reserved bit set, instruction fetch, protection key, shadow stack (P=1 W/R=0 U/S=1 RSVD=1 I/D=1 PK=1 SS=1)"),
                "a code with P, U/S, RSVD, I/D, PK and SS set is not decoded");
        }

        /// <summary>
        /// crash32 prints, executes ud2 with no IDT and triple-faults: its stop dump names the exit,
        /// shows the control registers and segments, and shows ud2's bytes (0f 0b) at RIP, fetched
        /// through the guest's (flat, paging-off) view of its memory.
        /// </summary>
        public static void VmStopDumpNamesTheExitAndShowsCode(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            Vm? vm = VmxTests.Start(t, "crash32");
            if (vm == null)
                return;
            LogCapture.Begin();
            RunLoop.Run(vm.Vcpu!);
            LogCapture.End();
            GuestRunner.Report(vm);
            t.Check(LogCapture.Saw("exit reason 2 (triple-fault)"), "the dump does not name the exit reason");
            t.Check(LogCapture.Saw("  cr0 0x"), "the dump has no CR0");
            t.Check(LogCapture.Saw("  efer 0x"), "the dump has no EFER");
            t.Check(LogCapture.Saw("  32-bit\n"), "the dump does not say the guest ran 32-bit code");
            t.Check(LogCapture.Saw("  cs sel 0x"), "the dump has no CS");
            t.Check(LogCapture.Saw("  tr sel 0x"), "the dump has no TR");
            t.Check(LogCapture.Saw("code (32-bit): "), "the dump has no code line");
            t.Check(LogCapture.Saw(" <0f> 0b"), "the code line does not mark ud2 at RIP");
        }
    }
}
