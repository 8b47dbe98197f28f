using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Stubs;

/// <summary>
/// <c>void tandem_switch(ulong* saveRsp, ulong newRsp, int* prevOnCpu)</c>: the kernel scheduler's
/// stack switch between two kernel threads.
/// </summary>
/// <remarks>
/// Rules for using this:
/// <list type="bullet">
/// <item>Call with interrupts disabled. Only the SysV callee-saved registers (rbx, rbp, r12-r15) and
/// rsp are switched: the call itself tells the compiler that every other register is clobbered.
/// x87/SSE state is not switched: a thread switches only at a call (voluntarily, or from an interrupt
/// handler whose entry stub saved the interrupted code's FXSAVE image on that thread's own stack), and
/// MXCSR and the x87 control word are never changed by the kernel.</item>
/// <item>The outgoing thread's stack pointer is stored to <c>*saveRsp</c>, then <c>*prevOnCpu</c> is set
/// to 0: from that store on, another CPU may switch to the outgoing thread. x86 keeps stores in order
/// (SDM Vol. 3A 10.2.3.2), so a CPU that reads 0 there also sees the saved rsp and the saved registers
/// below it.</item>
/// <item>A new thread's stack holds, from <c>newRsp</c> up: r15, r14, r13, r12, rbx, rbp (six
/// qwords), then the address the final <c>ret</c> jumps to.</item>
/// </list>
/// </remarks>
internal static class ContextSwitch
{
    public static void Emit(ObjectBuilder o) => Instructions.Function(o, "tandem_switch", a =>
    {
        a.push(rbp);
        a.push(rbx);
        a.push(r12);
        a.push(r13);
        a.push(r14);
        a.push(r15);
        a.mov(__qword_ptr[rdi], rsp);              // the outgoing thread's resume point
        a.mov(__dword_ptr[rdx], 0);                // ... published: it may now run elsewhere
        a.mov(rsp, rsi);
        a.pop(r15);
        a.pop(r14);
        a.pop(r13);
        a.pop(r12);
        a.pop(rbx);
        a.pop(rbp);
        a.ret();
    });
}
