using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

/// <summary>
/// The guests of the in-kernel SMP benchmarks (<c>./build.sh bench</c>, kernel/Bench/SmpBench.cs),
/// built on the SMP guests' bring-up (<see cref="SmpBspBringUp"/>: fw_cfg's vCPU count,
/// INIT-SIPI-SIPI, the per-vCPU tables of SmpGuests.cs) and a one-vCPU guest that halts between
/// timer ticks, to run beside them. Every time stamp is the guest's RDTSC, which is the host's TSC
/// (Tandem neither offsets nor intercepts it; under Bochs with <c>clock: sync=none</c> it counts
/// instructions).
/// </summary>
/// <remarks>
/// <para><b>ipibench32</b> (2 vCPUs; the bench pins them to different physical CPUs): after
/// bring-up the BSP stops its timer (and takes a tick still pending with <c>sti; nop; cli</c>, so no
/// interrupt waits for a window the rest of the run) and, interrupts off, runs <see cref="IpiBenchTotalRounds"/>
/// rounds (the first <see cref="IpiBenchWarmup"/> are warm-up: they fault the stamp pages and stacks
/// in). A round: a delay of <see cref="IpiBenchDelay"/> loop iterations (about 2 instructions each,
/// long enough for vCPU 1 to be blocked in its HLT again), RDTSC (table <see cref="IpiSent"/>), the
/// xAPIC ICR write that sends fixed vector <see cref="IpiBenchVector"/> to APIC ID 1 (one MMIO exit),
/// RDTSC (<see cref="IpiSendDone"/>), then it polls <see cref="BenchIpiCount"/> until vCPU 1 counted
/// this round and takes RDTSC again (<see cref="IpiSeen"/>). vCPU 1 idles in <c>sti; hlt</c>; its
/// handler takes RDTSC on entry (<see cref="IpiHandlerIn"/>), writes the xAPIC EOI (one MMIO exit),
/// takes RDTSC (<see cref="IpiEoiDone"/>) and increments <see cref="BenchIpiCount"/>. Each table is
/// <c>u64[BenchMaxRounds]</c> indexed by the round. Status 5: the count did not move within
/// <see cref="IpiBenchPolls"/> polls.</para>
/// <para><b>yieldbench32</b> (2 vCPUs; the bench pins both to one physical CPU): every yield is
/// <c>rdtsc; mov esi,eax; mov edi,edx; mov eax,1; vmcall</c> (hypercall 1, yield; the host's bench
/// reads the guest's TSC before the exit from ESI:EDI). vCPU 1, once alive, yields until the BSP sets
/// <see cref="SmpGo"/>; the BSP, after bring-up and with its timer stopped, sets it, writes phase 1,
/// takes RDTSC (<see cref="BenchStart"/>), yields <see cref="YieldBenchYields"/> times, takes RDTSC
/// (<see cref="BenchEnd"/>) and writes phase 2; vCPU 1 yields <see cref="YieldBenchYields"/> times and
/// sets <see cref="BenchApDone"/>, then yields forever. With both on one CPU every yield switches, so
/// the BSP's window holds 2 x <see cref="YieldBenchYields"/> switches. Status 5: vCPU 1 did not set
/// its done flag within <see cref="YieldWaitLimit"/> of the BSP's own yields.</para>
/// <para>Both: other APs (a VM of 3 or more vCPUs) just idle; status 2 when vCPU 1 started more than
/// once; the other statuses as SmpGuests.cs says. Both print a line and exit 0.</para>
/// <para><b>tick32</b> (1 vCPU): its LAPIC timer periodic at <see cref="TickPeriod"/> (1 ms) on vector
/// 0x40, the handler counts (<see cref="TickCount"/>) and EOIs, the guest waits in <c>sti; hlt</c>
/// until <see cref="TickLimit"/> ticks, then prints and exits 0 (the bench stops it long before).</para>
/// </remarks>
public static partial class TestGuests
{
    /// <summary>
    /// The benchmarks' single values (beside the SMP tables at <see cref="SmpTables"/>): the IPIs
    /// vCPU 1's handler completed (u32), vCPU 1's done flag (u32), and the TSC at the start and end
    /// of the BSP's yields (u64 each).
    /// </summary>
    public const uint BenchVars = 0x6100, BenchVarsSize = 0x20,
        BenchIpiCount = 0x6100, BenchApDone = 0x6104, BenchStart = 0x6108, BenchEnd = 0x6110;

    /// <summary>The rounds one stamp table holds: each table is <c>u64[BenchMaxRounds]</c>.</summary>
    public const uint BenchMaxRounds = 256, BenchTableSize = BenchMaxRounds * 8;

