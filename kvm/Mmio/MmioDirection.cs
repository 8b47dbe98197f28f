namespace Tandem.Kvm.Mmio;

/// <summary>Which way data moves between the memory operand and the other operand.</summary>
public enum MmioDirection : byte
{
    /// <summary>The memory operand is the source; the register is the destination (or, for
    /// <c>cmp</c>, the first operand: <c>cmp reg, [mem]</c>).</summary>
    ToRegister,

    /// <summary>The memory operand is the destination (or, for <c>cmp</c>/<c>test</c>, the
    /// first operand); the source is the register or the immediate.</summary>
    ToMemory,

    /// <summary><c>xchg</c>: both ways.</summary>
    Exchange,
}
