using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Guests;

/// <summary>
/// <c>nmiinit32</c>: NMIs and INIT to an AP that is already running, for a VM of 2 to
/// <see cref="SmpMaxCpus"/> vCPUs. It shares the SMP guests' layout, bring-up and exits
/// (<see cref="SmpBspBringUp"/>); only AP 1 takes part, any further AP parks.
/// </summary>
/// <remarks>
/// <para>AP 1 runs with interrupts off throughout. What it does after a start depends on its start
/// count (<see cref="SmpStarts"/>): first start, a <c>pause</c> loop (running); second, it sets
/// <see cref="NmiParked"/> and parks in <c>cli; hlt</c>; third, it sets <see cref="NmiDone"/> and
/// parks. Its NMI handler (vector 2, no EOI) counts in <see cref="NmiCounts"/> (by APIC ID) and
/// returns, so a parked AP halts again.</para>
/// <para>The BSP, between its own timer ticks (<c>sti; hlt</c>), checks in order, each within
/// <see cref="NmiWaitTicks"/> ticks (status and message on failure):</para>
/// <list type="number">
/// <item>an NMI IPI reaches the running AP (count 1; status 5);</item>
/// <item>a second NMI reaches it: the first handler's IRET ended the NMI blocking (count 2; status 6);</item>
/// <item>INIT then one SIPI restart the running AP from the trampoline in real mode (start count 2; status 7);</item>
/// <item>an NMI wakes the AP parked in <c>cli; hlt</c> (count 3, sent <see cref="NmiParkTicks"/> ticks after it said it parks; status 8);</item>
/// <item>INIT-SIPI restarts the parked AP (start count 3 and <see cref="NmiDone"/>; status 9).</item>
/// </list>
/// <para>Then it prints <c>nmiinit guest: cpu 1 took 3 NMIs and 2 INIT-SIPI restarts</c> and exits 0.</para>
/// </remarks>
public static partial class TestGuests
{
    /// <summary>NMIs taken per vCPU (<c>u32[SmpMaxCpus]</c> by APIC ID); AP 1's parked flag; AP 1's done flag.</summary>
    public const uint NmiCounts = 0x6080, NmiParked = 0x60F0, NmiDone = 0x60F4;

    /// <summary>
    /// The BSP's wait for each step, in its 2 ms timer ticks, and its wait after AP 1 says it parks
    /// (200 ms: time for a host test to move the VM while AP 1 is parked, postcopy.move_of_a_parked_vcpu).
    /// </summary>
    public const uint NmiWaitTicks = 2500, NmiParkTicks = 100;

    private const int NmiHandlerIndex = SmpAddressCount, NmiAddressCount = SmpAddressCount + 1;

    private static byte[] NmiInit32()
    {
        byte[] image = Settle("nmiinit32", NmiAddressCount, NmiInitPass, out ulong[] rips);
        CheckTrampoline("nmiinit32", image, rips);
        return image;
    }

