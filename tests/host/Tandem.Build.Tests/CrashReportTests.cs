using Xunit;

namespace Tandem.Build.Tests;

/// <summary>
/// tools/Build/CrashReport.cs: the demangler and the code-line decoder, fed the lines the kernel
/// printed in real runs (docs/debugging.md has the same excerpts).
/// </summary>
public class CrashReportTests
{
    [Theory]
    // Symbols as ILC wrote them into tandem.elf (nm) and the kernel printed them in backtraces.
    [InlineData("kernel_Tandem_Kernel_Tests_PanicTests__Touch", "Tandem.Kernel.Tests.PanicTests.Touch")]
    [InlineData("kernel_Tandem_Kernel_KernelMain__Main", "Tandem.Kernel.KernelMain.Main")]
    [InlineData("kernel_Tandem_Kernel_Cpu__get_CurrentIndex", "Tandem.Kernel.Cpu.get_CurrentIndex")]
    [InlineData("kernel_Tandem_Kernel_Interrupts___cctor", "Tandem.Kernel.Interrupts..cctor")]
    [InlineData("kvm_Tandem_Kvm_Devices_Cmos___ctor", "Tandem.Kvm.Devices.Cmos..ctor")]
    [InlineData("kernel_Tandem_Kernel_Tests_RuntimeTests_Heptagon__get_Sides", "Tandem.Kernel.Tests.RuntimeTests.Heptagon.get_Sides")]
    [InlineData("kvm_Tandem_Kvm_Ept_EptMmu_1<kernel_Tandem_Kernel_Memory_KernelEptPlatform>__AddMemslot",
        "Tandem.Kvm.Ept.EptMmu<Tandem.Kernel.Memory.KernelEptPlatform>.AddMemslot")]
    [InlineData("kvm_Tandem_Kvm_Mmio_MmioEmulator__Step<kvm_Tandem_Kvm_Vmx_MmioExit_Bus__kvm_Tandem_Kvm_Vmx_MmioExit_GuestReader>",
        "Tandem.Kvm.Mmio.MmioEmulator.Step<Tandem.Kvm.Vmx.MmioExit.Bus, Tandem.Kvm.Vmx.MmioExit.GuestReader>")]
    [InlineData("String__get_Chars", "String.get_Chars")]
    // Not managed methods: left as they are.
    [InlineData("tandem_boot_long_mode", "tandem_boot_long_mode")]
    [InlineData("RhpNewFast", "RhpNewFast")]
    [InlineData("__managed__Startup", "__managed__Startup")]
    public void DemanglesIlcNames(string symbol, string expected) => Assert.Equal(expected, CrashReport.Demangle(symbol));

    /// <summary>The end of `./build.sh run --cmdline test=panic.page_fault` (QEMU), as the kernel printed it.</summary>
    private const string HostPanic = """
        PANIC on cpu 0: #PF page fault
        vector 14 (#PF page fault)  error code 0x2  cr2 0x0000400000000000
        #PF: error code 0x2: not-present page, write, supervisor (P=0 W/R=1 U/S=0 RSVD=0 I/D=0 PK=0 SS=0)  cr2 0x0000400000000000
        rip=0x000000000020e730  rsp=0x000000000027eec8  rflags=0x0000000000000246  cs=0x0000000000000008  
        rax=0x000000000020e720  rbx=0x0000000000282f90  rcx=0x000000000025b3b8  rdx=0x000000000025b3b8  
        rsi=0x000000000000000f  rdi=0x0000400000000000  rbp=0x000000000027ef60  r8=0x000000000020e720  
        r9=0x0000000000282fd0  r10=0x000000000000000a  r11=0x0000000000000000  r12=0x0000000000282fd0  
        r13=0x0000000000000000  r14=0x0000000000000000  r15=0x0000000000000000  cr3=0x0000000000265000  
        code: 00 cc 90 90 90 90 90 90 48 bf 00 00 00 00 00 40 00 00 e9 01 00 00 00 90 <48> c7 07 01 00 00 00 c3 90 90 90 90 90 90 90 90
        backtrace:
          0x000000000020e730  kernel_Tandem_Kernel_Tests_PanicTests__Touch+0x0
          0x0000000000206861  kernel_Tandem_Kernel_KernelMain__Main+0x3c1
          0x00000000002010f2  tandem_boot_long_mode+0x42
        tandem: exit status 3
        """;

