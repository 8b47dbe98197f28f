using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

/// <summary>
/// The SMP test guests, <c>smp32</c> and <c>smpspin32</c>: flat 32-bit images like the others, for a
/// VM of 2 to <see cref="SmpMaxCpus"/> vCPUs (<c>vm=NAME,cpus=N</c>). The BSP (vCPU 0) enters at
/// 1 MiB in protected mode; it reads N from fw_cfg (key 0x05, FW_CFG_NB_CPUS, a little-endian u16 at
/// selector port 0x510 / data port 0x511), copies a real-mode trampoline to
/// <see cref="SmpTrampoline"/>, and starts the application processors one at a time with
/// INIT-SIPI-SIPI through its xAPIC ICR. Each AP leaves the trampoline for 32-bit code in the image,
/// learns its APIC ID from its own LAPIC's ID register (0xFEE00020, bits 31:24) and keeps everything
/// it records in per-vCPU slots indexed by that ID, so the host can read the results from guest memory
/// at the addresses below.
/// </summary>
/// <remarks>
/// <para>Guest memory (all below 1 MiB but the spin data; every table is <c>u32[SmpMaxCpus]</c>
/// indexed by APIC ID, zeroed by the BSP before the first AP starts):</para>
/// <list type="table">
/// <item><term>0x0000-0x07FF</term><description>GDT (base 0, the flat loader's GDTR: 0x08 code, 0x10 data) and IDT (base 0: gates 0x40, 0x41, 0xFF), shared by every vCPU.</description></item>
/// <item><term>0x6000-0x60FF</term><description>The tables (<see cref="SmpTables"/>).</description></item>
/// <item><term>0x8000-0x8067</term><description>The AP trampoline (<see cref="SmpTrampoline"/>: real-mode code, its GDT, GDTR and IDTR).</description></item>
/// <item><term>0x10000-0x17FFF</term><description>Stacks, 4 KiB per vCPU (<see cref="SmpStacks"/>); the BSP moves to its own at entry.</description></item>
/// <item><term>0x200000-0x27FFFF</term><description>smpspin32's data, 16 pages per vCPU (<see cref="SpinData"/>).</description></item>
/// </list>
/// <para>Bring-up of AP i (i = 1 .. N-1, one after the other): the BSP writes i to
/// <see cref="SmpBooting"/>, sends INIT (ICR 0x00004500, destination i in ICR bits 63:56), waits
/// <see cref="SmpInitDelayTicks"/> of its own timer ticks, sends a SIPI (0x00004600 | 0x08), waits up
/// to <see cref="SmpSipiWaitTicks"/> ticks for the AP's start count (<see cref="SmpStarts"/>) to leave
/// 0 and sends the second SIPI only if it has not, then waits up to <see cref="SmpAliveTicks"/> ticks
/// for its alive flag (<see cref="SmpAlive"/>). The BSP's waits are <c>sti; hlt</c> on its own LAPIC
/// timer (periodic, <see cref="SmpTimerCount"/> at 1 GHz: 2 ms). An AP counts every start in its
/// <see cref="SmpStarts"/> slot (a second SIPI that restarted it shows as 2 and fails the guest); an
/// AP that reads an APIC ID of 8 or more stores it in <see cref="SmpBadApicId"/> and spins
/// (<c>pause</c>, interrupts off), so the BSP reports it as not come up.</para>
/// <para>Exit statuses (port 0xF4) shared by both guests: 0 success; 1 an AP did not come up (no
/// alive flag in time); 2 an AP started more than once; 3 fw_cfg's vCPU count is below 2 or above 8
/// (nothing else is done); 4 the BSP's APIC ID is not 0. smp32: 5 a vCPU had fewer than
/// <see cref="SmpMinTicks"/> timer ticks, 6 an AP fewer than <see cref="SmpMinIpis"/> IPIs, when the
/// BSP's timer reached <see cref="SmpTickLimit"/> ticks. smpspin32: 5 an AP did not set its done flag
/// within <see cref="SpinWaitPolls"/> polls, 6 its progress count is not
/// <see cref="SpinIterations"/>, 7 its pages do not hold the expected values, 8 its checksum does not
/// match. A failure prints <c>SMP CHECK FAILED: cpu I REASON</c> (status 3:
/// <c>SMP CHECK FAILED: the guest needs 2 to 8 vCPUs</c>).</para>
/// </remarks>
public static partial class TestGuests
{
    /// <summary>The most vCPUs the SMP guests drive: each per-vCPU table has this many slots.</summary>
    public const uint SmpMaxCpus = 8;

    /// <summary>
    /// The AP trampoline's place and the start-up IPI vector that names it (0x8000 >> 12): real-mode
    /// code from <see cref="SmpTrampoline"/>, then its own GDT (null, 0x08 flat 32-bit code, 0x10 flat
    /// data) at <see cref="SmpTrampolineGdt"/>, the GDTR at <see cref="SmpTrampolineGdtr"/> and the
    /// IDTR (base 0, limit 0x7FF) at <see cref="SmpTrampolineIdtr"/>; <see cref="SmpTrampolineSize"/>
    /// bytes in all.
    /// </summary>
    public const uint SmpTrampoline = 0x8000, SmpSipiVector = SmpTrampoline >> 12, SmpTrampolineGdt = 0x8040,
        SmpTrampolineGdtr = 0x8058, SmpTrampolineIdtr = 0x8060, SmpTrampolineSize = 0x68;

