namespace Tandem.Kvm.Mmio;

/// <summary>
/// Where the emulator's data accesses go, by guest-physical address. The VMM routes each access
/// to the device that owns the page, or to guest RAM (a <c>movs</c> may copy between RAM and a
/// device). Implemented by a struct so the emulator is specialised into direct calls.
/// </summary>
public interface IMmioBus
{
    /// <summary>Reads <paramref name="size"/> bytes (1, 2, 4 or 8) at <paramref name="gpa"/>,
    /// zero-extended into <paramref name="value"/>. False if nothing answers there.</summary>
    bool Read(ulong gpa, int size, out ulong value);

    /// <summary>Writes the low <paramref name="size"/> bytes of <paramref name="value"/> at
    /// <paramref name="gpa"/>. False if nothing answers there.</summary>
    bool Write(ulong gpa, int size, ulong value);
}
