using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>
    /// MOV to or from a debug register (exit reason 29; qualification per SDM Vol. 3C, table 28-4:
    /// bits 2:0 the register, bit 4 the direction, bits 11:8 the general register). MOV-DR exiting
    /// is a required control, so the hardware debug registers never hold a guest's values: a
    /// guest's DR0-DR3, DR6 and DR7 live in its vCPU (<see cref="Vcpu.DebugRegs"/>), read back as
    /// written with the architectural fixed bits, and are never loaded into the CPU. So no VM reads
    /// what another left in DR0-DR3 (before, MOV DR did not exit and they were shared by every VM
    /// on a CPU), and a guest's breakpoints do not fire: the VM gets one console line when it first
    /// arms one in DR7.
    /// </summary>
    internal static unsafe class DrAccessExit
    {
        private const ulong Dr6Fixed = 0xFFFF_0FF0, Dr6Writable = 0xE00F;
        private const ulong Dr7Fixed = 0x400, Dr7Writable = 0xFFFF_23FF;
        private const ulong Cr4De = 1UL << 3, EferLma = 1UL << 10;

        /// <summary>The state of the debug registers after power-on and INIT (SDM Vol. 3A, table 10-1).</summary>
        public static void Reset(Vcpu v)
        {
            v.DebugRegs.Dr0 = v.DebugRegs.Dr1 = v.DebugRegs.Dr2 = v.DebugRegs.Dr3 = 0;
            v.DebugRegs.Dr6 = Dr6Fixed;
            v.DebugRegs.Dr7 = Dr7Fixed;
        }

        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            ulong qualification = e.Qualification;
            int dr = (int)(qualification & 7);
            bool toRegister = (qualification & (1UL << 4)) != 0;   // 1: MOV from DR
            int gpr = (int)((qualification >> 8) & 15);
            if (dr == 4 || dr == 5)
            {
                // DR4 and DR5 alias DR6 and DR7 unless CR4.DE, which makes them #UD.
                if ((Vmcs.GuestVisibleCr4() & Cr4De) != 0)
                {
                    Events.InjectException(v, Events.InvalidOpcode, 0);
                    return ExitAction.Resume;
                }
                dr += 2;
            }
            bool long64 = (Vmcs.Read(VmcsField.GuestIa32Efer) & EferLma) != 0 && (Vmcs.Read(VmcsField.GuestCsAccessRights) & (1UL << 13)) != 0;
            v.DebugRegisterAccesses++;
            if (toRegister)
            {
                ulong value = Read(v, dr);
                if (!long64)
                    value &= 0xFFFF_FFFF;
                if (gpr == 4)
                    Vmcs.Write(VmcsField.GuestRsp, value);
                else
                    v.Registers->ByIndex(gpr) = value;
            }
            else
            {
                ulong value = gpr == 4 ? Vmcs.Read(VmcsField.GuestRsp) : v.Registers->ByIndex(gpr);
                if (!long64)
                    value &= 0xFFFF_FFFF;
                else if (dr >= 6 && (value >> 32) != 0)
                {
                    Events.InjectException(v, Events.GeneralProtection, 0);   // bits 63:32 of DR6 and DR7 must be 0
                    return ExitAction.Resume;
                }
                Write(v, dr, value);
            }
            e.Skip();
            return ExitAction.Resume;
        }

        private static ulong Read(Vcpu v, int dr) => dr switch
        {
            0 => v.DebugRegs.Dr0,
            1 => v.DebugRegs.Dr1,
            2 => v.DebugRegs.Dr2,
            3 => v.DebugRegs.Dr3,
            6 => v.DebugRegs.Dr6,
            _ => v.DebugRegs.Dr7,
        };

        private static void Write(Vcpu v, int dr, ulong value)
        {
            switch (dr)
            {
                case 0: v.DebugRegs.Dr0 = value; break;
                case 1: v.DebugRegs.Dr1 = value; break;
                case 2: v.DebugRegs.Dr2 = value; break;
                case 3: v.DebugRegs.Dr3 = value; break;
                case 6: v.DebugRegs.Dr6 = (value & Dr6Writable) | Dr6Fixed; break;
                default:
                    v.DebugRegs.Dr7 = (value & Dr7Writable) | Dr7Fixed;
                    if ((value & 0xFF) != 0 && System.Threading.Interlocked.Exchange(ref v.Vm.BreakpointsReported, 1) == 0)
                    {
                        ulong f = KvmHost.LogBegin();
                        KvmHost.Write("vm ");
                        KvmHost.WriteDecimal((ulong)v.Vm.Id);
                        KvmHost.Write(": the guest armed a hardware breakpoint (DR7 ");
                        KvmHost.WriteHex(value);
                        KvmHost.Write("); guest debug registers are kept by the host, never loaded into the CPU, so it will not fire\n");
                        KvmHost.LogEnd(f);
                    }
                    break;
            }
        }
    }
}
