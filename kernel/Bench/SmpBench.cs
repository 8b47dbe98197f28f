using Tandem.Kernel.Console;
using Tandem.Kernel.Virt;
using Tandem.Kvm.Vmx;

namespace Tandem.Kernel.Bench
{
    /// <summary>
    /// The SMP figures of issue 9 (command line <c>bench</c>, after the CPUID figure): an IPI round trip
    /// between two vCPUs of one VM on two physical CPUs, and a vCPU switch between two vCPUs on one
    /// physical CPU, each alone and with a second VM running beside, and the ratio of the two against
    /// its goal. All figures are TSC units (instructions under Bochs with <c>clock: sync=none</c>),
    /// from the guests' RDTSC (the host's TSC: no offsetting) and the host's stamps
    /// (<see cref="VcpuBench"/>). README.md ("bench") and docs/scheduler.md ("Figures") describe them.
    /// </summary>
    public static unsafe class SmpBench
    {
        // tools/StubGen/Guests/SmpBenchGuests.cs
        private const uint BenchStart = 0x6108, BenchEnd = 0x6110;
        private const uint BenchStamps = 0x20_0000, TableSize = 0x800;
        private const int TableIpiSent = 0, TableIpiSendDone = 1, TableHandlerIn = 2, TableEoiDone = 3, TableSeen = 4, Tables = 5;
        private const int MaxRounds = 256, IpiWarmup = 8, IpiTotalRounds = 208;
        private const int IpiVector = 0x41;
        private const ulong YieldsPerVcpu = 200;

        /// <summary>The goal of every second-VM/alone ratio, in hundredths.</summary>
        private const ulong GoalRatioHundredths = 120;

        private const ulong GuestRam = 16UL << 20;

        /// <summary>One IPI figure: means over the valid rounds, in TSC units.</summary>
        private struct IpiFigure
        {
            public ulong RoundTrip, Send, ToKick, Wake, Entry, Inject, HandlerEoi, Seen;
            public ulong Valid, NotHalted, Odd;
        }

        /// <summary>One vCPU-switch figure: the guest's mean per switch and the host's mean parts.</summary>
        private struct SwitchFigure
        {
            public ulong PerSwitch, Exit, Switch, Entry, Switches, Unswitched;
        }

        /// <summary>Returns 0 when every figure ran (a missed goal is for the driver to judge).</summary>
        public static int Run()
        {
            var f = KernelMain.Features;
            if (!f.Vmx || !f.Ept || !f.UnrestrictedGuest)
            {
                Log.Line("bench: SKIP ipi_round_trip, vcpu_switch: no VT-x with EPT and unrestricted guest");
                return 0;
            }
            int failed = 0;
            if (Cpu.Count < 2)
            {
                Log.Line("bench: SKIP ipi_round_trip: needs 2 physical CPUs (run with --cpus 2)");
            }
            else
            {
                IpiFigure alone = default, beside = default;
                if (Ipi(false, ref alone) && Ipi(true, ref beside))
                {
                    PrintIpi("alone", alone, "vCPU 0 on cpu 0 sends a fixed IPI to vCPU 1 halted on cpu 1");
                    PrintIpi("beside_halting_vm", beside, "tick32, 1 vCPU halting between 1 ms LAPIC timer ticks, on cpu 1 beside vCPU 1");
                    PrintRatio("ipi_round_trip", "round_trip", beside.RoundTrip, alone.RoundTrip);
                }
                else
                {
                    failed = 1;
                }
            }

            SwitchFigure yAlone = default, yBeside = default;
            if (!Switch(false, ref yAlone))
                return 1;
            PrintSwitch("alone", yAlone, "yieldbench32's 2 vCPUs pinned to the last cpu, 200 yields each");
            if (Cpu.Count < 2)
            {
                Log.Line("bench: SKIP vcpu_switch beside_spinning_vm: needs 2 physical CPUs (run with --cpus 2)");
                return failed;
            }
            if (!Switch(true, ref yBeside))
                return 1;
            PrintSwitch("beside_spinning_vm", yBeside, "spin32, 1 vCPU spinning without exits of its own, on cpu 0");
            PrintRatio("vcpu_switch", "per_switch", yBeside.PerSwitch, yAlone.PerSwitch);
            return failed;
        }

        private static int SwitchCpu => Cpu.Count - 1;