    private static byte[] NmiInitPass(uint[] addr, out ulong[] rips)
    {
        var texts = new List<string>();
        int Text(string s)
        {
            texts.Add(s);
            return texts.Count - 1;
        }
        int bannerHead = Text("nmiinit guest: ");
        int bannerTail = Text(" vCPUs; NMIs and INIT-SIPI to AP 1 while it runs and while it is parked\n");
        int failPrefix = Text("NMI/INIT CHECK FAILED: cpu ");
        int countFail = Text("NMI/INIT CHECK FAILED: the guest needs 2 to 8 vCPUs\n");
        int[] reasons =
        [
            -1,
            Text(" did not come up\n"),
            -1,
            -1,                                                           // 3: countFail
            Text(" (the BSP) does not have APIC ID 0\n"),
            Text(" did not take an NMI while running\n"),
            Text(" did not take a second NMI (NMIs stayed blocked after its handler's IRET)\n"),
            Text(" was not restarted by INIT-SIPI while running\n"),
            Text(" was not woken by an NMI while parked in cli; hlt\n"),
            Text(" was not restarted by INIT-SIPI while parked\n"),
        ];
        int ok = Text("nmiinit guest: cpu 1 took 3 NMIs and 2 INIT-SIPI restarts\n");
        var strings = new Strings(texts.ToArray());
        uint S(int index) => strings.Address(index);

        var a = new Assembler(32);
        var timer = a.CreateLabel();
        var ipi = a.CreateLabel();
        var spurious = a.CreateLabel();
        var apEntry = a.CreateLabel();
        var trampoline = a.CreateLabel();
        var nmi = a.CreateLabel();
        var printDec = a.CreateLabel();
        var printStr = a.CreateLabel();
        var cpuCountBad = a.CreateLabel();
        var exit = a.CreateLabel();
        var failCommon = a.CreateLabel();
        var failWith = new Label[reasons.Length];
        for (int s = 0; s < failWith.Length; s++)
            failWith[s] = reasons[s] < 0 ? default : a.CreateLabel();

        var allUp = a.CreateLabel();
        SmpBspBringUp(a, addr, S(bannerHead), S(bannerTail), printDec, cpuCountBad, failWith[1], failWith[4], ref allUp);
        a.xor(ebx, ebx);
        Gate(a, 2, addr[NmiHandlerIndex]);                    // ebx = 0: the IDT's base
        a.mov(ebx, 1);                                        // AP 1 from here on

        // Waits until the dword at `slot` (AP 1's) reaches `value`, else fails with `status`.
        void WaitFor(uint slot, uint value, int status)
        {
            var met = a.CreateLabel();
            WaitTicks(a, NmiWaitTicks, m =>
            {
                a.cmp(__dword_ptr[slot], value);
                a.jae(m);
            }, met, failWith[status]);
            a.Label(ref met);
        }

        const uint nmiIpi = 0x0000_4400, initIpi = 0x0000_4500, sipi = 0x0000_4600 | SmpSipiVector;
        SendIpi(a, nmiIpi);
        WaitFor(NmiCounts + 4, 1, 5);
        SendIpi(a, nmiIpi);
        WaitFor(NmiCounts + 4, 2, 6);
        var initDelay = a.CreateLabel();
        SendIpi(a, initIpi);
        WaitTicks(a, SmpInitDelayTicks, null, initDelay, initDelay);
        a.Label(ref initDelay);
        SendIpi(a, sipi);
        WaitFor(SmpStarts + 4, 2, 7);
        WaitFor(NmiParked, 1, 8);
        var parkDelay = a.CreateLabel();
        WaitTicks(a, NmiParkTicks, null, parkDelay, parkDelay);
        a.Label(ref parkDelay);
        SendIpi(a, nmiIpi);
        WaitFor(NmiCounts + 4, 3, 8);
        var initDelay2 = a.CreateLabel();
        SendIpi(a, initIpi);
        WaitTicks(a, SmpInitDelayTicks, null, initDelay2, initDelay2);
        a.Label(ref initDelay2);
        SendIpi(a, sipi);
        WaitFor(NmiDone, 1, 9);
        a.cmp(__dword_ptr[SmpStarts + 4], 3);
        a.jne(failWith[9]);
        Print(a, S(ok), long64: false);
        a.xor(ebp, ebp);
        a.jmp(exit);

        SmpFailExits(a, reasons.Select(r => r < 0 ? 0u : S(r)).ToArray(), failWith, ref cpuCountBad, ref failCommon, ref exit, S(countFail), S(failPrefix), printDec, printStr);

        // --- AP: by start count. 1: run; 2: say so and park; 3: done, park. Other APs park.
        var badId = a.CreateLabel();
        var park = a.CreateLabel();
        var run = a.CreateLabel();
        var second = a.CreateLabel();
        SmpApPrologue(a, ref apEntry, badId);
        a.mov(__dword_ptr[ebx * 4 + (int)SmpAlive], 1);
        a.cmp(ebx, 1);
        a.jne(park);
        a.mov(eax, __dword_ptr[SmpStarts + 4]);
        a.cmp(eax, 1);
        a.je(run);
        a.cmp(eax, 2);
        a.je(second);
        a.mov(__dword_ptr[NmiDone], 1);
        a.jmp(park);
        a.Label(ref second);
        a.mov(__dword_ptr[NmiParked], 1);
        a.jmp(park);
        a.Label(ref run);
        a.pause();
        a.jmp(run);
        a.Label(ref badId);
        a.mov(__dword_ptr[SmpBadApicId], ebx);
        a.Label(ref park);
        a.cli();
        a.hlt();
        a.jmp(park);

        // --- handlers: the BSP's timer counts its ticks; NMIs count by APIC ID (no EOI)
        a.Label(ref timer);
        SmpCountingHandler(a, SmpTicks);
        a.Label(ref ipi);
        SmpCountingHandler(a, SmpIpis);
        a.Label(ref nmi);
        a.push(eax);
        a.mov(eax, Lapic);
        a.mov(eax, __dword_ptr[eax + 0x20]);
        a.shr(eax, 24);
        a.and(eax, (int)(SmpMaxCpus - 1));
        a.@lock.inc(__dword_ptr[eax * 4 + (int)NmiCounts]);
        a.pop(eax);
        a.iretd();
        a.Label(ref spurious);
        a.iretd();

        SmpPrintRoutines(a, ref printDec, ref printStr);

        a.Label(ref trampoline);
        a.db(SmpTrampolineBlob(addr[SmpApEntry]));

        return strings.ImageN(a, 32, [timer, ipi, spurious, apEntry, trampoline, nmi], out rips);
    }
}
