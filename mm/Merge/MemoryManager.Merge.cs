namespace Tandem.Mm;

public sealed partial class MemoryManager<TPlatform>
{
    /// <summary>Counters of page merging (mm/Merge; copy-on-write breaks are counted by the fault path).</summary>
    public readonly MergeStats MergeStats = new MergeStats();
}
