using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// RDMSR and WRMSR (exit reasons 31 and 32; every MSR exits through the all-ones bitmap). The
    /// MSRs the VMCS holds (EFER, FS and GS base, SYSENTER) take effect through it; the syscall
    /// MSRs (STAR, LSTAR, CSTAR, FMASK, KERNEL_GS_BASE), TSC_AUX, PAT and the MTRR default type are
    /// kept per vCPU; the syscall ones are in the CPU while the vCPU runs (<see cref="SyscallMsrs"/>); the local APIC's (IA32_APIC_BASE,
    /// TSC_DEADLINE, the x2APIC range) go to the vCPU's LocalApic; a few that firmware and Linux read at
    /// boot answer as a CPU without those features would (MISC_ENABLE with fast strings on,
    /// FEATURE_CONTROL locked with VMX off, no MTRRs, no machine check banks). Any other MSR, a
    /// write to a read-only one and a non-canonical base raise #GP(0) in the guest, as on a real
    /// CPU; a guest can never reach the host's MSRs.
    /// </summary>
    internal static unsafe class MsrExit
    {
        private const uint Tsc = 0x10, PlatformId = 0x17, ArchCapabilities = 0x10A, FeatureControl = 0x3A, BiosSignId = 0x8B, MtrrCap = 0xFE;
        private const uint SysenterCs = 0x174, SysenterEsp = 0x175, SysenterEip = 0x176, McgCap = 0x179, McgStatus = 0x17A;
        private const uint MiscEnable = 0x1A0, Pat = 0x277, MtrrDefType = 0x2FF;
        private const uint Efer = 0xC000_0080, Star = 0xC000_0081, Lstar = 0xC000_0082, Cstar = 0xC000_0083, Fmask = 0xC000_0084;
        private const uint FsBase = 0xC000_0100, GsBase = 0xC000_0101, KernelGsBase = 0xC000_0102, TscAux = 0xC000_0103;

        public static ExitAction HandleRead(Vcpu v, in ExitInfo e)
        {
            GuestRegisters* r = v.Registers;
            if (!Read(v, (uint)r->Rcx, out ulong value))
            {
                Events.InjectException(v, Events.GeneralProtection, 0);
                v.MsrFaults++;
                return ExitAction.Resume;                   // a fault: RIP stays on the RDMSR
            }
            r->Rax = (uint)value;
            r->Rdx = value >> 32;
            e.Skip();
            return ExitAction.Resume;
        }

        public static ExitAction HandleWrite(Vcpu v, in ExitInfo e)
        {
            GuestRegisters* r = v.Registers;
            ulong value = (r->Rdx << 32) | (uint)r->Rax;
            if (!Write(v, (uint)r->Rcx, value))
            {
                Events.InjectException(v, Events.GeneralProtection, 0);
                v.MsrFaults++;
                return ExitAction.Resume;
            }
            e.Skip();
            return ExitAction.Resume;
        }

        private static bool Read(Vcpu v, uint msr, out ulong value)
        {
            if (Devices.LocalApic.Handles(msr))
            {
                v.Platform.Lock.Enter();
                bool ok = v.Platform.Lapics[v.Index].ReadMsr(msr, out value);
                v.Platform.Lock.Exit();
                return ok;
            }
            switch (msr)
            {
                case Efer: value = Vmcs.Read(VmcsField.GuestIa32Efer); return true;
                case FsBase: value = Vmcs.Read(VmcsField.GuestFsBase); return true;
                case GsBase: value = Vmcs.Read(VmcsField.GuestGsBase); return true;
                case SysenterCs: value = Vmcs.Read(VmcsField.GuestSysenterCs); return true;
                case SysenterEsp: value = Vmcs.Read(VmcsField.GuestSysenterEsp); return true;
                case SysenterEip: value = Vmcs.Read(VmcsField.GuestSysenterEip); return true;
                case Star: value = v.Msrs.Star; return true;
                case Lstar: value = v.Msrs.Lstar; return true;
                case Cstar: value = v.Msrs.Cstar; return true;
                case Fmask: value = v.Msrs.Fmask; return true;
                case KernelGsBase: value = SyscallMsrs.Holds(v) ? Native.ReadMsr(KernelGsBase) : v.Msrs.KernelGsBase; return true;
                case TscAux: value = v.Msrs.TscAux; return true;
                case Pat: value = v.Msrs.Pat; return true;
                case MtrrDefType: value = v.Msrs.MtrrDefType; return true;
                case Tsc: value = Native.Rdtsc() + v.TscOffset; return true;
                case MiscEnable: value = 1; return true;          // fast strings (Linux keeps ERMS only then)
                case FeatureControl: value = 1; return true;      // locked, VMX off
                case PlatformId:
                case BiosSignId:
                case ArchCapabilities:                            // CPUID.7.EDX[29] says it exists; no "not affected" bits
                case MtrrCap:
                case McgCap:
                case McgStatus:
                    value = 0;
                    return true;
                default:
                    value = 0;
                    return false;
            }
        }

        private static bool Write(Vcpu v, uint msr, ulong value)
        {
            if (Devices.LocalApic.Handles(msr))
            {
                v.EntryWork = true;          // an EOI, a timer or an IPI: the next entry looks
                v.Platform.Lock.Enter();
                bool ok = v.Platform.Lapics[v.Index].WriteMsr(msr, value);
                v.Platform.Lock.Exit();
                return ok;
            }
            switch (msr)
            {
                case Efer:
                    {
                        // LME, NXE and SCE are the guest's; LMA is kept as the CPU maintains it.
                        const ulong Writable = 1UL | (1UL << 8) | (1UL << 10) | (1UL << 11);
                        if ((value & ~Writable) != 0)
                            return false;
                        ulong current = Vmcs.Read(VmcsField.GuestIa32Efer);
                        Vmcs.Write(VmcsField.GuestIa32Efer, (value & ~(1UL << 10)) | (current & (1UL << 10)));
                        return true;
                    }
                case FsBase: return Canonical(value) && WriteField(VmcsField.GuestFsBase, value);
                case GsBase: return Canonical(value) && WriteField(VmcsField.GuestGsBase, value);
                case SysenterCs: return WriteField(VmcsField.GuestSysenterCs, value & 0xFFFF_FFFF);
                case SysenterEsp: return Canonical(value) && WriteField(VmcsField.GuestSysenterEsp, value);
                case SysenterEip: return Canonical(value) && WriteField(VmcsField.GuestSysenterEip, value);
                case Star: v.Msrs.Star = value; return Through(v, msr, value);
                case Lstar:
                    if (!Canonical(value))
                        return false;
                    v.Msrs.Lstar = value;
                    return Through(v, msr, value);
                case Cstar:
                    if (!Canonical(value))
                        return false;
                    v.Msrs.Cstar = value;
                    return Through(v, msr, value);
                case Fmask:
                    v.Msrs.Fmask = value & 0xFFFF_FFFF;
                    return Through(v, msr, value & 0xFFFF_FFFF);
                case KernelGsBase:
                    if (!Canonical(value))
                        return false;
                    v.Msrs.KernelGsBase = value;
                    return Through(v, msr, value);
                case Tsc:
                    // The guest's TSC becomes the value (SDM 17.17): a new offset from the host's, for
                    // RDTSC (the VMCS's TSC offset) and for the local APIC's TSC-deadline timer.
                    if (!v.TscOffsetting)
                        return false;
                    v.TscOffset = value - Native.Rdtsc();
                    Vmcs.Write(VmcsField.TscOffset, v.TscOffset);
                    v.Platform.Lock.Enter();
                    v.Platform.Lapics[v.Index].TscAtZero = v.TscOffset;
                    v.Platform.Lock.Exit();
                    return true;
                case BiosSignId: return true;                     // "load the microcode revision": reads give 0
                case TscAux:
                    if ((value >> 32) != 0)
                        return false;
                    v.Msrs.TscAux = value;
                    return true;
                case Pat:
                    // Each of the eight entries must be a valid memory type (0, 1, 4, 5, 6, 7).
                    for (int i = 0; i < 8; i++)
                    {
                        ulong t = (value >> (8 * i)) & 0xFF;
                        if (t == 2 || t == 3 || t > 7)
                            return false;
                    }
                    v.Msrs.Pat = value;
                    return true;
                case MtrrDefType: v.Msrs.MtrrDefType = value & 0xCFF; return true;
                case MiscEnable: return true;                     // accepted, nothing changes
                default: return false;                            // unknown or read-only: #GP
            }
        }

        /// <summary>A syscall MSR also goes into the CPU when it holds this vCPU's values (<see cref="SyscallMsrs"/>).</summary>
        private static bool Through(Vcpu v, uint msr, ulong value)
        {
            if (SyscallMsrs.Holds(v))
                Native.WriteMsr(msr, value);
            return true;
        }

        private static bool WriteField(ulong field, ulong value)
        {
            Vmcs.Write(field, value);
            return true;
        }

        private static bool Canonical(ulong value) => (ulong)(((long)value << 16) >> 16) == value;
    }
}
