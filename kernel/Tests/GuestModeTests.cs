using Tandem.Kernel.Console;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Tests
{
    /// <summary>
    /// Guest-platform checks (issue 8) on VT-x: an MMIO instruction the decoder refuses stops only
    /// its VM, with a dump; the MMIO forms mmio64 leaves out; a guest that switches itself from
    /// 32-bit protected mode to long mode. The guests are in tools/StubGen/Guests/GuestModeGuests.cs.
    /// </summary>
    internal static unsafe class GuestModeTests
    {
        // The guests' constants (TestGuests.MmioRefusedRipSlot, ScratchBase + MmioRefusedOffset).
        private const ulong RefusedRipSlot = 0x7000;

        private static bool Contains(string text, string part)
        {
            for (int at = 0; at + part.Length <= text.Length; at++)
            {
                int i = 0;
                while (i < part.Length && text[at + i] == part[i])
                    i++;
                if (i == part.Length)
                    return true;
            }
            return false;
        }

        /// <summary>
        /// mmiobad32 stores to the MMIO test page (accepted), then executes <c>inc dword [edi+0x40]</c>
        /// there, which the decoder refuses. Only that VM stops (status 255, a reason naming MMIO),
        /// its dump line names the GPA (0xfeb00040), the RIP the guest recorded for that instruction
        /// and its bytes (ff 47 40); then hello32 runs to exit 0 on the same host.
        /// </summary>
        public static void RefusedMmioInstructionStopsTheVmWithADump(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            Vm? vm = VmxTests.Start(t, "mmiobad32");
            if (vm == null)
                return;
            LogCapture.Begin();
            RunLoop.Run(vm.Vcpu!);
            LogCapture.End();
            GuestRunner.Report(vm);
            t.Check(vm.ExitStatus == 255, "the VM did not stop with status 255 (1: the refused instruction was emulated)", (ulong)vm.ExitStatus);
            t.Check(vm.StopReason != null && Contains(vm.StopReason, "MMIO"), vm.StopReason ?? "the VM has no stop reason");
            t.Check(vm.Vcpu!.MmioExits == 2, "expected two MMIO exits: the accepted store, then the refused instruction", vm.Vcpu!.MmioExits);
            ulong expectedRip = 0;
            if (!t.Check(vm.Memory.Read(RefusedRipSlot, (byte*)&expectedRip, 4) && expectedRip > 0x10_0000,
                    "the guest did not record the refused instruction's address", expectedRip))
                return;
            const string head = "MMIO at gpa 0xfeb00040, rip 0x";
            int at = LogCapture.Find(head);
            if (!t.Check(at >= 0, "no dump line with the refused instruction's GPA"))
                return;
            t.Check(LogCapture.HexAt(at + head.Length, out ulong dumpRip) && dumpRip == expectedRip, "the dump's RIP is not the refused instruction's", dumpRip);
            t.Check(LogCapture.Find(", bytes ff 47 40") > at, "the dump does not show the instruction's bytes (ff 47 40)");

            // The host goes on: another VM runs to its end.
            Vm? next = VmxTests.Start(t, "hello32");
            if (next == null)
                return;
            RunLoop.Run(next.Vcpu!);
            GuestRunner.Report(next);
            t.Check(next.ExitStatus == 0, next.StopReason ?? "hello32 did not exit 0 after the stopped VM", (ulong)next.ExitStatus);
        }

        /// <summary>MMIO instructions mmio64b executes: one exit each at least (a REP string instruction of under 4096 elements is one).</summary>
        private const ulong Mmio64bInstructions = 112;

        /// <summary>
        /// mmio64b: the accepted MMIO forms mmio64 does not use (sub, adc, sbb, movsxd, 8- and 16-bit
        /// moves, register-source ALU forms, moffs of every width, stos of bytes/words/qwords, movs
        /// between RAM and the page, REX, SIB, 67 and GS). It exits with the number of the first
        /// check that failed (TestGuests.Mmio64b).
        /// </summary>
        public static void MmioEveryDecodedFormEmulated(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            Vm? vm = VmxTests.Start(t, "mmio64b");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "an MMIO check in mmio64b failed (exit status = its number)", (ulong)vm.ExitStatus);
            t.Check(vm.Vcpu!.MmioExits >= Mmio64bInstructions, "fewer MMIO exits than the guest's MMIO instructions", vm.Vcpu!.MmioExits);
        }

        /// <summary>
        /// longmode32 starts in 32-bit protected mode, builds 4-level page tables, sets CR4.PAE and
        /// EFER.LME, and turns paging on with a MOV to CR0 that exits (it sets NE, a host-owned bit,
        /// with PG): the host must enter IA-32e mode (EFER.LMA, the IA-32e entry control) as the CPU
        /// would. It far-jumps to 64-bit code, checks LMA, 64-bit arithmetic and a 4-level alias,
        /// far-returns to 32-bit code and turns paging off with NE in one MOV (an exit: the host
        /// leaves IA-32e mode), checks LMA is clear and exits 0 (else the failed check's number).
        /// </summary>
        public static void GuestSwitchesItselfToLongMode(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            Vm? vm = VmxTests.Start(t, "longmode32");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            t.Check(vm.ExitStatus == 0, vm.StopReason ?? "a long-mode check in longmode32 failed (exit status = its number)", (ulong)vm.ExitStatus);
            t.Check(vm.Vcpu!.ExitCount(Tandem.Arch.X86.ExitReason.CrAccess) >= 3, "the three MOVs to CR0 that change NE did not exit to the host",
                vm.Vcpu!.ExitCount(Tandem.Arch.X86.ExitReason.CrAccess));
        }
    }
}
