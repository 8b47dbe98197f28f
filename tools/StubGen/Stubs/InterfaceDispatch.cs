using Tandem.StubGen.Elf;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Stubs;

/// <summary>
/// Interface dispatch for ILC's code. A call site does <c>lea r11, [cell]; call [r11]</c>, where the
/// cell is {stub, cache}: the stub starts as <c>RhpInitialDynamicInterfaceDispatch</c>, which asks the
/// C# resolver (runtime/Internal/Runtime/InterfaceDispatch.cs) for the target. The resolver then
/// points the cell's cache at a block {MethodTable, target} and its stub at
/// <c>tandem_interface_dispatch_cached</c>, so later calls with the same receiver type jump
/// straight to the target.
/// </summary>
internal static class InterfaceDispatch
{
    public const string ResolverSymbol = "tandem_resolve_interface";

    /// <summary>
    /// <c>RhpInitialDynamicInterfaceDispatch</c>: r11 = cell, rdi = this, other arguments in rsi, rdx,
    /// rcx, r8, r9 and xmm0-7. Saves them all, calls the resolver (this, cell) → target, restores,
    /// tail-jumps to the target as if the caller had called it directly.
    /// </summary>
    public static void Initial(ObjectBuilder o)
    {
        var c = new CodeBlock(64);
        var a = c.A;
        c.Symbol("RhpInitialDynamicInterfaceDispatch");
        // On entry rsp % 16 == 8 (the call pushed the return address).
        a.push(rdi);
        a.push(rsi);
        a.push(rdx);
        a.push(rcx);
        a.push(r8);
        a.push(r9);
        a.push(r11);                               // 7 pushes: rsp % 16 == 0
        a.sub(rsp, 128);                           // xmm0-7 (float arguments)
        for (int i = 0; i < 8; i++)
            a.movdqu(__xmmword_ptr[rsp + i * 16], XmmRegister(i));
        a.mov(rsi, r11);                           // arg 1: the cell; arg 0 (rdi) is still `this`
        a.call(0UL);                               // rax = tandem_resolve_interface(this, cell)
        c.Reloc(Field.Immediate, RelocType.Plt32, ResolverSymbol);
        for (int i = 0; i < 8; i++)
            a.movdqu(XmmRegister(i), __xmmword_ptr[rsp + i * 16]);
        a.add(rsp, 128);
        a.pop(r11);
        a.pop(r9);
        a.pop(r8);
        a.pop(rcx);
        a.pop(rdx);
        a.pop(rsi);
        a.pop(rdi);
        a.jmp(rax);                                // the implementation returns to our caller
        o.Emit(o.Text, c);
    }

    /// <summary>
    /// <c>tandem_interface_dispatch_cached</c>: the monomorphic fast path. cell.cache points at
    /// {MethodTable, target}; if `this` has that type, jump to the target, else take the slow path.
    /// </summary>
    public static void Cached(ObjectBuilder o)
    {
        var c = new CodeBlock(64);
        var a = c.A;
        c.Symbol("tandem_interface_dispatch_cached");
        var miss = a.CreateLabel();
        a.mov(rax, __qword_ptr[r11 + 8]);          // the cache block (written before the stub: TSO order)
        a.mov(r10, __qword_ptr[rdi]);              // this->MethodTable (a null `this` faults here)
        a.cmp(r10, __qword_ptr[rax]);
        a.jne(miss);
        a.jmp(__qword_ptr[rax + 8]);               // cached target
        a.Label(ref miss);
        a.jmp(0UL);                                // different type: resolve (without re-caching)
        c.Reloc(Field.Immediate, RelocType.Plt32, "RhpInitialDynamicInterfaceDispatch");
        o.Emit(o.Text, c);
    }

    /// <summary><c>nint tandem_interface_dispatch_cached_address()</c>: the cached stub's address, for the resolver.</summary>
    public static void CachedAddress(ObjectBuilder o)
    {
        var c = new CodeBlock(64);
        c.Symbol("tandem_interface_dispatch_cached_address");
        c.LeaRipRelative(rax, "tandem_interface_dispatch_cached");
        c.A.ret();
        o.Emit(o.Text, c);
    }

    private static Iced.Intel.AssemblerRegisterXMM XmmRegister(int i) => i switch
    {
        0 => xmm0,
        1 => xmm1,
        2 => xmm2,
        3 => xmm3,
        4 => xmm4,
        5 => xmm5,
        6 => xmm6,
        _ => xmm7,
    };
}
