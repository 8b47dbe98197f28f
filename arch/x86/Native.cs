using System.Runtime;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Tandem.Arch.X86
{
    /// <summary>
    /// Every x86 instruction C# cannot express, as a call into a stub generated at build time
    /// (tools/StubGen). This file is the whole unsafe instruction surface of the kernel.
    /// </summary>
    public static unsafe class Native
    {
        [DllImport("*", EntryPoint = "tandem_inb"), SuppressGCTransition] public static extern byte InB(ushort port);
        [DllImport("*", EntryPoint = "tandem_inw"), SuppressGCTransition] public static extern ushort InW(ushort port);
        [DllImport("*", EntryPoint = "tandem_inl"), SuppressGCTransition] public static extern uint InL(ushort port);
        [DllImport("*", EntryPoint = "tandem_outb"), SuppressGCTransition] public static extern void OutB(ushort port, byte value);
        [DllImport("*", EntryPoint = "tandem_outw"), SuppressGCTransition] public static extern void OutW(ushort port, ushort value);
        [DllImport("*", EntryPoint = "tandem_outl"), SuppressGCTransition] public static extern void OutL(ushort port, uint value);

        [DllImport("*", EntryPoint = "tandem_rdmsr"), SuppressGCTransition] public static extern ulong ReadMsr(uint msr);
        [DllImport("*", EntryPoint = "tandem_wrmsr"), SuppressGCTransition] public static extern void WriteMsr(uint msr, ulong value);
        [MethodImpl(MethodImplOptions.InternalCall), RuntimeImport("*", "tandem_cpuid")] private static extern void CpuIdRaw(uint leaf, uint subleaf, uint* output);

        [DllImport("*", EntryPoint = "tandem_read_cr0"), SuppressGCTransition] public static extern ulong ReadCr0();
        [DllImport("*", EntryPoint = "tandem_read_cr2"), SuppressGCTransition] public static extern ulong ReadCr2();
        [DllImport("*", EntryPoint = "tandem_read_cr3"), SuppressGCTransition] public static extern ulong ReadCr3();
        [DllImport("*", EntryPoint = "tandem_read_cr4"), SuppressGCTransition] public static extern ulong ReadCr4();
        [DllImport("*", EntryPoint = "tandem_write_cr0"), SuppressGCTransition] public static extern void WriteCr0(ulong value);
        [DllImport("*", EntryPoint = "tandem_write_cr3"), SuppressGCTransition] public static extern void WriteCr3(ulong value);
        [DllImport("*", EntryPoint = "tandem_write_cr4"), SuppressGCTransition] public static extern void WriteCr4(ulong value);
        [DllImport("*", EntryPoint = "tandem_xgetbv"), SuppressGCTransition] public static extern ulong XGetBv(uint index);
        [DllImport("*", EntryPoint = "tandem_xsetbv"), SuppressGCTransition] public static extern void XSetBv(uint index, ulong value);

        [DllImport("*", EntryPoint = "tandem_invlpg"), SuppressGCTransition] public static extern void InvLpg(ulong address);
        [DllImport("*", EntryPoint = "tandem_lgdt"), SuppressGCTransition] public static extern void Lgdt(void* pointer);
        [DllImport("*", EntryPoint = "tandem_lidt"), SuppressGCTransition] public static extern void Lidt(void* pointer);
        [DllImport("*", EntryPoint = "tandem_sgdt"), SuppressGCTransition] public static extern void Sgdt(void* pointer);
        [DllImport("*", EntryPoint = "tandem_sidt"), SuppressGCTransition] public static extern void Sidt(void* pointer);
        [DllImport("*", EntryPoint = "tandem_ltr"), SuppressGCTransition] public static extern void Ltr(ushort selector);
        [DllImport("*", EntryPoint = "tandem_reload_segments"), SuppressGCTransition] public static extern void ReloadSegments(ushort codeSelector, ushort dataSelector);

        [DllImport("*", EntryPoint = "tandem_cli"), SuppressGCTransition] public static extern void Cli();
        [DllImport("*", EntryPoint = "tandem_sti"), SuppressGCTransition] public static extern void Sti();
        [DllImport("*", EntryPoint = "tandem_hlt"), SuppressGCTransition] public static extern void Hlt();
        [DllImport("*", EntryPoint = "tandem_sti_hlt"), SuppressGCTransition] public static extern void StiHlt();
        [DllImport("*", EntryPoint = "tandem_pause"), SuppressGCTransition] public static extern void Pause();
        [DllImport("*", EntryPoint = "tandem_rdtsc"), SuppressGCTransition] public static extern ulong Rdtsc();
        [DllImport("*", EntryPoint = "tandem_read_rflags"), SuppressGCTransition] public static extern ulong ReadRflags();
        [DllImport("*", EntryPoint = "tandem_read_rbp"), SuppressGCTransition] public static extern ulong ReadRbp();
        [DllImport("*", EntryPoint = "tandem_read_rsp"), SuppressGCTransition] public static extern ulong ReadRsp();
        [DllImport("*", EntryPoint = "tandem_int3"), SuppressGCTransition] public static extern void Int3();
        [DllImport("*", EntryPoint = "tandem_ud2"), SuppressGCTransition] public static extern void Ud2();
        [DllImport("*", EntryPoint = "tandem_wbinvd"), SuppressGCTransition] public static extern void Wbinvd();
        [DllImport("*", EntryPoint = "tandem_magic_break"), SuppressGCTransition] public static extern void MagicBreak();
        [DllImport("*", EntryPoint = "tandem_halt_forever"), SuppressGCTransition] public static extern void HaltForever();
        [DllImport("*", EntryPoint = "tandem_memset"), SuppressGCTransition] public static extern void MemSet(void* destination, byte value, ulong count);
        [DllImport("*", EntryPoint = "tandem_memcpy"), SuppressGCTransition] public static extern void MemCopy(void* destination, void* source, ulong count);

        /// <summary>Reads a quadword that may fault; returns false (and no value) if it did.</summary>
        [DllImport("*", EntryPoint = "tandem_probe_read64"), SuppressGCTransition] public static extern int ProbeRead64(ulong address, ulong* value);
        [DllImport("*", EntryPoint = "tandem_probe_write64"), SuppressGCTransition] public static extern int ProbeWrite64(ulong address, ulong value);

        // VMX (Intel SDM Vol. 3C, chapter 31). Status: 0 success, 1 VMfailInvalid, 2 VMfailValid.
        // These and CPUID are on the path of every VM exit: RuntimeImport makes each a plain call,
        // where a SuppressGCTransition P/Invoke adds a GC poll after it (a load, a compare and a
        // branch on RhpTrapThreads; the poll never has work, this kernel has no collector) and keeps
        // the JIT from inlining its caller into a loop.
        [MethodImpl(MethodImplOptions.InternalCall), RuntimeImport("*", "tandem_vmxon")] public static extern int VmxOn(ulong physicalAddress);
        [MethodImpl(MethodImplOptions.InternalCall), RuntimeImport("*", "tandem_vmxoff")] public static extern int VmxOff();
        [MethodImpl(MethodImplOptions.InternalCall), RuntimeImport("*", "tandem_vmclear")] public static extern int VmClear(ulong physicalAddress);
        [MethodImpl(MethodImplOptions.InternalCall), RuntimeImport("*", "tandem_vmptrld")] public static extern int VmPtrLd(ulong physicalAddress);
        [MethodImpl(MethodImplOptions.InternalCall), RuntimeImport("*", "tandem_vmread")] public static extern int VmRead(ulong field, ulong* value);
        [MethodImpl(MethodImplOptions.InternalCall), RuntimeImport("*", "tandem_vmwrite")] public static extern int VmWrite(ulong field, ulong value);
        [MethodImpl(MethodImplOptions.InternalCall), RuntimeImport("*", "tandem_vmx_skip_instruction")] public static extern int VmxSkipInstruction();
        [MethodImpl(MethodImplOptions.InternalCall), RuntimeImport("*", "tandem_invept")] public static extern int InvEpt(ulong type, void* descriptor);
        [MethodImpl(MethodImplOptions.InternalCall), RuntimeImport("*", "tandem_invvpid")] public static extern int InvVpid(ulong type, void* descriptor);

        /// <summary>
        /// Enters the guest whose registers (and, after them, the stub's words and the FXSAVE area at
        /// +1024) are at <paramref name="registers"/> with VMLAUNCH or VMRESUME, and returns at its
        /// next VM exit with the exit-reason field (tools/StubGen/Stubs/VmRun.cs), or
        /// <see cref="VmRunFailInvalid"/> / <see cref="VmRunFailValid"/> when the entry instruction failed.
        /// </summary>
        [MethodImpl(MethodImplOptions.InternalCall), RuntimeImport("*", "tandem_vm_run")] public static extern uint VmRun(void* registers);

        /// <summary><see cref="VmRun"/>'s results for VMfailInvalid and VMfailValid (never an exit reason).</summary>
        public const uint VmRunFailInvalid = 0xFFFF_FFFF, VmRunFailValid = 0xFFFF_FFFE;

        /// <summary>
        /// The scheduler's stack switch (interrupts off): saves the callee-saved registers and rsp to
        /// <paramref name="saveRsp"/>, clears <paramref name="prevOnCpu"/>, and resumes the thread
        /// whose stack pointer is <paramref name="newRsp"/> (tools/StubGen/Stubs/ContextSwitch.cs).
        /// </summary>
        [DllImport("*", EntryPoint = "tandem_switch"), SuppressGCTransition] public static extern void Switch(ulong* saveRsp, ulong newRsp, int* prevOnCpu);

        /// <summary>CPUID leaf/subleaf.</summary>
        public static CpuIdResult CpuId(uint leaf, uint subleaf = 0)
        {
            CpuIdResult result;
            CpuIdRaw(leaf, subleaf, (uint*)&result);
            return result;
        }
    }

    /// <summary>The four registers CPUID returns.</summary>
    public struct CpuIdResult
    {
        public uint Eax;
        public uint Ebx;
        public uint Ecx;
        public uint Edx;
    }
}
