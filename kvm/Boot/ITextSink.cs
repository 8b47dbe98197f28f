namespace Tandem.Kvm.Boot
{
    /// <summary>Where a <see cref="LoadError"/> prints itself: the kernel's log, or a string builder on the host.</summary>
    public interface ITextSink
    {
        /// <summary>Writes one character.</summary>
        void WriteChar(char c);

        /// <summary>Writes a number in hexadecimal with a 0x prefix.</summary>
        void WriteHex(ulong value);

        /// <summary>Writes a number in decimal.</summary>
        void WriteDecimal(ulong value);
    }
}