        private static Vm? Create(string module, int cpus)
        {
            if (!KvmGlue.FindModule(module, out byte* image, out ulong length))
            {
                Log.Write("bench: the guest module ");
                Log.Write(module);
                Log.Write(" is not on the boot image\n");
                return null;
            }
            Vm? vm = GuestRunner.Create(GuestRam, image, length, out string? problem, cpus: cpus);
            if (vm == null)
            {
                Log.Write("bench: ");
                Log.Line(problem ?? "VM creation failed");
            }
            return vm;
        }

        /// <summary>Stops the VM running beside (it would run for a minute) and waits for its threads.</summary>
        private static void StopBeside(Vm? beside)
        {
            if (beside == null)
                return;
            beside.Stop(0, null);
            VmThreads.WaitAndReport(beside);
        }

        private static bool Failed(Vm vm, string what)
        {
            Log.Info($"bench: {what} failed: the guest exited with status {vm.ExitStatus}");
            return false;
        }

        // ---- the IPI round trip ----

        /// <summary>
        /// ipibench32 with vCPU 0 pinned to cpu 0 and vCPU 1 to cpu 1 (and, <paramref name="beside"/>,
        /// tick32 on cpu 1); the parts of each measured round from the guest's stamp tables and the
        /// host's stamps on vCPU 1.
        /// </summary>
        private static bool Ipi(bool beside, ref IpiFigure fig)
        {
            Vm? tick = null;
            if (beside)
            {
                tick = Create("tick32", 1);
                if (tick == null)
                    return false;
                VmThreads.Start(tick, 1UL << 1);
            }
            Vm? vm = Create("ipibench32", 2);
            if (vm == null)
            {
                StopBeside(tick);
                return false;
            }
            var bench = new VcpuBench(MaxRounds);
            bench.Vector = IpiVector;
            vm.Vcpus[1].Bench = bench;
            ulong[] pins = new ulong[2];
            pins[0] = 1UL << 0;
            pins[1] = 1UL << 1;
            VmThreads.Start(vm, 0, pins);
            VmThreads.WaitAndReport(vm);
            StopBeside(tick);
            if (vm.ExitStatus != 0)
                return Failed(vm, "ipi_round_trip (ipibench32: 1 an AP did not come up, 5 an IPI was not handled in time)");
            if (bench.Rounds != IpiTotalRounds)
            {
                Log.Line("bench: ipi_round_trip: the host did not see one injection of the IPI per round; rounds seen ", (ulong)bench.Rounds);
                return false;
            }
            ulong[] stamps = new ulong[Tables * MaxRounds];
            fixed (ulong* p = stamps)
            {
                if (!vm.Memory.Read(BenchStamps, (byte*)p, Tables * TableSize))
                {
                    Log.Line("bench: ipi_round_trip: could not read the guest's stamp tables");
                    return false;
                }
            }
            ulong rt = 0, send = 0, toKick = 0, wake = 0, entry = 0, inject = 0, handler = 0, seen = 0;
            for (int k = IpiWarmup; k < IpiTotalRounds; k++)
            {
                // The guest's stamps on the host's time line (each vCPU's TSC starts at 0 when the VM is made).
                Vcpu v0 = vm.Vcpus[0], v1 = vm.Vcpus[1];
                ulong g0 = v0.HostTscOf(stamps[TableIpiSent * MaxRounds + k]), g1 = v0.HostTscOf(stamps[TableIpiSendDone * MaxRounds + k]);
                ulong g2 = v1.HostTscOf(stamps[TableHandlerIn * MaxRounds + k]), g3 = v1.HostTscOf(stamps[TableEoiDone * MaxRounds + k]);
                ulong g4 = v0.HostTscOf(stamps[TableSeen * MaxRounds + k]);
                ulong hk = bench.KickTsc[k], hs = bench.SwitchInTsc[k], hi = bench.InjectTsc[k];
                if (hs == 0)
                {
                    fig.NotHalted++;         // vCPU 1 was not blocked in HLT when the kick came
                    continue;
                }
                if (!(g0 <= hk && hk <= hs && hs <= hi && hi <= g2 && g2 <= g3 && g3 <= g4 && g0 <= g1))
                {
                    fig.Odd++;               // out of order: not the path this figure is about
                    continue;
                }
                fig.Valid++;
                rt += g4 - g0;
                send += g1 - g0;
                toKick += hk - g0;
                wake += hs - hk;
                entry += g2 - hs;
                inject += hi - hs;
                handler += g3 - g2;
                seen += g4 - g3;
            }
            if (fig.Valid == 0)
            {
                Log.Info($"bench: ipi_round_trip: no round took the halted path (rounds measured {(ulong)(IpiTotalRounds - IpiWarmup)}: vCPU 1 not switched in after the kick {fig.NotHalted}, stamps out of order {fig.Odd})");
                return false;
            }
            ulong n = fig.Valid;
            fig.RoundTrip = rt / n;
            fig.Send = send / n;
            fig.ToKick = toKick / n;
            fig.Wake = wake / n;
            fig.Entry = entry / n;
            fig.Inject = inject / n;
            fig.HandlerEoi = handler / n;
            fig.Seen = seen / n;
            return true;
        }

