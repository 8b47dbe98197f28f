using System.Runtime.InteropServices;
using System.Threading;
using Tandem.Arch.X86;
using Tandem.Kernel.Console;
using Tandem.Kernel.Memory;

namespace Tandem.Kernel
{
    /// <summary>
    /// Brings up the application processors (Intel SDM Vol. 3A, 9.4.4: INIT, then two SIPIs) one at
    /// a time through the trampoline at 0x8000 and its parameter block at 0x8F00, and runs
    /// functions on other CPUs through a per-CPU mailbox and an IPI.
    /// </summary>
    public static unsafe class Smp
    {
        private const ulong TrampolineAddress = 0x8000;
        private const ulong ParameterBlock = 0x8F00;
        private const ulong StackSize = 64 * 1024;

        public static bool ApicReady;
        public static bool Started;
        private static IdtEntry* s_idt;

        /// <summary>Sets up the BSP: per-CPU block, GDT/TSS, IDT, LAPIC.</summary>
        public static void InitializeBootProcessor()
        {
            Pic.RemapAndMask();
            Cpu.Initialize();
            s_idt = (IdtEntry*)KernelHeap.Alloc(256 * 16);
            Idt.Build(s_idt, (ulong*)KernelLayout.Get->IsrTable);
            Lapic.Enable();
            PerCpu* bsp = Cpu.Add(Lapic.CurrentId);
            ApicReady = true;
            SetUpDescriptors(bsp);
            bsp->Online = 1;
        }

        private static void SetUpDescriptors(PerCpu* cpu)
        {
            // Separate stacks for NMI, #DF and #MC so a broken stack still yields a dump.
            cpu->Tss.Ist1 = AllocateStack();
            cpu->Tss.Ist2 = AllocateStack();
            cpu->Tss.Ist3 = AllocateStack();
            cpu->Gdt.Load(&cpu->Tss);
            Idt.Load();
        }

        private static ulong AllocateStack()
        {
            ulong stack = FrameAllocator.AllocateContiguous(StackSize / 4096);
            if (stack == 0)
                Panic.Fail("out of memory for a CPU stack");
            return stack + StackSize;
        }

        /// <summary>Starts every AP the MADT lists. Returns how many CPUs are online.</summary>
        public static int StartApplicationProcessors()
        {
            KernelLayout* layout = KernelLayout.Get;
            ulong trampolineSize = layout->ApTrampolineEnd - layout->ApTrampolineStart;
            if (trampolineSize > ParameterBlock - TrampolineAddress)
                Panic.Fail("AP trampoline larger than its page");
            Native.MemCopy((void*)TrampolineAddress, (void*)layout->ApTrampolineStart, trampolineSize);

            uint self = Lapic.CurrentId;
            for (int i = 0; i < Acpi.ApicCount; i++)
            {
                uint apicId = Acpi.ApicIds[i];
                if (apicId == self)
                    continue;
                PerCpu* cpu = Cpu.Add(apicId);
                if (cpu == null)
                {
                    Log.Line("smp: more CPUs than supported; ignoring the rest");
                    break;
                }
                if (!StartOne(cpu))
                    Log.Info($"smp: cpu with APIC id {apicId} did not start");
            }
            Started = true;
            int online = 0;
            for (int i = 0; i < Cpu.Count; i++)
                online += Volatile.Read(ref Cpu.Get(i)->Online);
            return online;
        }

        private static bool StartOne(PerCpu* cpu)
        {
            ulong* block = (ulong*)ParameterBlock;
            cpu->StackTop = AllocateStack();
            block[0] = Native.ReadCr3();
            block[1] = cpu->StackTop;
            block[2] = (ulong)(delegate* unmanaged<ulong, void>)&ApMain;
            block[3] = (ulong)cpu->Index;
            Volatile.Write(ref *(uint*)(ParameterBlock + 32), 0);

            Lapic.SendInit(cpu->ApicId);
            Pit.Wait(11932);                       // 10 ms
            for (int attempt = 0; attempt < 2; attempt++)
            {
                Lapic.SendStartup(cpu->ApicId, (byte)(TrampolineAddress >> 12));
                for (int i = 0; i < 20; i++)
                {
                    // Pairs with the trampoline's write of the started flag.
                    if (Volatile.Read(ref *(uint*)(ParameterBlock + 32)) != 0)
                        return WaitOnline(cpu);
                    Pit.Wait(1193);                // 1 ms
                }
            }
            return false;
        }

        private static bool WaitOnline(PerCpu* cpu)
        {
            for (int i = 0; i < 1000; i++)
            {
                // Pairs with the Volatile.Write of Online in ApMain.
                if (Volatile.Read(ref cpu->Online) != 0)
                    return true;
                Pit.Wait(1193);
            }
            return false;
        }

        [UnmanagedCallersOnly]
        private static void ApMain(ulong index)
        {
            PerCpu* cpu = Cpu.Get((int)index);
            SetUpDescriptors(cpu);
            Lapic.Enable();
            Volatile.Write(ref cpu->Online, 1);
            // Serve call-function IPIs until the BSP starts the scheduler; then this context becomes
            // the CPU's idle thread.
            Native.Sti();
            while (!Volatile.Read(ref Sched.Scheduler.Started))
                Native.Pause();
            Sched.Scheduler.RunIdleOnAp();
        }

