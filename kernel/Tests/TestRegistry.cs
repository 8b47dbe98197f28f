namespace Tandem.Kernel.Tests
{
    /// <summary>Every in-kernel test, in the order they run. The one place tests are registered.</summary>
    public static unsafe class TestRegistry
    {
        public static readonly TestCase[] All =
        [
            new TestCase("cpu.breakpoint_recovered", &CpuTests.Breakpoint),
            new TestCase("cpu.page_fault_recovered", &CpuTests.PageFaultProbe),
            new TestCase("cpu.vmx_features_reported", &CpuTests.VmxFeaturesReported),
            new TestCase("mem.frame_allocator_invariants", &MemoryTests.FrameAllocator),
            new TestCase("mem.heap_invariants", &MemoryTests.Heap),
            new TestCase("runtime.interface_dispatch", &RuntimeTests.InterfaceDispatch),
            new TestCase("runtime.integer_formatting", &RuntimeTests.IntegerFormatting),
            new TestCase("timer.ticks", &CpuTests.TimerTicks),
            new TestCase("smp.all_cpus_checked_in", &SmpTests.AllCpusCheckedIn),
            new TestCase("smp.interlocked_exact_totals", &SmpTests.InterlockedTotals),
            new TestCase("sched.threads_run_on_every_cpu", &SchedTests.ThreadsRunOnEveryCpu),
            new TestCase("sched.timer_preempts_spinning_threads", &SchedTests.TimerPreemptsSpinningThreads),
            new TestCase("sched.block_and_wake_across_cpus", &SchedTests.BlockAndWakeAcrossCpus),
            new TestCase("sched.sleep_ends_at_its_deadline", &SchedTests.SleepEndsAtItsDeadline),
            new TestCase("mm.demand_faults_real_page_faults", &MmTests.DemandFaults),
            new TestCase("mm.unmap_shoots_down_other_cpu", &MmTests.UnmapShootdown),
            new TestCase("mm.reverse_map_walk_and_test_notifier", &MmTests.ReverseMapAndNotifier),
            new TestCase("vmx.enabled_on_every_cpu", &VmxTests.EnabledOnEveryCpu),
            new TestCase("vmx.guest_runs_to_exit_status", &VmxTests.GuestRunsToExitStatus),
            new TestCase("vmx.ept_mask_set_by_the_run_loop", &VmxTests.EptMaskSetByTheRunLoop),
            new TestCase("vmx.cpuid_io_exits_seen", &VmxTests.CpuidIoExitsSeen),
            new TestCase("vmx.ept_demand_faults", &VmxTests.EptDemandFaults),
            new TestCase("vmx.invalidate_while_running_checksums_verify", &VmxTests.InvalidateWhileRunning),
            new TestCase("vmx.aging_hot_young_cold_old", &VmxTests.AgingHotYoungColdOld),
            new TestCase("vmx.two_vms_isolated", &VmxTests.TwoVmsIsolated),
            new TestCase("vmx.huge_pages_back_guest_ram", &VmxTests.HugePagesBackGuestRam),
            new TestCase("vmx.triple_fault_stops_only_the_vm", &VmxTests.TripleFaultStopsOnlyTheVm),
            new TestCase("vmx.runaway_guest_stopped", &VmxTests.RunawayGuestStopped),
            new TestCase("vmx.pit_interrupts_wake_hlt", &VmxTests.PitInterruptsWakeHlt),
            new TestCase("vmx.halt_with_interrupts_off_stops_the_vm", &VmxTests.HaltWithInterruptsOffStopsTheVm),
            new TestCase("vmx.devices_answer_the_guest", &VmxTests.DevicesAnswerTheGuest),
            new TestCase("vmx.multiboot_kernel_built_with_gcc_runs", &VmxTests.MultibootKernelBuiltWithGccRuns),
            new TestCase("vmx.mmio_forms_emulated", &VmxTests.MmioFormsEmulated),
            new TestCase("vmx.unknown_msr_raises_gp_in_the_guest", &VmxTests.UnknownMsrRaisesGpInTheGuest),
            new TestCase("vmx.apic_timer_and_ioapic_routing", &VmxTests.ApicTimerAndIoApicRouting),
            new TestCase("vmx.uart_receive_raises_irq4", &VmxTests.UartReceiveRaisesIrq4),
            new TestCase("vmx.acpi_s5_powers_the_vm_off", &VmxTests.AcpiS5PowersTheVmOff),
            new TestCase("vmx.smp_three_vcpus_timers_and_ipis", &SmpVmTests.ThreeVcpusTimersAndIpis),
            new TestCase("vmx.two_vms_at_once_one_triple_faults", &SmpVmTests.TwoVmsAtOnceOneTripleFaults),
            new TestCase("vmx.remote_invept_reaches_the_vcpus_cpu", &SmpVmTests.RemoteInveptReachesTheVcpusCpu),
            new TestCase("vmx.vcpu_migrates_with_vmclear_on_the_old_cpu", &SmpVmTests.VcpuMigratesWithVmclearOnTheOldCpu),
            new TestCase("vmx.host_thread_keeps_its_rate_beside_spinning_vcpus", &SmpVmTests.HostThreadKeepsItsRateBesideSpinningVcpus),
            new TestCase("vmx.stopped_vm_returns_its_memory", &SmpVmTests.StoppedVmReturnsItsMemory),
            new TestCase("linux.boots_to_shell", &LinuxTests.BootsToShell),
            new TestCase("linux.selftest", &LinuxTests.SelfTestPasses),
            new TestCase("linux.reclaim_under_load", &LinuxTests.ReclaimUnderLoad),
            // Run only by exact name: they end the run with a panic dump on purpose.
            new TestCase("panic.unhandled_exception", &PanicTests.UnhandledException, manualOnly: true),
            new TestCase("panic.page_fault", &PanicTests.PageFault, manualOnly: true),
        ];
    }
}
