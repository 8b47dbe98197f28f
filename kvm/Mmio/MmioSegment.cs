namespace Tandem.Kvm.Mmio;

/// <summary>Segment registers by their SDM encoding (Vol. 2A, Table 3-6 "Sreg").</summary>
public enum MmioSegment : byte
{
    /// <summary>ES (prefix 26).</summary>
    Es = 0,

    /// <summary>CS (prefix 2E).</summary>
    Cs = 1,

    /// <summary>SS (prefix 36; the default with an rBP or rSP base).</summary>
    Ss = 2,

    /// <summary>DS (prefix 3E; the default).</summary>
    Ds = 3,

    /// <summary>FS (prefix 64).</summary>
    Fs = 4,

    /// <summary>GS (prefix 65).</summary>
    Gs = 5,
}
