namespace Tandem.Kvm.Mmio;

/// <summary>The port space a string port instruction (INS, OUTS) reads or writes, one element at a time.</summary>
public interface IPortIo
{
    /// <summary>Reads <paramref name="size"/> bytes (1, 2 or 4) from <paramref name="port"/>.</summary>
    uint Read(ushort port, int size);

    /// <summary>Writes the low <paramref name="size"/> bytes of <paramref name="value"/> to <paramref name="port"/>.
    /// False when the write ended the guest's run (its VM is stopping): the instruction goes no further.</summary>
    bool Write(ushort port, int size, uint value);
}
