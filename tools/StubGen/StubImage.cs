using Tandem.StubGen.Stubs;

namespace Tandem.StubGen;

/// <summary>
/// Tandem's hand-written machine code, generated with Iced: the multiboot2 header, the boot path
/// (<c>_start</c>), the AP trampoline, interrupt entry stubs, fault-probing accessors with their
/// exception table, instruction wrappers, VMX wrappers and the VM entry/exit stub.
/// </summary>
public static class StubImage
{
    /// <summary>
    /// Builds the ELF64 x86-64 relocatable object (ET_REL) holding every stub, ready for ld.lld with
    /// linker.ld. Deterministic: every call returns the same bytes.
    /// </summary>
    public static byte[] BuildObject()
    {
        var o = new ObjectBuilder();

        Boot.MultibootHeader(o);
        Boot.Data(o);
        Boot.Start32(o);
        Boot.Start64(o);
        ApTrampoline.Emit(o);

        Interrupts.Stubs(o);
        Interrupts.Table(o);

        var extable = new List<(string Fault, string Fixup)> { Probe.Read64(o), Probe.Write64(o) };
        Probe.Table(o, extable);

        InterfaceDispatch.Initial(o);
        InterfaceDispatch.Cached(o);
        InterfaceDispatch.CachedAddress(o);

        Instructions.Inb(o);
        Instructions.Inw(o);
        Instructions.Inl(o);
        Instructions.Outb(o);
        Instructions.Outw(o);
        Instructions.Outl(o);
        Instructions.Rdmsr(o);
        Instructions.Wrmsr(o);
        Instructions.Cpuid(o);
        Instructions.ReadCr0(o);
        Instructions.ReadCr2(o);
        Instructions.ReadCr3(o);
        Instructions.ReadCr4(o);
        Instructions.WriteCr0(o);
        Instructions.WriteCr3(o);
        Instructions.WriteCr4(o);
        Instructions.Xgetbv(o);
        Instructions.Xsetbv(o);
        Instructions.Invlpg(o);
        Instructions.Lgdt(o);
        Instructions.Lidt(o);
        Instructions.Sgdt(o);
        Instructions.Sidt(o);
        Instructions.Ltr(o);
        Instructions.ReloadSegments(o);
        Instructions.Cli(o);
        Instructions.Sti(o);
        Instructions.Hlt(o);
        Instructions.StiHlt(o);
        Instructions.Pause(o);
        Instructions.Rdtsc(o);
        Instructions.ReadRflags(o);
        Instructions.ReadRbp(o);
        Instructions.ReadRsp(o);
        Instructions.Int3(o);
        Instructions.Ud2(o);
        Instructions.Wbinvd(o);
        Instructions.MagicBreak(o);
        Instructions.HaltForever(o);
        Instructions.Memset(o);
        Instructions.Memcpy(o);

        Vmx.Vmxon(o);
        Vmx.Vmclear(o);
        Vmx.Vmptrld(o);
        Vmx.Vmxoff(o);
        Vmx.Vmread(o);
        Vmx.Vmwrite(o);
        Vmx.SkipInstruction(o);
        Vmx.Invept(o);
        Vmx.Invvpid(o);
        VmRun.Emit(o);
        ContextSwitch.Emit(o);

        foreach (var symbol in Addresses.Symbols)
            Addresses.Getter(o, symbol);

        return o.Write();
    }
}
