using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Tests
{
    /// <summary>A hostile guest's reach (issue 13): a guest's user programs cannot call the host, and one VM cannot find another's memory.</summary>
    internal static unsafe class IsolationTests
    {
        /// <summary>
        /// ring3vmcall64: VMCALL ping at ring 0 returns 0; at ring 3 (after SYSRETQ) ping and yield
        /// each return -2 and do nothing (guest exit status = the number of the check that failed),
        /// and the host counted exactly those two refusals (Vcpu.RefusedHypercalls).
        /// </summary>
        public static void VmcallFromRing3IsRefused(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            Vm? vm = VmxTests.Start(t, "ring3vmcall64");
            if (vm == null)
                return;
            RunLoop.Run(vm.Vcpu!);
            GuestRunner.Report(vm);
            if (!t.Check(vm.ExitStatus == 0, vm.StopReason ?? "a VMCALL check in the guest failed (exit status = its number)", (ulong)vm.ExitStatus))
                return;
            t.Check(vm.Vcpu!.RefusedHypercalls == 2, "the host did not refuse exactly the two ring-3 VMCALLs", vm.Vcpu!.RefusedHypercalls);
            vm.Release();
        }

        private static void PauseAtPhase(Vm vm, ulong phase) => vm.PauseRequested = true;

        /// <summary>
        /// markerscan32 twice: each VM writes a marker made from its id into 16 pages, then scans all
        /// its RAM for its own marker (exactly 16 must be found: the scan works) and the other VM's
        /// (none). Both write before either scans, and each scans while the other is alive with its
        /// markers resident (phases 1 and 2 pause them). Exit status = the number of the check that failed.
        /// </summary>
        public static void TwoVmsCannotFindEachOthersMarkers(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            Vm? a = VmxTests.Start(t, "markerscan32");
            Vm? b = VmxTests.Start(t, "markerscan32");
            if (a == null || b == null)
                return;
            a.Vcpu!.Registers->Rcx = (ulong)b.Id;          // ebx = its own id (GuestRunner), ecx = the other's
            b.Vcpu!.Registers->Rcx = (ulong)a.Id;
            a.PhaseHandler = &PauseAtPhase;
            b.PhaseHandler = &PauseAtPhase;
            RunLoop.Run(a.Vcpu!);          // A writes its markers, pauses at phase 1
            RunLoop.Run(b.Vcpu!);          // B writes its own
            if (!t.Check(a.LastPhase == 1 && b.LastPhase == 1 && !a.Stopped && !b.Stopped, "the guests did not both reach phase 1"))
                return;
            RunLoop.Run(a.Vcpu!);          // A scans while B's markers are resident, pauses at phase 2
            RunLoop.Run(b.Vcpu!);          // B scans while A's are
            if (!t.Check(a.LastPhase == 2 && b.LastPhase == 2 && !a.Stopped && !b.Stopped, "the guests did not both finish their scans (phase 2)"))
                return;
            a.PhaseHandler = null;
            b.PhaseHandler = null;
            RunLoop.Run(a.Vcpu!);
            RunLoop.Run(b.Vcpu!);
            GuestRunner.Report(a);
            GuestRunner.Report(b);
            t.Check(a.ExitStatus == 0, a.StopReason ?? "VM A: a marker check failed (exit status = its number: 2 own count, 3 found the other's)", (ulong)a.ExitStatus);
            t.Check(b.ExitStatus == 0, b.StopReason ?? "VM B: a marker check failed (exit status = its number: 2 own count, 3 found the other's)", (ulong)b.ExitStatus);
            a.Release();
            b.Release();
        }
    }
}
