using Tandem.Arch.X86;

namespace Tandem.Kvm.Vmx
{
    /// <summary>Reads and writes fields of the current VMCS. A failed access is a host bug: it panics.</summary>
    public static unsafe class Vmcs
    {
        public static ulong Read(ulong field)
        {
            ulong value;
            if (Native.VmRead(field, &value) != 0)
                Fail("VMREAD", field);
            return value;
        }

        public static void Write(ulong field, ulong value)
        {
            if (Native.VmWrite(field, value) != 0)
                Fail("VMWRITE", field);
        }

        private static void Fail(string what, ulong field)
        {
            ulong error = 0;
            Native.VmRead(VmcsField.InstructionError, &error);
            ulong f = KvmHost.LogBegin();
            KvmHost.Write("vmx: ");
            KvmHost.Write(what);
            KvmHost.Write(" of field ");
            KvmHost.WriteHex(field);
            KvmHost.Write(" failed, VM-instruction error ");
            KvmHost.WriteDecimal(error);
            KvmHost.WriteChar('\n');
            KvmHost.LogEnd(f);
            throw new System.InvalidOperationException("VMCS access failed");
        }

        /// <summary>
        /// Combines the controls we want with what the CPU allows (SDM Vol. 3D, A.3-A.5: the low half of
        /// the capability MSR gives the bits that must be 1, the high half the bits that may be 1).
        /// Returns false, with the missing bits, when a required control is unavailable.
        /// </summary>
        public static bool AdjustControls(uint msr, uint required, uint optional, out uint value, out uint missing)
        {
            ulong capability = Native.ReadMsr(msr);
            uint mustBeOne = (uint)capability;
            uint mayBeOne = (uint)(capability >> 32);
            missing = required & ~mayBeOne;
            value = (required | (optional & mayBeOne) | mustBeOne) & mayBeOne;
            return missing == 0;
        }

        /// <summary>
        /// CR0 as the guest sees it: the bits the CR0 guest/host mask owns come from the read shadow,
        /// the rest from the guest's real CR0 (which it changes without an exit: PE and PG, say).
        /// </summary>
        public static ulong GuestVisibleCr0()
        {
            ulong mask = Read(VmcsField.Cr0GuestHostMask);
            return (Read(VmcsField.GuestCr0) & ~mask) | (Read(VmcsField.Cr0ReadShadow) & mask);
        }

        /// <summary>CR4 as the guest sees it (as <see cref="GuestVisibleCr0"/>).</summary>
        public static ulong GuestVisibleCr4()
        {
            ulong mask = Read(VmcsField.Cr4GuestHostMask);
            return (Read(VmcsField.GuestCr4) & ~mask) | (Read(VmcsField.Cr4ReadShadow) & mask);
        }
    }
}
