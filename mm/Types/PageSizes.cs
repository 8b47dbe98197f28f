namespace Tandem.Mm;

/// <summary>The x86-64 page sizes and their shifts (Intel SDM Vol. 3A, 4.5).</summary>
public static class PageSizes
{
    /// <summary>log2 of 4 KiB.</summary>
    public const int Shift4K = 12;
    /// <summary>log2 of 2 MiB.</summary>
    public const int Shift2M = 21;
    /// <summary>log2 of 1 GiB.</summary>
    public const int Shift1G = 30;
    /// <summary>4 KiB.</summary>
    public const ulong Size4K = 1UL << Shift4K;
    /// <summary>2 MiB.</summary>
    public const ulong Size2M = 1UL << Shift2M;
    /// <summary>1 GiB.</summary>
    public const ulong Size1G = 1UL << Shift1G;

    /// <summary>The size mapped by one entry at <paramref name="level"/> (1 = PTE ... 4 = PML4E).</summary>
    public static ulong ForLevel(int level) { return 1UL << (Shift4K + 9 * (level - 1)); }
}