    /// <summary>
    /// The per-vCPU tables (<c>u32[SmpMaxCpus]</c>, indexed by APIC ID): LAPIC timer interrupts, fixed
    /// IPIs received (vector 0x41), the alive flag (1 once the vCPU is set up), and the start count
    /// (the BSP's is set to 1). smpspin32 adds the progress counter (iterations done), the checksum and
    /// the done flag. The whole area is <see cref="SmpTables"/>, <see cref="SmpTablesSize"/> bytes.
    /// </summary>
    public const uint SmpTables = 0x6000, SmpTablesSize = 0x100,
        SmpTicks = 0x6000, SmpIpis = 0x6020, SmpAlive = 0x6040, SmpStarts = 0x6060,
        SpinProgress = 0x6080, SpinChecksum = 0x60A0, SpinDone = 0x60C0;

    /// <summary>
    /// Single u32 values: the vCPU count as read from fw_cfg, the AP being started, an out-of-range
    /// APIC ID an AP read (0 when none), and smpspin32's start flag (the APs spin once it is 1).
    /// </summary>
    public const uint SmpCpuCount = 0x60E0, SmpBooting = 0x60E4, SmpBadApicId = 0x60E8, SmpGo = 0x60EC;

    /// <summary>Per-vCPU stacks: vCPU i's stack top is <c>SmpStacks + (i + 1) * SmpStackSize</c>.</summary>
    public const uint SmpStacks = 0x1_0000, SmpStackSize = 0x1000;

    /// <summary>Vectors: LAPIC timer, fixed IPI, spurious (SVR).</summary>
    public const byte SmpTimerVector = 0x40, SmpIpiVector = 0x41, SmpSpuriousVector = 0xFF;

    /// <summary>LAPIC timer initial count, divide by 1: 2 ms at the platform's 1 GHz.</summary>
    public const uint SmpTimerCount = 2_000_000;

    /// <summary>smp32 passes when every vCPU has this many timer ticks and every AP this many IPIs.</summary>
    public const uint SmpMinTicks = 20, SmpMinIpis = 10;

    /// <summary>smp32 gives up when the BSP has counted this many of its own ticks (10 s).</summary>
    public const uint SmpTickLimit = 5000;

    /// <summary>The BSP's bring-up waits, in its own timer ticks (2 ms each).</summary>
    public const uint SmpInitDelayTicks = 2, SmpSipiWaitTicks = 5, SmpAliveTicks = 2500;

    /// <summary>
    /// smpspin32: vCPU i owns <see cref="SpinPages"/> pages from <c>SpinData + i * 0x10000</c>. It fills
    /// each dword at address p with <c>x0 = p ^ (i * SpinSeed)</c>, then <see cref="SpinIterations"/>
    /// times replaces every dword x by <c>x * SpinMultiplier + SpinIncrement</c> (mod 2^32) and adds the
    /// new value to its checksum; each iteration increments its progress slot. About 10.5 million
    /// instructions per vCPU.
    /// </summary>
    public const uint SpinData = 0x20_0000, SpinPages = 16, SpinIterations = 80,
        SpinSeed = 0x85EB_CA6B, SpinMultiplier = 0x0100_0193, SpinIncrement = 0x9E37_79B9;

    /// <summary>smpspin32's BSP polls each done flag at most this many times in all (with <c>pause</c>).</summary>
    public const uint SpinWaitPolls = 1u << 28;

    private const uint Lapic = 0xFEE0_0000;
    private const ushort FwCfgSelector = 0x510, FwCfgData = 0x511;

    /// <summary>Indices of the addresses an SMP guest's passes settle.</summary>
    private const int SmpTimerHandler = 0, SmpIpiHandler = 1, SmpSpuriousHandler = 2, SmpApEntry = 3, SmpTrampolineSource = 4, SmpAddressCount = 5;

    /// <summary>An assembly pass that places code at addresses it learns only by assembling.</summary>
    private delegate byte[] AddressesPass(uint[] addresses, out ulong[] rips);

    private static byte[] Smp32() => SmpImage("smp32", out _);

    private static byte[] SmpSpin32() => SmpImage("smpspin32", out _);

    /// <summary>
    /// The AP trampoline of an SMP guest (<c>smp32</c>, <c>smpspin32</c>, <c>ipibench32</c> or <c>yieldbench32</c>) as its BSP copies it to
    /// <see cref="SmpTrampoline"/>, and the guest address of the 32-bit AP entry its far jump names.
    /// </summary>
    public static byte[] SmpTrampolineOf(string guest, out uint apEntry)
    {
        byte[] image = SmpImage(guest, out ulong[] rips);
        apEntry = (uint)rips[SmpApEntry];
        int offset = checked((int)(rips[SmpTrampolineSource] - LoadAddress));
        return image[offset..(offset + (int)SmpTrampolineSize)];
    }

