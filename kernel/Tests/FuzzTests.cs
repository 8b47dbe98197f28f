using Tandem.Kernel.Virt;

namespace Tandem.Kernel.Tests
{
    /// <summary>The guest fuzzer's short campaign (issue 13 §1; the long one is <c>./build.sh fuzz</c>).</summary>
    internal static unsafe class FuzzTests
    {
        /// <summary>Exits the short campaign must reach, and the most guests it may take for them.</summary>
        public const ulong ExitGoal = 10_000;
        public const int MaxGuests = 60;

        /// <summary>
        /// Fuzz guests of seeds 1, 2, ... run one after another beside the sentinel VM until they
        /// made <see cref="ExitGoal"/> exits: the host must pass its checks after every guest (CPUs
        /// answer, heap and allocator invariants, every mm frame back, kernel code unchanged), the
        /// sentinel must have kept checking its memory the whole time, and the guests must have
        /// reached the host through many exit reasons (a composer that produced junk would not).
        /// </summary>
        public static void ShortCampaign(TestContext t)
        {
            if (VmxTests.Unavailable(t))
                return;
            if (!FuzzCampaign.Run(1, MaxGuests, ExitGoal))
            {
                t.Fail("the campaign could not start (the reason is above)");
                return;
            }
            if (!t.Check(FuzzCampaign.HostFailures == 0, "the host failed a check after a fuzz guest (the seed and step are above)", (ulong)FuzzCampaign.HostFailures))
                return;
            if (!t.Check(FuzzCampaign.SentinelFailures == 0, "the sentinel VM saw its memory change or made no progress"))
                return;
            if (!t.Check(FuzzCampaign.TotalExits >= ExitGoal, "the fuzz guests made fewer exits than the goal", FuzzCampaign.TotalExits))
                return;
            int reasons = 0;
            for (int r = 0; r < FuzzCampaign.ExitsByReason.Length; r++)
            {
                if (FuzzCampaign.ExitsByReason[r] != 0)
                    reasons++;
            }
            t.Check(reasons >= 8, "the fuzz guests reached fewer than 8 exit reasons", (ulong)reasons);
        }
    }
}
