using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// Control-register access (exit reason 28; qualification per SDM table 28-3): a MOV to CR0 or
    /// CR4 that touched a bit VMX owns, or a MOV to or from CR8 (the guest's APIC task priority). The guest's value goes to the read shadow; the real
    /// register gets it with the VMX-fixed bits forced on. Paging turned on or off moves the guest
    /// into or out of IA-32e mode as the CPU would (<see cref="PagingTransition"/>).
    /// </summary>
    internal static unsafe class CrAccessExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            ulong qualification = e.Qualification;
            int cr = (int)(qualification & 15);
            int type = (int)((qualification >> 4) & 3);
            int gpr = (int)((qualification >> 8) & 15);
            if (cr == 8 && type <= 1)
                return Cr8(v, e, type == 0, gpr);
            if (type != 0 || (cr != 0 && cr != 4))
            {
                v.Vm.Stop(255, "unsupported control-register access");
                return ExitAction.Stop;
            }
            ulong value = gpr == 4 ? Vmcs.Read(VmcsField.GuestRsp) : v.Registers->ByIndex(gpr);
            // A value the CPU would refuse gets the CPU's #GP(0), RIP unchanged: written as it is,
            // it would fail the next VM entry's guest-state checks and stop the VM (found by the
            // guest fuzzer: a MOV to CR4 with reserved bits).
            if (cr == 0 ? !Cr0Allowed(ref value) : !Cr4Allowed(value))
            {
                Events.InjectException(v, Events.GeneralProtection, 0);
                return ExitAction.Resume;
            }
            if (cr == 0)
            {
                if (!PagingTransition(v, Vmcs.Read(VmcsField.GuestCr0), value))
                    return ExitAction.Resume;                 // #GP injected, RIP stays
                Vmcs.Write(VmcsField.Cr0ReadShadow, value);
                Vmcs.Write(VmcsField.GuestCr0, value | Vmcs.Read(VmcsField.Cr0GuestHostMask));
            }
            else
            {
                Vmcs.Write(VmcsField.Cr4ReadShadow, value);
                Vmcs.Write(VmcsField.GuestCr4, value | (Vmcs.Read(VmcsField.Cr4GuestHostMask) & ~VmcsSetup.Cr4HostOwned));
            }
            e.Skip();
            return ExitAction.Resume;
        }

        /// <summary>
        /// MOV to or from CR8 (64-bit guests only): without CR8 exiting, and with no TPR shadow,
        /// the guest would reach the host CPU's own APIC task priority and could mask the host's
        /// timer and IPIs on that CPU. CR8 is the guest's virtual APIC TPR, bits 7:4; a write with
        /// bits 63:4 set raises #GP (SDM Vol. 3A, 2.5 and 11.8.6.5).
        /// </summary>
        private static ExitAction Cr8(Vcpu v, in ExitInfo e, bool write, int gpr)
        {
            Devices.LocalApic apic = v.Vm.Platform.Lapics[v.Index];
            if (write)
            {
                ulong value = gpr == 4 ? Vmcs.Read(VmcsField.GuestRsp) : v.Registers->ByIndex(gpr);
                if (value > 15)
                {
                    Events.InjectException(v, Events.GeneralProtection, 0);
                    return ExitAction.Resume;
                }
                apic.TaskPriority = (uint)value << 4;
            }
            else
            {
                ulong value = apic.TaskPriority >> 4;
                if (gpr == 4)
                    Vmcs.Write(VmcsField.GuestRsp, value);
                else
                    v.Registers->ByIndex(gpr) = value;
            }
            e.Skip();
            return ExitAction.Resume;
        }

        private const ulong Cr0Pg = 1UL << 31, Cr4Pae = 1UL << 5, EferLme = 1UL << 8, EferLma = 1UL << 10;
        private const ulong Cr0Pe = 1, Cr0Wp = 1UL << 16, Cr0Nw = 1UL << 29, Cr0Cd = 1UL << 30;
        private const ulong Cr4Vmxe = 1UL << 13, Cr4Smxe = 1UL << 14, Cr4Pcide = 1UL << 17, Cr4Cet = 1UL << 23;

        /// <summary>
        /// MOV to CR0 as the CPU checks it (SDM Vol. 3A, 2.5; MOV to control registers): #GP(0) for
        /// bits 63:32, PG without PE, NW without CD, or WP cleared while CR4.CET is set. Reserved
        /// bits of 31:0 are ignored by the CPU: they are dropped here (IA32_VMX_CR0_FIXED1 says which
        /// the CPU has), so the value that reaches the VMCS passes the entry checks.
        /// </summary>
        private static bool Cr0Allowed(ref ulong value)
        {
            if ((value >> 32) != 0)
                return false;
            if ((value & Cr0Pg) != 0 && (value & Cr0Pe) == 0)
                return false;
            if ((value & Cr0Nw) != 0 && (value & Cr0Cd) == 0)
                return false;
            if ((value & Cr0Wp) == 0 && (Vmcs.Read(VmcsField.GuestCr4) & Cr4Cet) != 0)
                return false;
            value &= Native.ReadMsr(0x487) | 0xFFFF_FFFF_0000_0000UL;    // IA32_VMX_CR0_FIXED1
            return true;
        }

        /// <summary>
        /// MOV to CR4 as the CPU checks it: #GP(0) for a bit this CPU does not have
        /// (IA32_VMX_CR4_FIXED1), for VMXE and SMXE (the guest is offered neither), for OSXSAVE and
        /// PKE (neither XSAVE nor PKU is offered: the host does not switch that state,
        /// <see cref="VmcsSetup.Cr4HostOwned"/>), PCIDE outside IA-32e mode, PAE cleared inside it,
        /// and CET without CR0.WP.
        /// </summary>
        private static bool Cr4Allowed(ulong value)
        {
            if ((value & ~Native.ReadMsr(0x489)) != 0 || (value & (Cr4Vmxe | Cr4Smxe | VmcsSetup.Cr4HostOwned)) != 0)
                return false;
            bool ia32e = (Vmcs.Read(VmcsField.GuestIa32Efer) & EferLma) != 0;
            if (!ia32e && (value & Cr4Pcide) != 0)
                return false;
            if (ia32e && (value & Cr4Pae) == 0)
                return false;
            return (value & Cr4Cet) == 0 || (Vmcs.Read(VmcsField.GuestCr0) & Cr0Wp) != 0;
        }
        private const ulong EntryIa32eGuest = 1UL << 9;

        /// <summary>
        /// What the CPU does itself when the MOV to CR0 does not exit (SDM Vol. 3A, 10.8.5): turning
        /// paging on with EFER.LME set activates IA-32e mode (EFER.LMA and the "IA-32e mode guest"
        /// entry control, which must agree at the next entry), and #GP(0) if CR4.PAE is clear;
        /// turning it off leaves IA-32e mode. A PVH kernel switches to long mode this way. False when
        /// a #GP was injected instead.
        /// </summary>
        private static bool PagingTransition(Vcpu v, ulong oldCr0, ulong newCr0)
        {
            bool was = (oldCr0 & Cr0Pg) != 0, now = (newCr0 & Cr0Pg) != 0;
            if (was == now)
                return true;
            ulong efer = Vmcs.Read(VmcsField.GuestIa32Efer);
            ulong entry = Vmcs.Read(VmcsField.EntryControls);
            if (now && (efer & EferLme) != 0)
            {
                if ((Vmcs.Read(VmcsField.GuestCr4) & Cr4Pae) == 0)
                {
                    Events.InjectException(v, Events.GeneralProtection, 0);
                    return false;
                }
                Vmcs.Write(VmcsField.GuestIa32Efer, efer | EferLma);
                Vmcs.Write(VmcsField.EntryControls, entry | EntryIa32eGuest);
            }
            else if (!now && (efer & EferLma) != 0)
            {
                Vmcs.Write(VmcsField.GuestIa32Efer, efer & ~EferLma);
                Vmcs.Write(VmcsField.EntryControls, entry & ~EntryIa32eGuest);
            }
            return true;
        }
    }
}