    /// <summary>
    /// ipibench32's stamp tables (guest RDTSC per round): before the ICR write, after it, vCPU 1's
    /// handler on entry, after its EOI write, and when the BSP saw the count move.
    /// </summary>
    public const uint BenchStamps = 0x20_0000,
        IpiSent = BenchStamps, IpiSendDone = BenchStamps + BenchTableSize, IpiHandlerIn = BenchStamps + 2 * BenchTableSize,
        IpiEoiDone = BenchStamps + 3 * BenchTableSize, IpiSeen = BenchStamps + 4 * BenchTableSize, BenchStampsSize = 5 * BenchTableSize;

    /// <summary>ipibench32: warm-up rounds, measured rounds, and both (the tables' first index is the first warm-up round).</summary>
    public const uint IpiBenchWarmup = 8, IpiBenchRounds = 200, IpiBenchTotalRounds = IpiBenchWarmup + IpiBenchRounds;

    /// <summary>ipibench32: the delay loop before each round (iterations), and how often the BSP polls the count before it gives up.</summary>
    public const uint IpiBenchDelay = 25_000, IpiBenchPolls = 1u << 24;

    /// <summary>The vector of ipibench32's IPI (the SMP guests' fixed IPI vector).</summary>
    public const byte IpiBenchVector = SmpIpiVector;

    /// <summary>yieldbench32: the yields each of the two vCPUs makes in the measured window.</summary>
    public const uint YieldBenchYields = 200;

    /// <summary>yieldbench32: the BSP's yields while it waits for vCPU 1's done flag, before it gives up.</summary>
    public const uint YieldWaitLimit = 1u << 24;

    /// <summary>The yield hypercall (VMCALL with EAX = 1, kvm/Vmx/Exits/VmcallExit.cs).</summary>
    public const uint HypercallYield = 1;

    /// <summary>tick32: its tick counter, the LAPIC timer's initial count (1 ms at the 1 GHz APIC clock) and the ticks after which it exits.</summary>
    public const uint TickCount = 0x7400, TickPeriod = 1_000_000, TickLimit = 60_000;

    private static byte[] IpiBench32() => SmpImage("ipibench32", out _);

    private static byte[] YieldBench32() => SmpImage("yieldbench32", out _);

    /// <summary>One yield: the TSC into ESI:EDI for the host's bench, then hypercall 1. Uses eax, edx, esi, edi.</summary>
    private static void YieldCall(Assembler a)
    {
        a.rdtsc();
        a.mov(esi, eax);
        a.mov(edi, edx);
        a.mov(eax, HypercallYield);
        a.vmcall();
    }

    /// <summary>Stores edx:eax at <paramref name="table"/>[<paramref name="index"/>] (u64 entries).</summary>
    private static void StoreStamp(Assembler a, uint table, AssemblerRegister32 index)
    {
        a.mov(__dword_ptr[index * 8 + (int)table], eax);
        a.mov(__dword_ptr[index * 8 + (int)(table + 4)], edx);
    }