    private static byte[] SmpImage(string guest, out ulong[] rips)
    {
        AddressesPass pass = guest switch
        {
            "smp32" => (uint[] addresses, out ulong[] r) => SmpPass(false, addresses, out r),
            "smpspin32" => (uint[] addresses, out ulong[] r) => SmpPass(true, addresses, out r),
            "ipibench32" => (uint[] addresses, out ulong[] r) => SmpBenchPass(yield: false, addresses, out r),
            "yieldbench32" => (uint[] addresses, out ulong[] r) => SmpBenchPass(yield: true, addresses, out r),
            _ => throw new ArgumentException("not an SMP guest: " + guest, nameof(guest)),
        };
        byte[] image = Settle(guest, SmpAddressCount, pass, out rips);
        CheckTrampoline(guest, image, rips);
        return image;
    }

    /// <summary>
    /// Two passes, as <see cref="TwoPass"/> does for one handler: the first learns where the labels
    /// land, the second writes those addresses (same instruction lengths, which is checked).
    /// </summary>
    private static byte[] Settle(string name, int count, AddressesPass pass, out ulong[] rips)
    {
        byte[] first = pass(new uint[count], out ulong[] firstRips);
        uint[] addresses = firstRips.Select(r => checked((uint)r)).ToArray();
        byte[] final = pass(addresses, out rips);
        if (!rips.SequenceEqual(firstRips) || final.Length != first.Length)
            throw new InvalidOperationException(name + ": code moved between passes");
        return final;
    }

