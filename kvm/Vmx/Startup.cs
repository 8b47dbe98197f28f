using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx
{
    /// <summary>
    /// An application processor's start (SDM Vol. 3A 10.4, "MP Initialization"): it waits for INIT
    /// and then a start-up IPI from another vCPU, and begins in real mode at the SIPI's page.
    /// </summary>
    internal static unsafe class Startup
    {
        /// <summary>
        /// Blocks the AP's thread (a kick wakes it) until its local APIC took a start-up IPI after an
        /// INIT, then sets up its VMCS for that start. Returns with <see cref="Vcpu.Started"/> set, or
        /// when the VM stopped first.
        /// </summary>
        public static void WaitForSipi(Vcpu v)
        {
            Devices.PcPlatform p = v.Platform;
            Devices.LocalApic apic = p.Lapics[v.Index];
            while (!v.Vm.Stopped)
            {
                p.Lock.Enter();
                int vector = apic.TakeStartUp();
                if (vector >= 0)
                    apic.TakeInit();    // the INIT that began this wait is over too: left pending, it
                                        // would keep the devices "not quiet" and every entry of the AP
                                        // would run Events.Deliver
                p.Lock.Exit();
                if (vector >= 0)
                {
                    string? problem = VmcsSetup.InitializeStartup(v, vector);
                    if (problem != null)
                    {
                        v.Vm.Stop(255, problem);
                        return;
                    }
                    ClearGeneralRegisters(v.Registers);
                    // Launched stays as it is: a VMCS that an INIT-reset AP already launched is
                    // resumed (VMLAUNCH would fail on it); a first start's VMCS is still clear.
                    v.Started = true;
                    v.EntryWork = true;
                    v.ChargedUntil = Native.Rdtsc();
                    return;
                }
                // A move takes an AP that waits for its start-up IPI as it is: it leaves the run
                // loop unstarted, and the VM that takes over waits for the SIPI in its place.
                if (MovePausing(v.Vm))
                    return;
                KvmHost.BlockThread(Native.Rdtsc() + TscClock.NsToTsc(10_000_000));
            }
        }

        /// <summary>A pause that takes the vCPUs' state for a move (<see cref="Vm.SaveStateOnPause"/>) is under way.</summary>
        internal static bool MovePausing(Vm vm) =>
            System.Threading.Volatile.Read(ref vm.SaveStateOnPause) && System.Threading.Volatile.Read(ref vm.Paused);

        /// <summary>The general registers as INIT leaves them (0; an AP restarted by INIT-SIPI sees none of its old values).</summary>
        private static void ClearGeneralRegisters(GuestRegisters* r)
        {
            r->Rax = r->Rbx = r->Rcx = r->Rdx = r->Rsi = r->Rdi = r->Rbp = 0;
            r->R8 = r->R9 = r->R10 = r->R11 = r->R12 = r->R13 = r->R14 = r->R15 = 0;
            r->Cr2 = 0;
        }
    }
}
