namespace Tandem.Kvm.Mmio;

/// <summary>
/// The memory operand of a decoded instruction: <c>segment:[base + index * scale + displacement]</c>
/// computed in <see cref="AddressSize"/> bytes (SDM Vol. 2A, 2.1.5 and 2.2.1.6). Registers use the
/// SDM encoding 0 (rAX) .. 15 (r15); 16-bit addressing uses the same numbers (BX = 3, BP = 5,
/// SI = 6, DI = 7).
/// </summary>
public struct MmioMemoryOperand
{
    /// <summary><see cref="Base"/> or <see cref="Index"/> when there is no such register.</summary>
    public const byte NoRegister = 0xFF;

    /// <summary><see cref="Base"/> of a RIP-relative operand (64-bit code, mod 0, r/m 5): the
    /// displacement is relative to the address of the next instruction.</summary>
    public const byte Rip = 16;

    /// <summary>Base register (0-15), <see cref="Rip"/>, or <see cref="NoRegister"/>.</summary>
    public byte Base;

    /// <summary>Index register (0-15) or <see cref="NoRegister"/>; never 4 without REX.X (that means none).</summary>
    public byte Index;

    /// <summary>Scale applied to the index: 1, 2, 4 or 8.</summary>
    public byte Scale;

    /// <summary>Address size in bytes: 2, 4 or 8 (67 toggles it).</summary>
    public byte AddressSize;

    /// <summary>The effective segment: the override prefix, else SS for an rBP/rSP base, else DS.
    /// In 64-bit code only FS and GS have a base; the others are reported as decoded.</summary>
    public MmioSegment Segment;

    /// <summary>Displacement (or moffs offset) sign-extended to 64 bits (moffs zero-extended);
    /// only its low <see cref="AddressSize"/> bytes count.</summary>
    public long Displacement;
}