    /// <summary>
    /// 32-bit, for N vCPUs. <b>smp32</b>: every vCPU enables its LAPIC (SVR 0x1FF), runs its timer
    /// periodic (vector 0x40, 2 ms) and counts its ticks and the fixed IPIs (vector 0x41) it receives in
    /// its slots; the APs then idle in <c>sti; hlt</c>. The BSP sends one IPI to each AP per round and
    /// waits for its next tick (<c>sti; hlt</c>) between rounds, until every vCPU has
    /// <see cref="SmpMinTicks"/> ticks and every AP <see cref="SmpMinIpis"/> IPIs, then prints
    /// <c>cpu I ticks T ipis P</c> for each vCPU and exits 0 (on failure, those lines and the failed
    /// check). <b>smpspin32</b>: after bring-up the BSP stops its timer and sets <see cref="SmpGo"/>;
    /// every vCPU, interrupts off and no HLT, runs the spin work over its own pages and sets its done
    /// flag (the APs then spin on <c>pause</c>); the BSP waits for every done flag, checks each vCPU's
    /// progress count, its pages (closed form: the final value of each dword) and its checksum against
    /// its own computation (closed form: the sum over the iterations), prints
    /// <c>smpspin: N cpus done</c> and exits 0.
    /// </summary>
    private static byte[] SmpPass(bool spin, uint[] addr, out ulong[] rips)
    {
        var texts = new List<string>();
        int Text(string s)
        {
            texts.Add(s);
            return texts.Count - 1;
        }
        int bannerHead = Text(spin ? "smpspin guest: " : "smp guest: ");
        int bannerTail = Text(spin ? " vCPUs, each spinning over its own 16 pages\n" : " vCPUs, each counting its LAPIC timer ticks and IPIs\n");
        int failPrefix = Text("SMP CHECK FAILED: cpu ");
        int countFail = Text("SMP CHECK FAILED: the guest needs 2 to 8 vCPUs\n");
        var reasons = new List<int>
        {
            -1,
            Text(" did not come up\n"),
            Text(" started more than once\n"),
            -1,                                                           // 3: countFail, without a cpu
            Text(" (the BSP) does not have APIC ID 0\n"),
        };
        if (spin)
        {
            reasons.Add(Text(" did not finish\n"));
            reasons.Add(Text(" counted the wrong number of iterations\n"));
            reasons.Add(Text(": its pages do not hold the expected values\n"));
            reasons.Add(Text(": its checksum does not match\n"));
        }
        else
        {
            reasons.Add(Text(" got too few timer interrupts\n"));
            reasons.Add(Text(" got too few IPIs\n"));
        }
        int cpuText = Text("cpu "), ticksText = Text(" ticks "), ipisText = Text(" ipis "), newline = Text("\n");
        int okHead = Text(spin ? "smpspin: " : "smp guest: every check passed\n");
        int okTail = Text(" cpus done\n");
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
        var spinWork = a.CreateLabel();
        var verify = a.CreateLabel();
        var printLines = a.CreateLabel();
        var cpuCountBad = a.CreateLabel();
        var exit = a.CreateLabel();
        var failCommon = a.CreateLabel();
        var failWith = new Label[reasons.Count];
        for (int s = 0; s < failWith.Length; s++)
            failWith[s] = reasons[s] < 0 ? default : a.CreateLabel();

        var allUp = a.CreateLabel();
        SmpBspBringUp(a, addr, S(bannerHead), S(bannerTail), printDec, cpuCountBad, failWith[1], failWith[4], ref allUp);

        if (!spin)
        {
            // --- smp32: IPI rounds until every count is reached or the BSP's tick limit
            Label round = allUp;                              // each round starts where bring-up ended
            var send = a.CreateLabel();
            var sent = a.CreateLabel();
            var report = a.CreateLabel();
            var success = a.CreateLabel();
            a.mov(ebx, 1);
            a.Label(ref send);
            a.cmp(ebx, __dword_ptr[SmpCpuCount]);
            a.jae(sent);
            SendIpi(a, 0x0000_4000 | SmpIpiVector);          // fixed, assert, physical, edge
            a.inc(ebx);
            a.jmp(send);
            a.Label(ref sent);
            a.sti();
            a.hlt();
            a.cli();
            a.call(verify);
            a.test(ebp, ebp);
            a.jz(success);
            a.cmp(ebp, 2);
            a.je(report);                                     // a second start never heals
            a.cmp(__dword_ptr[SmpTicks], SmpTickLimit);
            a.jb(round);
            a.Label(ref report);
            a.call(printLines);
            for (int s = 1; s < failWith.Length; s++)
            {
                if (reasons[s] < 0)
                    continue;
                a.cmp(ebp, s);
                a.je(failWith[s]);
            }
            a.Label(ref success);
            a.call(printLines);
            Print(a, S(okHead), long64: false);
            a.xor(ebp, ebp);
            a.jmp(exit);

            // verify: ebp = 0 when every count is reached, else the first failed check (2, 5, 6)
            // with ebx = its vCPU.
            var vLoop = a.CreateLabel();
            var vNext = a.CreateLabel();
            var vOut = a.CreateLabel();
            var vOk = a.CreateLabel();
            a.Label(ref verify);
            a.xor(ebx, ebx);
            a.Label(ref vLoop);
            a.cmp(ebx, __dword_ptr[SmpCpuCount]);
            a.jae(vOk);
            a.mov(ebp, 2);
            a.cmp(__dword_ptr[ebx * 4 + (int)SmpStarts], 1);
            a.jne(vOut);
            a.mov(ebp, 5);
            a.cmp(__dword_ptr[ebx * 4 + (int)SmpTicks], SmpMinTicks);
            a.jb(vOut);
            a.test(ebx, ebx);
            a.jz(vNext);                                      // the BSP receives no IPIs
            a.mov(ebp, 6);
            a.cmp(__dword_ptr[ebx * 4 + (int)SmpIpis], SmpMinIpis);
            a.jb(vOut);
            a.Label(ref vNext);
            a.inc(ebx);
            a.jmp(vLoop);
            a.Label(ref vOk);
            a.xor(ebp, ebp);
            a.Label(ref vOut);
            a.ret();

            // printLines: "cpu I ticks T ipis P" for every vCPU (keeps ebx and ebp)
            var pLoop = a.CreateLabel();
            var pDone = a.CreateLabel();
            a.Label(ref printLines);
            a.push(ecx);
            a.xor(ecx, ecx);
            a.Label(ref pLoop);
            a.cmp(ecx, __dword_ptr[SmpCpuCount]);
            a.jae(pDone);
            Print(a, S(cpuText), long64: false);
            a.mov(eax, ecx);
            a.call(printDec);
            Print(a, S(ticksText), long64: false);
            a.mov(eax, __dword_ptr[ecx * 4 + (int)SmpTicks]);
            a.call(printDec);
            Print(a, S(ipisText), long64: false);
            a.mov(eax, __dword_ptr[ecx * 4 + (int)SmpIpis]);
            a.call(printDec);
            Print(a, S(newline), long64: false);
            a.inc(ecx);
            a.jmp(pLoop);
            a.Label(ref pDone);
            a.pop(ecx);
            a.ret();
        }
        else
        {
            // --- smpspin32: timer off, interrupts off from here; everyone spins
            (uint final, uint finalAdd, uint sumMul, uint sumAdd) = SpinClosedForm();
            a.mov(__dword_ptr[Lapic + 0x320], 0x1_0000 | SmpTimerVector);   // masked
            a.mov(__dword_ptr[Lapic + 0x380], 0);                            // stopped
            a.cli();
            a.mov(__dword_ptr[SmpGo], 1);
            a.xor(ebx, ebx);
            a.call(spinWork);
            var wLoop = a.CreateLabel();
            var wPoll = a.CreateLabel();
            var wNext = a.CreateLabel();
            var allDone = a.CreateLabel();
            a.mov(ecx, SpinWaitPolls);
            a.mov(ebx, 1);
            a.Label(ref wLoop);
            a.cmp(ebx, __dword_ptr[SmpCpuCount]);
            a.jae(allDone);
            a.Label(ref wPoll);
            a.cmp(__dword_ptr[ebx * 4 + (int)SpinDone], 0);
            a.jne(wNext);
            a.pause();
            a.dec(ecx);
            a.jnz(wPoll);
            a.jmp(failWith[5]);
            a.Label(ref wNext);
            a.inc(ebx);
            a.jmp(wLoop);
            a.Label(ref allDone);

            // Every vCPU's results against the closed forms.
            var vLoop = a.CreateLabel();
            var mLoop = a.CreateLabel();
            var vDone = a.CreateLabel();
            a.xor(ebx, ebx);
            a.Label(ref vLoop);
            a.cmp(ebx, __dword_ptr[SmpCpuCount]);
            a.jae(vDone);
            a.cmp(__dword_ptr[ebx * 4 + (int)SmpStarts], 1);
            a.jne(failWith[2]);
            a.cmp(__dword_ptr[ebx * 4 + (int)SpinProgress], SpinIterations);
            a.jne(failWith[6]);
            a.imul(edx, ebx, unchecked((int)SpinSeed));      // this vCPU's seed
            a.mov(edi, ebx);
            a.shl(edi, 16);
            a.add(edi, SpinData);
            a.lea(esi, __[edi + (int)(SpinPages * 4096)]);
            a.xor(ecx, ecx);                                  // sum of the initial values
            a.Label(ref mLoop);
            a.mov(eax, edi);
            a.xor(eax, edx);
            a.add(ecx, eax);
            a.imul(eax, eax, unchecked((int)final));
            a.add(eax, unchecked((int)finalAdd));
            a.cmp(__dword_ptr[edi], eax);
            a.jne(failWith[7]);
            a.add(edi, 4);
            a.cmp(edi, esi);
            a.jb(mLoop);
            a.imul(ecx, ecx, unchecked((int)sumMul));
            a.add(ecx, unchecked((int)(sumAdd * (SpinPages * 1024))));
            a.cmp(__dword_ptr[ebx * 4 + (int)SpinChecksum], ecx);
            a.jne(failWith[8]);
            a.inc(ebx);
            a.jmp(vLoop);
            a.Label(ref vDone);
            Print(a, S(okHead), long64: false);
            a.mov(eax, __dword_ptr[SmpCpuCount]);
            a.call(printDec);
            Print(a, S(okTail), long64: false);
            a.xor(ebp, ebp);
            a.jmp(exit);

            // spinWork: ebx = this vCPU's APIC ID; keeps ebx. Fill, then the iterations.
            var fill = a.CreateLabel();
            var iteration = a.CreateLabel();
            var inner = a.CreateLabel();
            a.Label(ref spinWork);
            a.mov(esi, ebx);
            a.shl(esi, 16);                                   // 16 pages per vCPU
            a.add(esi, SpinData);
            a.lea(ebp, __[esi + (int)(SpinPages * 4096)]);
            a.imul(edx, ebx, unchecked((int)SpinSeed));
            a.mov(edi, esi);
            a.Label(ref fill);
            a.mov(eax, edi);
            a.xor(eax, edx);
            a.mov(__dword_ptr[edi], eax);
            a.add(edi, 4);
            a.cmp(edi, ebp);
            a.jb(fill);
            a.xor(edx, edx);                                  // checksum
            a.mov(ecx, SpinIterations);
            a.Label(ref iteration);
            a.mov(edi, esi);
            a.Label(ref inner);
            a.mov(eax, __dword_ptr[edi]);
            a.imul(eax, eax, unchecked((int)SpinMultiplier));
            a.add(eax, unchecked((int)SpinIncrement));
            a.mov(__dword_ptr[edi], eax);
            a.add(edx, eax);
            a.add(edi, 4);
            a.cmp(edi, ebp);
            a.jb(inner);
            a.inc(__dword_ptr[ebx * 4 + (int)SpinProgress]);
            a.dec(ecx);
            a.jnz(iteration);
            a.mov(__dword_ptr[ebx * 4 + (int)SpinChecksum], edx);
            a.mov(__dword_ptr[ebx * 4 + (int)SpinDone], 1);
            a.ret();
        }

        SmpFailExits(a, reasons.Select(r => r < 0 ? 0u : S(r)).ToArray(), failWith, ref cpuCountBad, ref failCommon, ref exit, S(countFail), S(failPrefix), printDec, printStr);

        var badId = a.CreateLabel();
        var park = a.CreateLabel();
        SmpApPrologue(a, ref apEntry, badId);
        if (!spin)
        {
            var idle = a.CreateLabel();
            LapicTimerOn(a);
            a.mov(__dword_ptr[ebx * 4 + (int)SmpAlive], 1);
            a.Label(ref idle);
            a.sti();
            a.hlt();
            a.jmp(idle);
        }
        else
        {
            var wait = a.CreateLabel();
            var go = a.CreateLabel();
            a.mov(__dword_ptr[ebx * 4 + (int)SmpAlive], 1);
            a.Label(ref wait);
            a.cmp(__dword_ptr[SmpGo], 0);
            a.jne(go);
            a.pause();
            a.jmp(wait);
            a.Label(ref go);
            a.call(spinWork);
            a.jmp(park);
        }
        a.Label(ref badId);
        a.mov(__dword_ptr[SmpBadApicId], ebx);
        a.Label(ref park);
        a.pause();
        a.jmp(park);

        // --- interrupt handlers: count in this vCPU's slot (APIC ID & 7), EOI
        a.Label(ref timer);
        SmpCountingHandler(a, SmpTicks);
        a.Label(ref ipi);
        SmpCountingHandler(a, SmpIpis);
        a.Label(ref spurious);                                // no EOI for a spurious interrupt
        a.iretd();

        SmpPrintRoutines(a, ref printDec, ref printStr);

        // --- the trampoline's bytes, copied to SmpTrampoline by the BSP
        a.Label(ref trampoline);
        a.db(SmpTrampolineBlob(addr[SmpApEntry]));

        return strings.ImageN(a, 32, [timer, ipi, spurious, apEntry, trampoline], out rips);
    }

