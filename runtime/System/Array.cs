namespace System
{
    /// <summary>Single-dimensional arrays. The layout (length, padding, elements) is a contract with ILC.</summary>
    public abstract class Array
    {
#pragma warning disable CS0169, CS0649
        private readonly int _length;
        private readonly int _padding;
#pragma warning restore CS0169, CS0649

        public int Length => _length;
    }

    // ILC models T[] as deriving from Array<T>.
#pragma warning disable CA1812
    internal class Array<T> : Array { }
#pragma warning restore CA1812
}