    /// <summary>ipibench32 (<paramref name="yield"/> false) or yieldbench32 (true); see the remarks above.</summary>
    private static byte[] SmpBenchPass(bool yield, uint[] addr, out ulong[] rips)
    {
        var texts = new List<string>();
        int Text(string s)
        {
            texts.Add(s);
            return texts.Count - 1;
        }
        int bannerHead = Text(yield ? "yieldbench guest: " : "ipibench guest: ");
        int bannerTail = Text(yield ? " vCPUs, vCPU 0 and 1 yield to each other (hypercall 1)\n" : " vCPUs, vCPU 0 sends fixed IPIs to vCPU 1 halted\n");
        int failPrefix = Text("SMP CHECK FAILED: cpu ");
        int countFail = Text("SMP CHECK FAILED: the guest needs 2 to 8 vCPUs\n");
        var reasons = new List<int>
        {
            -1,
            Text(" did not come up\n"),
            Text(" started more than once\n"),
            -1,                                                           // 3: countFail, without a cpu
            Text(" (the BSP) does not have APIC ID 0\n"),
            Text(yield ? " did not finish its yields\n" : " did not handle the IPI in time\n"),
        };
        int okText = Text(yield ? "yieldbench: done\n" : "ipibench: every round done\n");
        var strings = new Strings(texts.ToArray());
        uint S(int index) => strings.Address(index);

        var a = new Assembler(32);
        var timer = a.CreateLabel();
        var ipi = a.CreateLabel();
        var spurious = a.CreateLabel();
        var apEntry = a.CreateLabel();
        var trampoline = a.CreateLabel();
        var printDec = a.CreateLabel();
        var printStr = a.CreateLabel();
        var cpuCountBad = a.CreateLabel();
        var exit = a.CreateLabel();
        var failCommon = a.CreateLabel();
        var failWith = new Label[reasons.Count];
        for (int s = 0; s < failWith.Length; s++)
            failWith[s] = reasons[s] < 0 ? default : a.CreateLabel();

        var allUp = a.CreateLabel();
        SmpBspBringUp(a, addr, S(bannerHead), S(bannerTail), printDec, cpuCountBad, failWith[1], failWith[4], ref allUp);

        // --- vCPU 1 started once; the BSP's timer off, interrupts off from here
        a.mov(ebx, 1);
        a.cmp(__dword_ptr[SmpStarts + 4], 1);
        a.jne(failWith[2]);
        a.mov(__dword_ptr[Lapic + 0x320], 0x1_0000 | SmpTimerVector);   // masked
        a.mov(__dword_ptr[Lapic + 0x380], 0);                            // stopped
        a.sti();                                                         // a tick still pending is taken here,
        a.nop();                                                         // not left to keep the host's entries
        a.cli();                                                         // asking for an interrupt window
        var success = a.CreateLabel();
        if (!yield)
        {
            // --- ipibench32: the rounds (ebx = the round)
            var round = a.CreateLabel();
            var delay = a.CreateLabel();
            var poll = a.CreateLabel();
            var seen = a.CreateLabel();
            a.mov(__dword_ptr[Lapic + 0x310], 1u << 24);                 // ICR high: APIC ID 1
            a.xor(ebx, ebx);
            a.Label(ref round);
            a.mov(ecx, IpiBenchDelay);
            a.Label(ref delay);
            a.dec(ecx);
            a.jnz(delay);
            a.rdtsc();
            a.mov(esi, eax);
            a.mov(edi, edx);
            a.mov(__dword_ptr[Lapic + 0x300], 0x0000_4000 | IpiBenchVector);   // fixed, assert, physical: sends
            a.rdtsc();
            StoreStamp(a, IpiSendDone, ebx);
            a.mov(__dword_ptr[ebx * 8 + (int)IpiSent], esi);
            a.mov(__dword_ptr[ebx * 8 + (int)(IpiSent + 4)], edi);
            a.lea(ebp, __[ebx + 1]);
            a.mov(ecx, IpiBenchPolls);
            a.Label(ref poll);
            a.cmp(__dword_ptr[BenchIpiCount], ebp);
            a.jae(seen);
            a.dec(ecx);
            a.jnz(poll);
            a.mov(ebx, 1);
            a.jmp(failWith[5]);
            a.Label(ref seen);
            a.rdtsc();
            StoreStamp(a, IpiSeen, ebx);
            a.inc(ebx);
            a.cmp(ebx, IpiBenchTotalRounds);
            a.jb(round);
            a.jmp(success);
        }
        else
        {
            // --- yieldbench32: go, phase 1, the measured yields, phase 2, wait for vCPU 1
            var loop = a.CreateLabel();
            var wait = a.CreateLabel();
            a.mov(__dword_ptr[SmpGo], 1);
            Out(a, Phase, 1);
            a.rdtsc();
            a.mov(__dword_ptr[BenchStart], eax);
            a.mov(__dword_ptr[BenchStart + 4], edx);
            a.mov(ecx, YieldBenchYields);
            a.Label(ref loop);
            YieldCall(a);
            a.dec(ecx);
            a.jnz(loop);
            a.rdtsc();
            a.mov(__dword_ptr[BenchEnd], eax);
            a.mov(__dword_ptr[BenchEnd + 4], edx);
            Out(a, Phase, 2);
            a.mov(ebp, YieldWaitLimit);
            a.Label(ref wait);
            a.cmp(__dword_ptr[BenchApDone], 0);
            a.jne(success);
            YieldCall(a);
            a.dec(ebp);
            a.jnz(wait);
            a.mov(ebx, 1);
            a.jmp(failWith[5]);
        }
        a.Label(ref success);
        Print(a, S(okText), long64: false);
        a.xor(ebp, ebp);
        a.jmp(exit);

        SmpFailExits(a, reasons.Select(r => r < 0 ? 0u : S(r)).ToArray(), failWith, ref cpuCountBad, ref failCommon, ref exit, S(countFail), S(failPrefix), printDec, printStr);

        // --- the APs
        var badId = a.CreateLabel();
        var park = a.CreateLabel();
        SmpApPrologue(a, ref apEntry, badId);
        if (!yield)
        {
            var idle = a.CreateLabel();
            a.mov(__dword_ptr[Lapic + 0xF0], 0x100 | SmpSpuriousVector);   // software-enabled: takes fixed IPIs
            a.mov(__dword_ptr[ebx * 4 + (int)SmpAlive], 1);
            a.Label(ref idle);
            a.sti();
            a.hlt();
            a.jmp(idle);
            a.Label(ref badId);
            a.mov(__dword_ptr[SmpBadApicId], ebx);
            a.Label(ref park);
            a.pause();
            a.jmp(park);
        }
        else
        {
            var wait = a.CreateLabel();
            var go = a.CreateLabel();
            var loop = a.CreateLabel();
            a.mov(__dword_ptr[ebx * 4 + (int)SmpAlive], 1);
            a.Label(ref wait);
            a.cmp(__dword_ptr[SmpGo], 0);
            a.jne(go);
            YieldCall(a);
            a.jmp(wait);
            a.Label(ref go);
            a.cmp(ebx, 1);
            a.jne(park);                                                 // only vCPU 1 takes part
            a.mov(ecx, YieldBenchYields);
            a.Label(ref loop);
            YieldCall(a);
            a.dec(ecx);
            a.jnz(loop);
            a.mov(__dword_ptr[BenchApDone], 1);
            a.jmp(park);
            a.Label(ref badId);
            a.mov(__dword_ptr[SmpBadApicId], ebx);
            a.Label(ref park);
            YieldCall(a);                                                // never spins on the CPU it shares
            a.jmp(park);
        }

        // --- interrupt handlers: the BSP's ticks (bring-up), the IPI, spurious
        a.Label(ref timer);
        SmpCountingHandler(a, SmpTicks);
        a.Label(ref ipi);
        if (!yield)
        {
            a.push(eax);
            a.push(edx);
            a.rdtsc();
            a.push(ecx);
            a.mov(ecx, __dword_ptr[BenchIpiCount]);
            a.and(ecx, (int)(BenchMaxRounds - 1));
            StoreStamp(a, IpiHandlerIn, ecx);
            a.mov(__dword_ptr[Lapic + 0xB0], 0);                         // EOI: an MMIO exit
            a.rdtsc();
            StoreStamp(a, IpiEoiDone, ecx);
            a.inc(__dword_ptr[BenchIpiCount]);
            a.pop(ecx);
            a.pop(edx);
            a.pop(eax);
            a.iretd();
        }
        else
        {
            SmpCountingHandler(a, SmpIpis);
        }
        a.Label(ref spurious);                                           // no EOI for a spurious interrupt
        a.iretd();

        SmpPrintRoutines(a, ref printDec, ref printStr);

        // --- the trampoline's bytes, copied to SmpTrampoline by the BSP
        a.Label(ref trampoline);
        a.db(SmpTrampolineBlob(addr[SmpApEntry]));

        return strings.ImageN(a, 32, [timer, ipi, spurious, apEntry, trampoline], out rips);
    }