    /// <summary>
    /// The BSP's part of an SMP guest's start, shared by every SMP guest: its stack, the zeroed
    /// tables, N from fw_cfg, the banner (<paramref name="bannerHead"/>, N, <paramref name="bannerTail"/>),
    /// the vCPU-count check (to <paramref name="cpuCountBad"/>), the shared descriptors and the gates
    /// of vectors 0x40, 0x41 and 0xFF (<paramref name="addr"/>), the BSP's own APIC ID check (to
    /// <paramref name="bspIdBad"/> with ebx = 0), its start count and alive flag, the trampoline copy,
    /// its LAPIC timer, then INIT-SIPI-SIPI for AP 1 .. N-1 in turn (an AP whose alive flag does not come
    /// goes to <paramref name="notUp"/> with ebx = its index). Binds <paramref name="allUp"/> after it.
    /// </summary>
    private static void SmpBspBringUp(Assembler a, uint[] addr, uint bannerHead, uint bannerTail, Label printDec, Label cpuCountBad, Label notUp, Label bspIdBad, ref Label allUp)
    {
        // --- BSP: its stack, the tables, N, the banner
        a.mov(esp, SmpStacks + SmpStackSize);
        a.cld();
        a.xor(eax, eax);
        a.mov(edi, SmpTables);
        a.mov(ecx, SmpTablesSize / 4);
        a.rep.stosd();
        a.mov(dx, FwCfgSelector);
        a.mov(eax, 0x05);                                     // FW_CFG_NB_CPUS
        a.@out(dx, ax);
        a.mov(dx, FwCfgData);
        a.@in(al, dx);
        a.movzx(ecx, al);
        a.@in(al, dx);
        a.movzx(eax, al);
        a.shl(eax, 8);
        a.or(ecx, eax);
        a.mov(__dword_ptr[SmpCpuCount], ecx);
        Print(a, bannerHead, long64: false);
        a.mov(eax, __dword_ptr[SmpCpuCount]);
        a.call(printDec);
        Print(a, bannerTail, long64: false);
        a.mov(eax, __dword_ptr[SmpCpuCount]);
        a.cmp(eax, 2);
        a.jb(cpuCountBad);
        a.cmp(eax, SmpMaxCpus);
        a.ja(cpuCountBad);

        // --- descriptors and gates (shared by every vCPU), the BSP's own slots, the trampoline
        FlatDescriptors(a);
        Gate(a, SmpTimerVector, addr[SmpTimerHandler]);
        Gate(a, SmpIpiVector, addr[SmpIpiHandler]);
        Gate(a, SmpSpuriousVector, addr[SmpSpuriousHandler]);
        a.xor(ebx, ebx);                                      // cpu 0 for the messages
        a.mov(eax, Lapic);
        a.mov(eax, __dword_ptr[eax + 0x20]);                  // ModRM form, not moffs
        a.shr(eax, 24);
        a.test(eax, eax);
        a.jnz(bspIdBad);
        a.mov(__dword_ptr[SmpStarts], 1);
        a.mov(__dword_ptr[SmpAlive], 1);
        a.mov(esi, addr[SmpTrampolineSource]);
        a.mov(edi, SmpTrampoline);
        a.mov(ecx, SmpTrampolineSize);
        a.rep.movsb();
        LapicTimerOn(a);

        // --- bring up AP 1 .. N-1 in turn (ebx = the AP)
        var apLoop = a.CreateLabel();
        var initDone = a.CreateLabel();
        var started = a.CreateLabel();
        var secondSipi = a.CreateLabel();
        a.mov(ebx, 1);
        a.Label(ref apLoop);
        a.cmp(ebx, __dword_ptr[SmpCpuCount]);
        a.jae(allUp);
        a.mov(__dword_ptr[SmpBooting], ebx);
        SendIpi(a, 0x0000_4500);                              // INIT, assert
        WaitTicks(a, SmpInitDelayTicks, null, initDone, initDone);
        a.Label(ref initDone);
        SendIpi(a, 0x0000_4600 | SmpSipiVector);             // SIPI
        WaitTicks(a, SmpSipiWaitTicks, met =>
        {
            a.cmp(__dword_ptr[ebx * 4 + (int)SmpStarts], 0);
            a.jne(met);
        }, started, secondSipi);
        a.Label(ref secondSipi);
        SendIpi(a, 0x0000_4600 | SmpSipiVector);             // the second SIPI, only if it has not started
        a.Label(ref started);
        var alive = a.CreateLabel();
        WaitTicks(a, SmpAliveTicks, met =>
        {
            a.cmp(__dword_ptr[ebx * 4 + (int)SmpAlive], 0);
            a.jne(met);
        }, alive, notUp);
        a.Label(ref alive);
        a.inc(ebx);
        a.jmp(apLoop);
        a.Label(ref allUp);
    }