        private static void PrintIpi(string config, in IpiFigure fig, string what)
        {
            Log.Info($"bench: ipi_round_trip {config} round_trip={fig.RoundTrip} send={fig.Send} to_kick={fig.ToKick} wake={fig.Wake} entry={fig.Entry} inject={fig.Inject} handler_eoi={fig.HandlerEoi} seen={fig.Seen} rounds={fig.Valid}/{(ulong)(IpiTotalRounds - IpiWarmup)} not_halted={fig.NotHalted} (tsc units, mean per round; round_trip = to_kick + wake + entry + handler_eoi + seen; {what})");
        }

        // ---- the vCPU switch ----

        private static void YieldPhase(Vm vm, ulong phase)
        {
            VcpuBench? bench = vm.Vcpus[0].Bench;
            if (bench == null)
                return;
            if (phase == 1)
                bench.Start();
            else if (phase == 2)
                bench.Stop();
        }

        /// <summary>
        /// yieldbench32 with both vCPUs pinned to the last CPU (and, <paramref name="beside"/>, spin32
        /// on cpu 0); the guest's time per switch and the host's parts.
        /// </summary>
        private static bool Switch(bool beside, ref SwitchFigure fig)
        {
            Vm? spin = null;
            if (beside)
            {
                spin = Create("spin32", 1);
                if (spin == null)
                    return false;
                VmThreads.Start(spin, 1UL << 0);
            }
            Vm? vm = Create("yieldbench32", 2);
            if (vm == null)
            {
                StopBeside(spin);
                return false;
            }
            var bench = new VcpuBench(0);
            vm.Vcpus[0].Bench = bench;
            vm.Vcpus[1].Bench = bench;
            vm.PhaseHandler = &YieldPhase;
            VmThreads.Start(vm, 1UL << SwitchCpu);
            VmThreads.WaitAndReport(vm);
            StopBeside(spin);
            if (vm.ExitStatus != 0)
                return Failed(vm, "vcpu_switch (yieldbench32: 1 an AP did not come up, 5 vCPU 1 did not finish its yields)");
            ulong start = 0, end = 0;
            vm.Memory.Read(BenchStart, (byte*)&start, 8);
            vm.Memory.Read(BenchEnd, (byte*)&end, 8);
            if (end <= start || bench.SwitchCount == 0 || bench.ExitCount == 0 || bench.EntryCount == 0)
            {
                Log.Info($"bench: vcpu_switch: no switch was measured (guest window {start}..{end}, switches {bench.SwitchCount}, exits {bench.ExitCount}, entries {bench.EntryCount}, yields back unswitched {bench.Unswitched})");
                return false;
            }
            fig.PerSwitch = (end - start) / (2 * YieldsPerVcpu);
            fig.Exit = bench.ExitSum / bench.ExitCount;
            fig.Switch = bench.SwitchSum / bench.SwitchCount;
            fig.Entry = bench.EntrySum / bench.EntryCount;
            fig.Switches = bench.SwitchCount;
            fig.Unswitched = bench.Unswitched;
            return true;
        }

        private static void PrintSwitch(string config, in SwitchFigure fig, string what)
        {
            Log.Info($"bench: vcpu_switch {config} per_switch={fig.PerSwitch} exit={fig.Exit} switch={fig.Switch} entry={fig.Entry} switches={fig.Switches} unswitched={fig.Unswitched} (tsc units, mean per switch: exit to the yield call, the scheduler's switch with the switch-in hook, back into the guest; {what})");
        }

        /// <summary>"bench: NAME beside/alone ratio=R.RR (...; goal ratio &lt;= 1.20)", which the driver checks.</summary>
        private static void PrintRatio(string name, string figure, ulong beside, ulong alone)
        {
            ulong hundredths = alone == 0 ? 0 : (beside * 100 + alone / 2) / alone;
            Log.Info($"bench: {name} beside/alone ratio={hundredths / 100}.{hundredths % 100:d2} ({figure} with the second VM over alone; goal ratio <= {GoalRatioHundredths / 100}.{GoalRatioHundredths % 100:d2})");
        }
    }
}