    /// <summary>tick32: see the remarks above.</summary>
    private static byte[] Tick32() => TwoPass("tick32", Tick32Pass);

    private static byte[] Tick32Pass(uint handlerAddress, out ulong handlerRip)
    {
        var strings = new Strings("tick guest: LAPIC timer every 1 ms, sti; hlt between ticks\n", "tick guest: done\n");
        var a = new Assembler(32);
        var wait = a.CreateLabel();
        var halt = a.CreateLabel();
        var handler = a.CreateLabel();
        Print(a, strings.Address(0), long64: false);
        FlatDescriptors(a);
        Gate(a, SmpTimerVector, handlerAddress);
        a.mov(__dword_ptr[TickCount], 0);
        LapicTimerOn(a, TickPeriod);
        a.Label(ref wait);
        a.sti();
        a.hlt();
        a.cmp(__dword_ptr[TickCount], TickLimit);
        a.jb(wait);
        a.cli();
        a.mov(__dword_ptr[Lapic + 0x320], 0x1_0000 | SmpTimerVector);   // masked
        Print(a, strings.Address(1), long64: false);
        Out(a, Exit, 0);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);

        a.Label(ref handler);
        a.push(eax);
        a.inc(__dword_ptr[TickCount]);
        a.mov(__dword_ptr[Lapic + 0xB0], 0);                             // EOI
        a.pop(eax);
        a.iretd();
        return strings.Image(a, 32, handler, out handlerRip);
    }
}