    /// <summary>
    /// The failure exits of an SMP guest, shared: for each status s with a reason text
    /// (<paramref name="reasons"/>[s], 0 for none) a label <paramref name="failWith"/>[s] that sets
    /// ebp = s and prints <c>SMP CHECK FAILED: cpu EBX REASON</c>; <paramref name="cpuCountBad"/>
    /// (status 3, its own text); and <paramref name="exit"/>, which writes ebp to the exit port.
    /// </summary>
    private static void SmpFailExits(Assembler a, uint[] reasons, Label[] failWith, ref Label cpuCountBad, ref Label failCommon, ref Label exit,
        uint countFail, uint failPrefix, Label printDec, Label printStr)
    {
        // --- failures: ebx = the vCPU, ebp = the status, edi = the reason
        for (int s = 1; s < failWith.Length; s++)
        {
            if (reasons[s] == 0)
                continue;
            a.Label(ref failWith[s]);
            a.mov(ebp, s);
            a.mov(edi, reasons[s]);
            a.jmp(failCommon);
        }
        a.Label(ref cpuCountBad);
        Print(a, countFail, long64: false);
        a.mov(ebp, 3);
        a.jmp(exit);
        a.Label(ref failCommon);
        Print(a, failPrefix, long64: false);
        a.mov(eax, ebx);
        a.call(printDec);
        a.mov(esi, edi);
        a.call(printStr);
        var halt = a.CreateLabel();
        a.Label(ref exit);
        a.mov(eax, ebp);
        a.mov(dx, Exit);
        a.@out(dx, al);
        a.Label(ref halt);
        a.hlt();
        a.jmp(halt);
    }