    [Fact]
    public void HostPanicShowsTheTrappingInstructionAtRip()
    {
        string decoded = CrashReport.Decode(HostPanic.Replace("\n", "\r\n"))!;
        Assert.NotNull(decoded);
        Assert.Contains("code at rip 0x20e730 (64-bit):", decoded);
        // The store through rdi that faulted on cr2, marked; the load of rdi and the jump before it.
        Assert.Contains("  * 0x20e730  48 c7 07 01 00 00 00", decoded);
        Assert.Contains("mov     qword ptr [rdi], 1   <-- trapping instruction", decoded);
        Assert.Contains("    0x20e720  48 bf 00 00 00 00 00 40 00 00", decoded);
        Assert.Contains("mov     rdi, 0x400000000000", decoded);
        Assert.Contains("    0x20e72a  e9 01 00 00 00", decoded);
        Assert.Contains("    0x20e737  c3", decoded);
        Assert.Single(decoded.Split('\n'), l => l.Contains("<-- trapping instruction"));
    }

    [Fact]
    public void HostPanicBacktraceIsDemangled()
    {
        string decoded = CrashReport.Decode(HostPanic)!;
        Assert.Contains("backtrace:\n  0x000000000020e730  Tandem.Kernel.Tests.PanicTests.Touch+0x0\n" +
            "  0x0000000000206861  Tandem.Kernel.KernelMain.Main+0x3c1\n  0x00000000002010f2  tandem_boot_long_mode+0x42\n",
            decoded.Replace("\r\n", "\n"));
    }

    [Fact]
    public void TheMarkedByteDecidesTheTrappingInstruction()
    {
        // The mark inside the 7-byte mov: no start before it decodes to a boundary there, so the
        // decoder starts at the marked byte and marks it, never the mov that starts 3 bytes earlier.
        string decoded = CrashReport.DecodeCode(" 90 90 48 c7 07 <01> 00 00 00 c3", 64, 0x1005);
        Assert.DoesNotContain("* 0x1002", decoded);
        Assert.Contains("* 0x1005", decoded);
    }

    [Fact]
    public void UnreadableCodeLineDecodesNothing()
    {
        Assert.Null(CrashReport.Decode("code: unreadable at rip 0x0000400000000000\ntandem: exit status 3\n"));
    }

    /// <summary>crash32's stop dump from `./build.sh run --emulator bochs --cmdline test=vmx.stop_dump_names_the_exit_and_shows_code`.</summary>
    private const string VmStop = """
        vm 1: stopped: guest triple fault
          exit reason 2 (triple-fault)  qualification 0x0
          rip 0x100033  rsp 0xffffc0  rflags 0x10046  vcpu 0  exits 18
          cr0 0x60000031  cr2 0x0  cr3 0x0  cr4 0x0  efer 0x0  32-bit
          es sel 0x10 base 0x0 limit 0xffffffff ar 0xc093
          cs sel 0x8 base 0x0 limit 0xffffffff ar 0xc09b
          ss sel 0x10 base 0x0 limit 0xffffffff ar 0xc093
          ds sel 0x10 base 0x0 limit 0xffffffff ar 0xc093
          fs sel 0x10 base 0x0 limit 0xffffffff ar 0xc093
          gs sel 0x10 base 0x0 limit 0xffffffff ar 0xc093
          tr sel 0x18 base 0x0 limit 0x67 ar 0x8b
          ldtr sel 0x0 base 0x0 limit 0xffffffff ar 0x10000
          gdtr base 0x0 limit 0xffff  idtr base 0x0 limit 0xffff
          rax 0x0  rbx 0x1  rcx 0x0  rdx 0x3f8
          rsi 0x10001f  rdi 0x0  rbp 0x0
          code (32-bit): 61 73 68 0a 00 be 10 00 10 00 66 ba f8 03 8a 06 84 c0 74 04 ee 46 eb f6 <0f> 0b 00 00 00 00 00 00 00 00 00 00 00 00 00 00
        """;

    [Fact]
    public void VmStopDumpShowsUd2AtRipIn32BitCode()
    {
        string decoded = CrashReport.Decode(VmStop)!;
        Assert.Contains("code at rip 0x100033 (32-bit):", decoded);
        Assert.Contains("  * 0x100033  0f 0b", decoded);
        Assert.Contains("ud2   <-- trapping instruction", decoded);
        // The print loop before it, decoded as 32-bit code: out dx, al; inc esi; jmp back.
        Assert.Contains("    0x10002f  ee", decoded);
        Assert.Contains("out     dx, al", decoded);
        Assert.Contains("    0x100031  eb f6", decoded);
        Assert.Contains("jmp     0x100029", decoded);
    }

    [Fact]
    public void GuestCodeLineIsDecodedInItsOwnMode()
    {
        // 32-bit: "66 b8" is mov ax, imm16 here, and 0f 0b is ud2 in every mode.
        string decoded = CrashReport.DecodeCode(" 66 b8 34 12 <0f> 0b f4", 32, 0x100a);
        Assert.Contains("    0x1006  66 b8 34 12", decoded);
        Assert.Contains("mov     ax, 0x1234", decoded);
        Assert.Contains("  * 0x100a  0f 0b", decoded);
        Assert.Contains("ud2", decoded);
        Assert.Contains("(32-bit)", decoded);
    }
}