        /// <summary>
        /// Runs <paramref name="function"/>(<paramref name="argument"/>) on CPU <paramref name="index"/>
        /// and waits for it to finish. On the current CPU it runs directly.
        /// </summary>
        public static bool RunOn(int index, delegate*<ulong, void> function, ulong argument)
        {
            // Not preempted while this CPU holds the target's mailbox lock: a thread switched in here
            // with interrupts off (a vCPU) that wanted the same mailbox would spin on it forever.
            Sched.KThread* me = Sched.Scheduler.Current;
            if (me != null)
                me->PreemptCount++;
            bool done = RunOnPinned(index, function, argument);
            if (me != null)
                me->PreemptCount--;
            return done;
        }

        private static bool RunOnPinned(int index, delegate*<ulong, void> function, ulong argument)
        {
            if (index == Cpu.CurrentIndex)
            {
                function(argument);
                return true;
            }
            PerCpu* cpu = Cpu.Get(index);
            if (Volatile.Read(ref cpu->Online) == 0)
                return false;
            // Both waits serve this CPU's own mailbox: the mailbox's holder, or the target, may be
            // waiting for this CPU to run its call.
            ulong spinStart = 0;
            while (Interlocked.CompareExchange(ref cpu->CallLock, 1, 0) != 0)
                ServeWhileSpinning(ref spinStart);
            while (Volatile.Read(ref cpu->CallPending) != 0)
                ServeWhileSpinning(ref spinStart);
            int completed = Volatile.Read(ref cpu->CallsCompleted);
            cpu->CallFunction = function;
            cpu->CallArgument = argument;
            // Publishes the function and argument above; pairs with the read in HandleCallFunction.
            Volatile.Write(ref cpu->CallPending, 1);
            Lapic.SendIpi(cpu->ApicId, Interrupts.CallFunctionVector);
            bool done = false;
            PerCpu* self = Cpu.Current;
            for (long spin = 0; spin < 2_000_000_000L; spin++)
            {
                // Pairs with the receiver's Interlocked.Increment(CallsCompleted) after the call.
                if (Volatile.Read(ref cpu->CallsCompleted) != completed)
                {
                    done = true;
                    break;
                }
                // The target may be waiting, interrupts off, for a call it sent us (a VMCLEAR, an
                // INVEPT): serve our own mailbox while we wait, or the two of us wait forever.
                if (self != null && Volatile.Read(ref self->CallPending) != 0)
                    HandleCallFunction();
                Watchdog.SpinStep(ref spinStart);
                Native.Pause();
            }
            Volatile.Write(ref cpu->CallLock, 0);
            return done;
        }

        /// <summary>Sends <paramref name="function"/> to CPU <paramref name="index"/> without waiting for it to finish.</summary>
        public static bool Post(int index, delegate*<ulong, void> function, ulong argument)
        {
            PerCpu* cpu = Cpu.Get(index);
            Sched.KThread* me = Sched.Scheduler.Current;
            if (me != null)
                me->PreemptCount++;
            if (index == Cpu.CurrentIndex || Volatile.Read(ref cpu->Online) == 0)
            {
                if (me != null)
                    me->PreemptCount--;
                return false;
            }
            ulong spinStart = 0;
            while (Interlocked.CompareExchange(ref cpu->CallLock, 1, 0) != 0)
                ServeWhileSpinning(ref spinStart);
            // The previous call must have been taken before the mailbox is reused.
            while (Volatile.Read(ref cpu->CallPending) != 0)
                ServeWhileSpinning(ref spinStart);
            cpu->CallFunction = function;
            cpu->CallArgument = argument;
            Volatile.Write(ref cpu->CallPending, 1);   // pairs with the read in HandleCallFunction
            Lapic.SendIpi(cpu->ApicId, Interrupts.CallFunctionVector);
            Volatile.Write(ref cpu->CallLock, 0);
            if (me != null)
                me->PreemptCount--;
            return true;
        }

        /// <summary>
        /// One step of a spin-wait that may run with interrupts off: runs a call-function request
        /// pending for this CPU (the spinner may be what its sender waits for), then pauses.
        /// </summary>
        public static void ServeWhileSpinning(ref ulong spinStart)
        {
            PerCpu* cpu = Cpu.Current;
            if (cpu != null && Volatile.Read(ref cpu->CallPending) != 0)
                HandleCallFunction();
            Watchdog.SpinStep(ref spinStart);
            Native.Pause();
        }

        /// <summary>As <see cref="ServeWhileSpinning(ref ulong)"/>, for a caller that does not know where its spin began (the mm and EPT locks' platform hook).</summary>
        public static void ServeWhileSpinning()
        {
            PerCpu* cpu = Cpu.Current;
            if (cpu != null && Volatile.Read(ref cpu->CallPending) != 0)
                HandleCallFunction();
            Watchdog.SpinStep();
            Native.Pause();
        }

        internal static void HandleCallFunction()
        {
            PerCpu* cpu = Cpu.Current;
            if (cpu == null || Volatile.Read(ref cpu->CallPending) == 0)
                return;
            delegate*<ulong, void> function = cpu->CallFunction;
            ulong argument = cpu->CallArgument;
            // Take the call before running it, so a long-running posted call frees the mailbox. A CAS:
            // the IPI handler and a RunOn waiting on this CPU may both try, and only one may run it.
            if (Interlocked.CompareExchange(ref cpu->CallPending, 0, 1) != 1)
                return;
            function(argument);
            Interlocked.Increment(ref cpu->CallsCompleted);
        }
    }
}
