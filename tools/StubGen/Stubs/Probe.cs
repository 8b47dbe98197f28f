using Tandem.StubGen.Elf;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.StubGen.Stubs;

/// <summary>
/// Fault-probing memory accessors and their exception table (the idea of Linux's <c>__ex_table</c>).
/// </summary>
/// <remarks>
/// Rules for using this: <c>tandem_extable</c> holds <c>tandem_extable_count</c> pairs
/// <c>(u64 fault_rip, u64 fixup_rip)</c>. When an exception (#PF, #GP...) arrives with frame.rip equal to
/// a fault_rip, the handler sets frame.rip = fixup_rip and returns; the fixup makes the probe return 1.
/// Only the one access instruction of each probe is listed; the probes touch nothing on the stack
/// before it, so the fixup's <c>ret</c> returns to the probe's caller.
/// </remarks>
internal static class Probe
{
    /// <summary><c>int tandem_probe_read64(ulong addr, ulong* value)</c>: 0 and *value = [addr], or 1 if the read faulted.</summary>
    public static (string Fault, string Fixup) Read64(ObjectBuilder o)
    {
        const string name = "tandem_probe_read64";
        var c = new CodeBlock(64);
        var a = c.A;
        c.Symbol(name);
        c.LocalLabel(name + ".fault");
        a.mov(rax, __qword_ptr[rdi]);              // may fault → extable
        a.mov(__qword_ptr[rsi], rax);
        a.xor(eax, eax);
        a.ret();
        c.LocalLabel(name + ".fixup");
        a.mov(eax, 1);
        a.ret();
        o.Emit(o.Text, c);
        return (name + ".fault", name + ".fixup");
    }

    /// <summary><c>int tandem_probe_write64(ulong addr, ulong value)</c>: 0 after [addr] = value, or 1 if the write faulted.</summary>
    public static (string Fault, string Fixup) Write64(ObjectBuilder o)
    {
        const string name = "tandem_probe_write64";
        var c = new CodeBlock(64);
        var a = c.A;
        c.Symbol(name);
        c.LocalLabel(name + ".fault");
        a.mov(__qword_ptr[rdi], rsi);              // may fault → extable
        a.xor(eax, eax);
        a.ret();
        c.LocalLabel(name + ".fixup");
        a.mov(eax, 1);
        a.ret();
        o.Emit(o.Text, c);
        return (name + ".fault", name + ".fixup");
    }

    /// <summary><c>tandem_extable</c> (pairs of absolute addresses) and <c>tandem_extable_count</c>.</summary>
    public static void Table(ObjectBuilder o, IReadOnlyList<(string Fault, string Fixup)> entries)
    {
        var d = new DataBlock();
        d.Symbol("tandem_extable", size: (ulong)entries.Count * 16);
        foreach (var (fault, fixup) in entries)
        {
            d.Address64(fault);
            d.Address64(fixup);
        }
        d.Symbol("tandem_extable_count", size: 8);
        d.U64((ulong)entries.Count);
        o.Emit(o.Rodata, d, alignment: 8);
    }
}
