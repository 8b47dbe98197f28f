using Iced.Intel;
using Tandem.StubGen.Elf;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Stubs;

/// <summary>
/// Interrupt and exception entry: 256 per-vector stubs, one common body, and <c>tandem_isr_table</c>.
/// </summary>
/// <remarks>
/// The frame passed to <c>void tandem_interrupt(InterruptFrame* frame)</c>, lowest address first, 22 u64s:
/// r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax, vector, error_code,
/// rip, cs, rflags, rsp, ss. The last five are the CPU's IA-32e interrupt frame (SDM Vol. 3A 7.14.2
/// "64-Bit Mode Stack Frame"). Every field is written back on return, so the handler may edit any of
/// them (rip for extable fixups, rax for results...).
/// The interrupted code's x87/SSE state is saved with FXSAVE64 in a 512-byte area below the frame (not
/// part of the frame) and restored before IRETQ, because the C# handler is free to use xmm registers.
/// </remarks>
internal static class Interrupts
{
    public const string HandlerSymbol = "tandem_interrupt";
    private const string CommonSymbol = "tandem_isr_common";

    /// <summary>Vectors for which the CPU pushes an error code (SDM Vol. 3A 7.15, table 7-1 / "Error Code").</summary>
    private static readonly int[] s_errorCodeVectors = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];

    /// <summary>
    /// The 256 entry stubs: [push 0 when the CPU pushes no error code]; push vector; jmp common body.
    /// Emitted in the same block as the common body so the jumps need no relocation.
    /// </summary>
    public static void Stubs(ObjectBuilder o)
    {
        var c = new CodeBlock(64);
        var a = c.A;
        var common = a.CreateLabel(CommonSymbol);
        for (int vector = 0; vector < 256; vector++)
        {
            c.Symbol($"tandem_isr_stub_{vector}", SymbolKind.Function, global: false);
            if (Array.IndexOf(s_errorCodeVectors, vector) < 0)
                a.push(0);                         // dummy error code keeps the frame uniform
            a.push(vector);                        // imm8 below 128, else imm32 (sign-extension keeps it positive)
            a.jmp(common);
        }
        CommonBody(c, common);
        o.Emit(o.Text, c);
    }

    /// <summary>The common body: save GPRs, call the C# handler on an aligned stack, restore, IRETQ.</summary>
    private static void CommonBody(CodeBlock c, Label common)
    {
        var a = c.A;
        c.Place(common, CommonSymbol, SymbolKind.Function, global: false);
        // Push order makes r15 the lowest address (the frame layout in the class remarks).
        a.push(rax);
        a.push(rbx);
        a.push(rcx);
        a.push(rdx);
        a.push(rsi);
        a.push(rdi);
        a.push(rbp);
        a.push(r8);
        a.push(r9);
        a.push(r10);
        a.push(r11);
        a.push(r12);
        a.push(r13);
        a.push(r14);
        a.push(r15);
        a.cld();                                   // SysV: DF must be clear on function entry
        a.mov(rdi, rsp);                           // arg 0: InterruptFrame*
        a.mov(rbx, rsp);                           // rbx is callee-saved: survives the call
        a.and(rsp, -16);                           // the CPU aligns to 16 only in 64-bit IDT delivery; be sure
        a.sub(rsp, 512);                           // FXSAVE area, 16-byte aligned (SDM Vol. 1 10.5.1)
        a.fxsave64(__[rsp]);                       // interrupted code's x87/SSE state
        a.call(0UL);                               // tandem_interrupt(frame); rsp % 16 == 0 here
        c.Reloc(Field.Immediate, RelocType.Plt32, HandlerSymbol);
        a.fxrstor64(__[rsp]);
        a.mov(rsp, rbx);                           // back to the frame (possibly edited by the handler)
        a.pop(r15);
        a.pop(r14);
        a.pop(r13);
        a.pop(r12);
        a.pop(r11);
        a.pop(r10);
        a.pop(r9);
        a.pop(r8);
        a.pop(rbp);
        a.pop(rdi);
        a.pop(rsi);
        a.pop(rdx);
        a.pop(rcx);
        a.pop(rbx);
        a.pop(rax);
        a.add(rsp, 16);                            // drop vector and error code
        a.iretq();
    }

    /// <summary><c>tandem_isr_table</c>: 256 absolute stub addresses, for building the IDT.</summary>
    public static void Table(ObjectBuilder o)
    {
        var d = new DataBlock();
        d.Symbol("tandem_isr_table");
        for (int vector = 0; vector < 256; vector++)
            d.Address64($"tandem_isr_stub_{vector}");
        o.Emit(o.Rodata, d, alignment: 8);
    }
}