    /// <summary>
    /// The AP's 32-bit entry (from the trampoline's far jump, on the trampoline's GDT), shared: the
    /// data selectors, ebx = its APIC ID (one of 8 or more goes to <paramref name="badId"/>), its start
    /// count, its own stack. The caller goes on with the AP's work.
    /// </summary>
    private static void SmpApPrologue(Assembler a, ref Label apEntry, Label badId)
    {
        a.Label(ref apEntry);
        a.mov(ax, 0x10);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(fs, ax);
        a.mov(gs, ax);
        a.mov(ss, ax);
        a.mov(ebx, __dword_ptr[Lapic + 0x20]);
        a.shr(ebx, 24);                                       // APIC ID
        a.cmp(ebx, SmpMaxCpus);
        a.jae(badId);
        a.@lock.inc(__dword_ptr[ebx * 4 + (int)SmpStarts]);
        a.mov(esp, ebx);
        a.shl(esp, 12);                                       // SmpStackSize
        a.add(esp, SmpStacks + SmpStackSize);
    }

    /// <summary>An interrupt handler that counts in this vCPU's slot of <paramref name="table"/> (APIC ID &amp; 7) and EOIs.</summary>
    private static void SmpCountingHandler(Assembler a, uint table)
    {
        a.push(eax);
        a.mov(eax, Lapic);
        a.mov(eax, __dword_ptr[eax + 0x20]);
        a.shr(eax, 24);
        a.and(eax, (int)(SmpMaxCpus - 1));
        a.inc(__dword_ptr[eax * 4 + (int)table]);
        a.mov(__dword_ptr[Lapic + 0xB0], 0);              // EOI
        a.pop(eax);
        a.iretd();
    }

    /// <summary>printDec: eax in decimal on COM1; printStr: the string at esi. Both keep every register.</summary>
    private static void SmpPrintRoutines(Assembler a, ref Label printDec, ref Label printStr)
    {
        var divide = a.CreateLabel();
        var emit = a.CreateLabel();
        a.Label(ref printDec);
        a.pushad();
        a.mov(ecx, 10);
        a.xor(edi, edi);
        a.Label(ref divide);
        a.xor(edx, edx);
        a.div(ecx);
        a.add(edx, '0');
        a.push(edx);
        a.inc(edi);
        a.test(eax, eax);
        a.jnz(divide);
        a.mov(dx, Serial);
        a.Label(ref emit);
        a.pop(eax);
        a.@out(dx, al);
        a.dec(edi);
        a.jnz(emit);
        a.popad();
        a.ret();
        var sLoop = a.CreateLabel();
        var sDone = a.CreateLabel();
        a.Label(ref printStr);
        a.pushad();
        a.mov(dx, Serial);
        a.Label(ref sLoop);
        a.mov(al, __byte_ptr[esi]);
        a.test(al, al);
        a.jz(sDone);
        a.@out(dx, al);
        a.inc(esi);
        a.jmp(sLoop);
        a.Label(ref sDone);
        a.popad();
        a.ret();
    }

    /// <summary>Software-enables this vCPU's LAPIC (spurious vector 0xFF) and runs its timer periodic (vector 0x40, divide by 1, <paramref name="count"/> ticks of the 1 GHz APIC clock: 2 ms by default). Uses esi.</summary>
    private static void LapicTimerOn(Assembler a, uint count = SmpTimerCount)
    {
        a.mov(esi, Lapic);
        a.mov(__dword_ptr[esi + 0xF0], 0x100 | SmpSpuriousVector);
        a.mov(__dword_ptr[esi + 0x3E0], 0x0B);                // divide by 1
        a.mov(__dword_ptr[esi + 0x320], 0x2_0000 | SmpTimerVector);   // periodic
        a.mov(__dword_ptr[esi + 0x380], count);
    }

    /// <summary>
    /// Sends an IPI (ICR low <paramref name="low"/>) to APIC ID ebx, then polls the delivery status
    /// (bit 12, send pending) at most 1000 times. Uses eax, ecx. Ends without a trailing label, so the
    /// caller may bind one to the next instruction.
    /// </summary>
    private static void SendIpi(Assembler a, uint low)
    {
        var poll = a.CreateLabel();
        a.mov(eax, ebx);
        a.shl(eax, 24);
        a.mov(__dword_ptr[Lapic + 0x310], eax);               // ICR high: destination
        a.mov(__dword_ptr[Lapic + 0x300], low);               // ICR low: sends
        a.mov(ecx, 1000);
        a.Label(ref poll);
        a.pause();
        a.test(__dword_ptr[Lapic + 0x300], 0x1000);           // ZF = 1 once delivered
        a.loopne(poll);                                       // while pending and ecx != 0
    }

