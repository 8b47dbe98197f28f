namespace Tandem.Kvm.Boot
{
    /// <summary>
    /// Where a loader writes guest RAM. The loaders check every range against the
    /// <see cref="GuestMemoryMap"/> before they call these, so a call outside RAM is a loader bug;
    /// an implementation still refuses it (returns false) rather than writing.
    /// </summary>
    public unsafe interface IGuestRam
    {
        /// <summary>Copies <paramref name="length"/> bytes from <paramref name="source"/> to guest-physical <paramref name="gpa"/>; false if it could not.</summary>
        bool Write(ulong gpa, byte* source, ulong length);

        /// <summary>Zeroes <paramref name="length"/> bytes of guest RAM at <paramref name="gpa"/>; false if it could not.</summary>
        bool Zero(ulong gpa, ulong length);
    }
}
