namespace Tandem.Mm;

/// <summary>Access rights of a mapping. Read is implied by presence.</summary>
public enum PageProt
{
    /// <summary>Read only, supervisor, no execute.</summary>
    Read = 0,
    /// <summary>Writes allowed.</summary>
    Write = 1,
    /// <summary>Instruction fetches allowed.</summary>
    Execute = 2,
    /// <summary>User-mode accesses allowed.</summary>
    User = 4,
}
