using Tandem.Kernel.Memory;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;
using Tandem.Mm;

namespace Tandem.Kernel.Tests
{
    /// <summary>Issue 11 on Bochs: guests running with more memory than the host lets them keep resident.</summary>
    internal static unsafe class ReclaimTests
    {
        // tools/StubGen/Guests/SwapFillGuest.cs: 28 MiB of pages, the VM needs 32 MiB.
        private const ulong FillBytes = 7168UL * 4096;
        private const ulong GuestMiB = 32;

        /// <summary>
        /// swapfill32 fills 28 MiB with checksummed pages and reads them back twice while the host
        /// lets guest memory keep only 14 MiB resident (half of it): pages are aged, compressed into
        /// the swap pool, evicted through the EPT and the primary MMU, and faulted back in through
        /// EPT violations. The guest checks every word (exit 1 at the first wrong one); the host
        /// checks that evictions, swap-outs and swap-ins happened and prints the counters, with the
        /// compression ratio.
        /// </summary>
        public static void GuestFillsTwiceItsLimit(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            if (mm == null || mm.Swap == null || KernelReclaim.Pool == null)
            {
                t.Skip("swap is off (swap=off on the command line)");
                return;
            }
            if (!KvmGlue.FindModule("swapfill32", out byte* image, out ulong length))
            {
                t.Fail("the swapfill32 module is not on the boot image");
                return;
            }
            Vm? vm = GuestRunner.Create(GuestMiB << 20, image, length, out string? problem);
            if (vm == null)
            {
                t.Fail(problem ?? "VM creation failed");
                return;
            }
            vm.MaxQuanta = VmcsSetup.BudgetUnits(1200);
            long outs = mm.Swap.SwapOuts, ins = mm.Swap.SwapIns, evictions = mm.Lru.Stats.Evictions;
            int oldLimit = mm.ResidentLimit;
            mm.ResidentLimit = (int)(FillBytes / 2 / 4096);
            VmThreads.Start(vm, 0);
            VmThreads.WaitAndReport(vm);
            mm.ResidentLimit = oldLimit;
            KernelReclaim.PrintStats("reclaim: after swapfill32:");
            if (!t.Check(vm.ExitStatus == 0, vm.StopReason ?? "swapfill32 read a word back wrong (1) or had too little RAM (3)", (ulong)vm.ExitStatus))
                return;
            if (!t.Check(mm.Lru.Stats.Evictions - evictions > 0, "nothing was evicted: the limit did not bite"))
                return;
            if (!t.Check(mm.Swap.SwapOuts - outs > 0, "no page was swapped out", (ulong)(mm.Swap.SwapOuts - outs)))
                return;
            t.Check(mm.Swap.SwapIns - ins > 0, "no page was swapped back in", (ulong)(mm.Swap.SwapIns - ins));
        }
    }
}