    /// <summary>
    /// The BSP waits in <c>sti; hlt</c> for up to <paramref name="ticks"/> of its own timer ticks: to
    /// <paramref name="met"/> as soon as <paramref name="until"/>'s test jumps there, else to
    /// <paramref name="timeout"/>. Uses edi; returns with interrupts off.
    /// </summary>
    private static void WaitTicks(Assembler a, uint ticks, Action<Label>? until, Label met, Label timeout)
    {
        var loop = a.CreateLabel();
        a.mov(edi, __dword_ptr[SmpTicks]);
        a.add(edi, ticks);
        a.Label(ref loop);
        until?.Invoke(met);
        a.cmp(__dword_ptr[SmpTicks], edi);
        a.jae(timeout);
        a.sti();
        a.hlt();
        a.cli();
        a.jmp(loop);
    }

    /// <summary>
    /// The spin work's closed forms: after <see cref="SpinIterations"/> steps a dword that started at
    /// x0 holds <c>final * x0 + finalAdd</c>, and the values it took sum to <c>sumMul * x0 + sumAdd</c>.
    /// </summary>
    private static (uint Final, uint FinalAdd, uint SumMul, uint SumAdd) SpinClosedForm()
    {
        uint mul = 1, add = 0, sumMul = 0, sumAdd = 0;
        for (uint k = 0; k < SpinIterations; k++)
        {
            mul = unchecked(mul * SpinMultiplier);
            add = unchecked(add * SpinMultiplier + SpinIncrement);
            sumMul = unchecked(sumMul + mul);
            sumAdd = unchecked(sumAdd + add);
        }
        return (mul, add, sumMul, sumAdd);
    }

    /// <summary>
    /// The AP trampoline for <see cref="SmpTrampoline"/>: real-mode code (an AP starts there at
    /// CS:IP = 0800:0000) that loads the trampoline's GDT and IDTR (DS = 0, absolute addresses), clears
    /// CR0.CD and CR0.NW, sets CR0.PE and far-jumps to 0x08:<paramref name="apEntry"/> (a 16:32 pointer:
    /// the entry is in the image above 1 MiB), then the GDT, GDTR and IDTR at their fixed places.
    /// </summary>
    private static byte[] SmpTrampolineBlob(uint apEntry)
    {
        var t = new Assembler(16);
        t.cli();
        t.cld();
        t.xor(ax, ax);
        t.mov(ds, ax);
        t.lgdt(__[SmpTrampolineGdtr]);
        t.lidt(__[SmpTrampolineIdtr]);
        t.mov(eax, cr0);
        t.and(eax, 0x9FFF_FFFF);                              // caches on: CD and NW clear
        t.or(eax, 1);                                         // PE
        t.mov(cr0, eax);
        t.AddInstruction(Instruction.CreateBranch(Code.Jmp_ptr1632, 0x08, apEntry));
        var code = new MemoryStream();
        t.Assemble(new StreamCodeWriter(code), SmpTrampoline);
        if (code.Length > SmpTrampolineGdt - SmpTrampoline)
            throw new InvalidOperationException("the SMP trampoline's code runs into its GDT");
        var blob = new byte[SmpTrampolineSize];
        code.ToArray().CopyTo(blob, 0);
        int gdt = (int)(SmpTrampolineGdt - SmpTrampoline);
        BitConverter.TryWriteBytes(blob.AsSpan(gdt + 8), 0x00CF_9A00_0000_FFFFUL);      // 0x08: flat 32-bit code
        BitConverter.TryWriteBytes(blob.AsSpan(gdt + 16), 0x00CF_9200_0000_FFFFUL);     // 0x10: flat data
        int gdtr = (int)(SmpTrampolineGdtr - SmpTrampoline);
        BitConverter.TryWriteBytes(blob.AsSpan(gdtr), (ushort)(3 * 8 - 1));
        BitConverter.TryWriteBytes(blob.AsSpan(gdtr + 2), SmpTrampolineGdt);
        int idtr = (int)(SmpTrampolineIdtr - SmpTrampoline);
        BitConverter.TryWriteBytes(blob.AsSpan(idtr), (ushort)(256 * 8 - 1));
        BitConverter.TryWriteBytes(blob.AsSpan(idtr + 2), 0u);
        return blob;
    }

    /// <summary>
    /// Decodes the trampoline as the AP will run it (16-bit code at <see cref="SmpTrampoline"/>) and
    /// throws unless it is valid code that ends, before its GDT, with the far jump to 0x08:entry.
    /// </summary>
    private static void CheckTrampoline(string guest, byte[] image, ulong[] rips)
    {
        int offset = checked((int)(rips[SmpTrampolineSource] - LoadAddress));
        byte[] blob = image[offset..(offset + (int)SmpTrampolineSize)];
        var decoder = Decoder.Create(16, new ByteArrayCodeReader(blob), SmpTrampoline);
        Instruction first = decoder.Decode();
        Instruction i = first;
        while (i.Code != Code.INVALID && i.Code != Code.Jmp_ptr1632 && decoder.IP < SmpTrampolineGdt)
            i = decoder.Decode();
        if (first.Code != Code.Cli || first.IP != SmpTrampoline || i.Code != Code.Jmp_ptr1632
            || i.FarBranchSelector != 0x08 || i.FarBranch32 != rips[SmpApEntry] || decoder.IP > SmpTrampolineGdt)
            throw new InvalidOperationException(guest + ": the AP trampoline does not decode as 16-bit code ending in its far jump");
    }
}
