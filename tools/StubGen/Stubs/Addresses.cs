using Tandem.StubGen.Elf;

namespace Tandem.StubGen.Stubs;

/// <summary>
/// <c>void* &lt;symbol&gt;_addr()</c> getters for the data symbols. C# compiled by ILC can call an
/// external function (<c>[DllImport("*")] static extern</c>) but cannot name an external data symbol,
/// so each exported object also gets a function returning its address.
/// </summary>
internal static class Addresses
{
    /// <summary>The data symbols that get a getter.</summary>
    public static readonly string[] Symbols =
    [
        "tandem_isr_table", "tandem_extable", "tandem_extable_count", "tandem_boot_pml4", "tandem_boot_stack",
        "tandem_ap_trampoline", "tandem_ap_trampoline_end",
    ];

    /// <summary><c>void* {symbol}_addr()</c>: lea rax, [rip + symbol]; ret.</summary>
    public static void Getter(ObjectBuilder o, string symbol)
    {
        var c = new CodeBlock(64);
        c.Symbol(symbol + "_addr");
        c.LeaRipRelative(Iced.Intel.Register.RAX, symbol);
        c.A.ret();
        o.Emit(o.Text, c);
    }
}
