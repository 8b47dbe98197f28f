using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;
using Tandem.Kvm.Fuzz;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Virt
{
    /// <summary>
    /// The guest fuzzer's host side (issue 13 §1, docs/fuzzing.md). Each fuzz guest is composed
    /// from the <c>fuzzkit</c> module and a seed (<see cref="FuzzProgram"/>), runs on its own vCPU
    /// thread until it exits, is stopped, or spends its budget, and is released; a bystander VM
    /// (<c>sentinel32</c>) checks its own memory the whole time. After every guest the host checks
    /// itself: every CPU answers a call, the heap's and the frame allocator's invariants hold,
    /// every mm frame the guest had is free again, and the kernel's code is unchanged. A broken
    /// check prints the seed and the guest's last step (replay: <c>vm=fuzz,seed=N</c>).
    /// </summary>
    internal static unsafe class FuzzCampaign
    {
        /// <summary>A fuzz guest's RAM, steps and time budget.</summary>
        public const ulong GuestRam = 16UL << 20;
        public const int Steps = 1500;
        public const ulong BudgetSeconds = 2;

        private const int StopKinds = 16;

        /// <summary>A long campaign prints its summary after this many guests, and at the end.</summary>
        public const int SummaryEvery = 100;

        /// <summary>The last campaign's figures (read by the tests).</summary>
        public static int Guests, HostFailures, SentinelFailures;

        /// <summary>Guests stopped by a failed VM entry or an EPT misconfiguration: the host let a guest reach a state the CPU refuses (a host bug, contained to that VM).</summary>
        public static int EntryFailures;
        public static ulong TotalExits, SentinelRounds;
        public static readonly ulong[] ExitsByReason = new ulong[ExitReason.Count];
        public static readonly int[] FragmentsByKind = new int[FuzzProgram.KindCount];
        private static readonly string?[] s_stopNames = new string?[StopKinds];
        private static readonly int[] s_stopCounts = new int[StopKinds];

        /// <summary>Distinct stop reasons seen in the last campaign.</summary>
        public static int StopKindsSeen
        {
            get
            {
                int n = 0;
                for (int i = 0; i < StopKinds; i++)
                {
                    if (s_stopNames[i] != null)
                        n++;
                }
                return n;
            }
        }

        private static byte* s_kit;
        private static ulong s_kitLength;
        private static byte* s_image;
        private static int s_imageCapacity;

        /// <summary>Finds and checks the kit, and makes the composing buffer; null when all is ready.</summary>
        private static string? Prepare()
        {
            if (s_image != null)
                return null;
            if (!KvmGlue.FindModule("fuzzkit", out byte* kit, out ulong length))
                return "the fuzzkit module is not on the boot image";
            string? bad = FuzzProgram.CheckKit(new System.ReadOnlySpan<byte>(kit, (int)length));
            if (bad != null)
                return bad;
            int capacity = FuzzProgram.MaxLength(new System.ReadOnlySpan<byte>(kit, (int)length), Steps);
            ulong pages = ((ulong)capacity + 4095) / 4096;
            ulong buffer = FrameAllocator.AllocateContiguous(pages);
            if (buffer == 0)
                return "no memory for the fuzz guest's image";
            s_kit = kit;
            s_kitLength = length;
            s_image = (byte*)buffer;
            s_imageCapacity = (int)(pages * 4096);
            return null;
        }

        /// <summary>The fuzz guest of <paramref name="seed"/>, created and loaded (not started); its serial output is muted.</summary>
        public static Vm? CreateGuest(ulong seed, out string? problem)
        {
            problem = Prepare();
            if (problem != null)
                return null;
            int length = FuzzProgram.Compose(new System.ReadOnlySpan<byte>(s_kit, (int)s_kitLength), seed, Steps, (uint)GuestRam,
                new System.Span<byte>(s_image, s_imageCapacity), new System.Span<int>(FragmentsByKind));
            Vm? vm = GuestRunner.Create(GuestRam, s_image, (ulong)length, out problem);
            if (vm == null)
                return null;
            vm.MuteSerial = true;
            vm.MaxQuanta = VmcsSetup.BudgetUnits(BudgetSeconds);
            return vm;
        }

        private static void Noop(ulong argument) { }

        /// <summary><c>fuzz=SEED:COUNT</c> at boot: the campaign, then the machine's status (0 only with no host failure).</summary>
        public static int RunFromCommandLine()
        {
            if (!KernelMain.Features.Vmx || !KernelMain.Features.Ept || !KernelMain.Features.UnrestrictedGuest)
            {
                Log.Line("fuzz: cannot run guests: this CPU lacks VT-x, EPT or unrestricted guest (see the banner)");
                return Machine.StatusBadBoot;
            }
            if (!Run(CommandLine.FuzzSeed, CommandLine.FuzzCount > int.MaxValue ? int.MaxValue : (int)CommandLine.FuzzCount, CommandLine.FuzzExits))
                return Machine.StatusBadBoot;
            return HostFailures + SentinelFailures == 0 ? Machine.StatusSuccess : Machine.StatusTestsFailed;
        }

        /// <summary>FNV-1a over the kernel's code.</summary>
        internal static ulong CodeChecksum()
        {
            KernelLayout* layout = KernelLayout.Get;
            ulong h = 0xCBF2_9CE4_8422_2325UL;
            for (ulong* p = (ulong*)layout->TextStart; p < (ulong*)layout->TextEnd; p++)
                h = (h ^ *p) * 0x0000_0100_0000_01B3UL;
            return h;
        }

        /// <summary>
        /// FNV-1a over the host's own page tables (the boot identity map under CR3: PML4, PDPTs and
        /// page directories, with the CPU's accessed and dirty bits masked), which nothing changes
        /// after boot: a guest that reached them would show here.
        /// </summary>
        internal static ulong PageTableChecksum()
        {
            const ulong Present = 1, Huge = 1UL << 7, AddressMask = 0x000F_FFFF_FFFF_F000, AccessedDirty = (1UL << 5) | (1UL << 6);
            ulong h = 0xCBF2_9CE4_8422_2325UL;
            ulong* pml4 = (ulong*)(Native.ReadCr3() & AddressMask);
            for (int i = 0; i < 512; i++)
            {
                ulong e4 = pml4[i] & ~AccessedDirty;
                h = (h ^ e4) * 0x0000_0100_0000_01B3UL;
                if ((e4 & Present) == 0)
                    continue;
                ulong* pdpt = (ulong*)(e4 & AddressMask);
                for (int j = 0; j < 512; j++)
                {
                    ulong e3 = pdpt[j] & ~AccessedDirty;
                    h = (h ^ e3) * 0x0000_0100_0000_01B3UL;
                    if ((e3 & (Present | Huge)) != Present)
                        continue;
                    ulong* pd = (ulong*)(e3 & AddressMask);
                    for (int k = 0; k < 512; k++)
                        h = (h ^ (pd[k] & ~AccessedDirty)) * 0x0000_0100_0000_01B3UL;
                }
            }
            return h;
        }

        /// <summary>Frames the mm core can hand out (free in the buddy allocator and in the per-CPU caches).</summary>
        internal static int MmFreeFrames()
        {
            Tandem.Mm.MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            return mm == null ? 0 : mm.Frames.BuddyFreeFrames + mm.Frames.CachedFrames;
        }

        private static void Reset()
        {
            Guests = HostFailures = SentinelFailures = EntryFailures = 0;
            TotalExits = SentinelRounds = 0;
            for (int i = 0; i < ExitsByReason.Length; i++)
                ExitsByReason[i] = 0;
            for (int i = 0; i < FragmentsByKind.Length; i++)
                FragmentsByKind[i] = 0;
            for (int i = 0; i < StopKinds; i++)
            {
                s_stopNames[i] = null;
                s_stopCounts[i] = 0;
            }
        }

        private static bool SameText(string a, string b)
        {
            if (a.Length != b.Length)
                return false;
            for (int i = 0; i < a.Length; i++)
            {
                if (a[i] != b[i])
                    return false;
            }
            return true;
        }

        private static void CountStop(string reason)
        {
            for (int i = 0; i < StopKinds; i++)
            {
                if (s_stopNames[i] == null)
                {
                    s_stopNames[i] = reason;
                    s_stopCounts[i] = 1;
                    return;
                }
                if (SameText(s_stopNames[i]!, reason))
                {
                    s_stopCounts[i]++;
                    return;
                }
            }
            s_stopCounts[StopKinds - 1]++;
        }

        /// <summary>
        /// Runs fuzz guests of seeds <paramref name="firstSeed"/>, +1, ... until <paramref name="count"/>
        /// guests ran or (when <paramref name="exitGoal"/> is not 0) their exits reached it, beside the
        /// sentinel; prints one line per guest and the summary. False when the campaign could not
        /// start (the reason is printed); the figures are in the static fields.
        /// </summary>
        public static bool Run(ulong firstSeed, int count, ulong exitGoal)
        {
            Reset();
            string? problem = Prepare();
            if (problem != null)
            {
                Say("fuzz: cannot run: ", problem);
                return false;
            }
            if (!KvmGlue.FindModule("sentinel32", out byte* sentinelImage, out ulong sentinelLength))
            {
                Log.Line("fuzz: cannot run: the sentinel32 module is not on the boot image");
                return false;
            }
            Vm? sentinel = GuestRunner.Create(GuestRam, sentinelImage, sentinelLength, out problem);
            if (sentinel == null)
            {
                Say("fuzz: cannot create the sentinel VM: ", problem ?? "?");
                return false;
            }
            sentinel.MaxQuanta = ulong.MaxValue;
            VmThreads.Start(sentinel, 0);
            // The sentinel has filled its memory once it reports its first round.
            ulong deadline = Native.Rdtsc() + 60 * Timer.TscPerSecond;
            while (Volatile.Read(ref sentinel.LastPhase) == 0 && !sentinel.Stopped && Native.Rdtsc() < deadline)
                Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
            ulong sentinelStart = Volatile.Read(ref sentinel.LastPhase);
            s_sentinel = sentinel;
            s_sentinelStart = sentinelStart;
            ulong code = CodeChecksum();
            s_pageTables = PageTableChecksum();
            for (int i = 0; i < count && (exitGoal == 0 || TotalExits < exitGoal); i++)
            {
                ulong seed = firstSeed + (ulong)i;
                int freeBefore = MmFreeFrames();
                Vm? vm = CreateGuest(seed, out problem);
                if (vm == null)
                {
                    Failure(seed, 0, problem ?? "the fuzz guest could not be created");
                    continue;
                }
                VmThreads.Start(vm, 0);
                Wait(vm);
                Guests++;
                ulong exits = 0;
                for (int r = 0; r < ExitReason.Count; r++)
                {
                    ulong n = 0;
                    for (int v = 0; v < vm.Vcpus.Length; v++)
                        n += vm.Vcpus[v].ExitCount(r);
                    ExitsByReason[r] += n;
                    exits += n;
                }
                TotalExits += exits;
                uint step = 0;
                vm.Memory.Read(0x8000, (byte*)&step, 4);
                string reason = vm.StopReason ?? "exit port";
                CountStop(reason);
                if (vm.Vcpus[0].ExitCount(ExitReason.InvalidGuestState) != 0 || vm.Vcpus[0].ExitCount(ExitReason.EptMisconfiguration) != 0)
                {
                    EntryFailures++;
                    Failure(seed, step, "the host let the guest reach a state VM entry refuses (invalid guest state or an EPT misconfiguration); its stop dump is above");
                }
                Log.Info($"fuzz: seed {seed}: {exits} exits, ended at step {(ulong)step} of {(ulong)Steps}: {reason} (status {vm.ExitStatus})");
                vm.Release();
                CheckHost(seed, step, freeBefore, code);
                // A long campaign's figures so far, now and then: a run cut short still has them.
                if (Guests % SummaryEvery == 0)
                    PrintSummary(firstSeed);
            }
            bool early = sentinel.Stopped;
            if (!early)
                sentinel.Stop(0, "the fuzz campaign ended");
            Wait(sentinel);
            SentinelRounds = sentinel.LastPhase - sentinelStart;
            if (early || sentinel.ExitStatus != 0)
            {
                SentinelFailures++;
                Log.Error($"fuzz: HOST FAILURE: the sentinel VM stopped before the end: {sentinel.StopReason ?? "exit status 1: a word of its memory changed"}");
            }
            else if (SentinelRounds == 0)
            {
                SentinelFailures++;
                Log.Error($"fuzz: HOST FAILURE: the sentinel VM made no progress while the fuzz guests ran");
            }
            sentinel.Release();
            s_sentinel = null;
            PrintSummary(firstSeed);
            return true;
        }

        private static void Say(string text, string detail)
        {
            Log.Info($"{text}{detail}");
        }

        private static readonly Vm[] s_one = new Vm[1];

        private static void Wait(Vm vm)
        {
            s_one[0] = vm;
            VmThreads.WaitAll(s_one, 1);
        }

        private static void Failure(ulong seed, uint step, string what)
        {
            HostFailures++;
            Log.Error($"fuzz: HOST FAILURE after seed {seed} (its last step {(ulong)step}; replay with vm=fuzz,seed={seed}): {what}");
        }

        /// <summary>The host's own checks after a fuzz guest was released.</summary>
        private static void CheckHost(ulong seed, uint step, int freeBefore, ulong code)
        {
            for (int c = 0; c < Cpu.Count; c++)
            {
                if (c != Cpu.CurrentIndex && !Smp.RunOn(c, &Noop, 0))
                    Failure(seed, step, "a CPU did not answer a call");
            }
            string? heap = KernelHeap.CheckInvariants();
            if (heap != null)
                Failure(seed, step, heap);
            string? frames = FrameAllocator.CheckInvariants();
            if (frames != null)
                Failure(seed, step, frames);
            // A teardown another thread still holds up (an aging walk that pinned the dying space
            // finishes its destruction) gives the frames back a little later: wait up to a second.
            int freeAfter = MmFreeFrames();
            ulong deadline = Native.Rdtsc() + Timer.TscPerSecond;
            while (freeAfter < freeBefore && Native.Rdtsc() < deadline)
            {
                Sched.Scheduler.Block(Native.Rdtsc() + Timer.TscPerSecond / 100);
                freeAfter = MmFreeFrames();
            }
            if (freeAfter < freeBefore)
            {
                Log.Error($"fuzz: frames missing after the guest was released: {(ulong)(freeBefore - freeAfter)}");
                Failure(seed, step, "mm frames of the released guest did not come back");
            }
            if (CodeChecksum() != code)
                Failure(seed, step, "the kernel's code changed");
            if (PageTableChecksum() != s_pageTables)
                Failure(seed, step, "the host's page tables changed");
        }

        /// <summary>The host page tables' checksum when the campaign started (<see cref="PageTableChecksum"/>).</summary>
        private static ulong s_pageTables;

        private static Vm? s_sentinel;
        private static ulong s_sentinelStart;

        private static void PrintSummary(ulong firstSeed)
        {
            if (s_sentinel != null)
                SentinelRounds = Volatile.Read(ref s_sentinel.LastPhase) - s_sentinelStart;
            ulong f = Log.Begin();
            Log.Write("fuzz: ");
            Log.Write((ulong)Guests);
            Log.Write(" guests (seeds ");
            Log.Write(firstSeed);
            Log.Write("..");
            Log.Write(firstSeed + (ulong)(Guests > 0 ? Guests - 1 : 0));
            Log.Write("), ");
            Log.Write(TotalExits);
            Log.Write(" exits, sentinel rounds ");
            Log.Write(SentinelRounds);
            Log.Write(", host failures ");
            Log.Write((ulong)(HostFailures + SentinelFailures));
            Log.Write(" (of which VM entry failures ");
            Log.Write((ulong)EntryFailures);
            Log.Write("), kernel heap in use ");
            Log.Write(KernelHeap.BytesInUse >> 10);
            Log.Write(" KiB");
            Log.Write("\nfuzz: exits by reason:");
            VmThreads.WriteExitCounts(ExitsByReason, " ");
            Log.Write("\nfuzz: stops by reason:");
            for (int i = 0; i < StopKinds && s_stopNames[i] != null; i++)
            {
                Log.Write(i == 0 ? " " : "; ");
                Log.Write(s_stopNames[i]!);
                Log.WriteChar(' ');
                Log.Write((ulong)s_stopCounts[i]);
            }
            Log.Write("\nfuzz: fragments by kind:");
            for (int k = 0; k < FuzzProgram.KindCount; k++)
            {
                Log.Write(k == 0 ? " " : ", ");
                Log.Write(FuzzProgram.KindName(k));
                Log.WriteChar(' ');
                Log.Write((ulong)FragmentsByKind[k]);
            }
            Log.WriteChar('\n');
            Log.End(f);
        }
    }
}
