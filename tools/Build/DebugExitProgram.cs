using System.Buffers.Binary;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace Tandem.Build;

/// <summary>
/// <c>/bin/tandem-exit N</c> in the Linux guest's initramfs: a static x86-64 Linux program (one
/// PT_LOAD, no libc) that writes the byte N (decimal, default 0) to the debug-exit port 0xF4, so
/// that the host ends the VM with that status (QEMU's isa-debug-exit exits with N * 2 + 1). It
/// exists because Debian's cloud kernel has no /dev/port (CONFIG_DEVPORT is off): it asks for
/// the port with ioperm(2) (CONFIG_X86_IOPL_IOPERM, on in that kernel) and writes it with OUT.
/// Exit status 0 once written, 1 when ioperm is refused.
/// </summary>
internal static class DebugExitProgram
{
    public const ulong LoadAddress = 0x40_0000;
    public const int Port = 0xF4;
    public const int CodeOffset = 64 + 56;          // after the ELF header and the one program header

    private const int SysIoperm = 173, SysExit = 60;

    public static byte[] Build()
    {
        var a = new Assembler(64);
        Label parse = a.CreateLabel(), parsed = a.CreateLabel(), refused = a.CreateLabel();
        // The status: argv[1] as a decimal number (argv[1] is NULL without an argument).
        a.xor(ebx, ebx);
        a.mov(rsi, __qword_ptr[rsp + 16]);
        a.test(rsi, rsi);
        a.jz(parsed);
        a.Label(ref parse);
        a.movzx(eax, __byte_ptr[rsi]);
        a.sub(eax, '0');
        a.cmp(eax, 9);
        a.ja(parsed);                               // the NUL, or any other non-digit, ends it
        a.imul(ebx, ebx, 10);
        a.add(ebx, eax);
        a.inc(rsi);
        a.jmp(parse);
        a.Label(ref parsed);
        // ioperm(0xF4, 1, 1)
        a.mov(edi, Port);
        a.mov(esi, 1);
        a.mov(edx, 1);
        a.mov(eax, SysIoperm);
        a.syscall();
        a.test(rax, rax);
        a.jnz(refused);
        a.mov(eax, ebx);
        a.mov(edx, Port);
        a.@out(dx, al);
        a.mov(eax, SysExit);
        a.xor(edi, edi);
        a.syscall();
        a.Label(ref refused);
        a.mov(eax, SysExit);
        a.mov(edi, 1);
        a.syscall();

        using var code = new MemoryStream();
        a.Assemble(new StreamCodeWriter(code), LoadAddress + CodeOffset);
        byte[] image = new byte[CodeOffset + code.Length];
        code.ToArray().CopyTo(image, CodeOffset);
        Span<byte> h = image;
        // ELF header: ELF64, little-endian, version 1, ET_EXEC, EM_X86_64.
        h[0] = 0x7F; h[1] = (byte)'E'; h[2] = (byte)'L'; h[3] = (byte)'F';
        h[4] = 2; h[5] = 1; h[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(h[16..], 2);                       // e_type ET_EXEC
        BinaryPrimitives.WriteUInt16LittleEndian(h[18..], 62);                      // e_machine EM_X86_64
        BinaryPrimitives.WriteUInt32LittleEndian(h[20..], 1);                       // e_version
        BinaryPrimitives.WriteUInt64LittleEndian(h[24..], LoadAddress + CodeOffset); // e_entry
        BinaryPrimitives.WriteUInt64LittleEndian(h[32..], 64);                      // e_phoff
        BinaryPrimitives.WriteUInt16LittleEndian(h[52..], 64);                      // e_ehsize
        BinaryPrimitives.WriteUInt16LittleEndian(h[54..], 56);                      // e_phentsize
        BinaryPrimitives.WriteUInt16LittleEndian(h[56..], 1);                       // e_phnum
        // The one PT_LOAD, read + execute: the whole file at LoadAddress.
        Span<byte> p = h[64..];
        BinaryPrimitives.WriteUInt32LittleEndian(p, 1);                             // p_type PT_LOAD
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], 5);                        // p_flags R+X
        BinaryPrimitives.WriteUInt64LittleEndian(p[16..], LoadAddress);             // p_vaddr
        BinaryPrimitives.WriteUInt64LittleEndian(p[24..], LoadAddress);             // p_paddr
        BinaryPrimitives.WriteUInt64LittleEndian(p[32..], (ulong)image.Length);     // p_filesz
        BinaryPrimitives.WriteUInt64LittleEndian(p[40..], (ulong)image.Length);     // p_memsz
        BinaryPrimitives.WriteUInt64LittleEndian(p[48..], 0x1000);                  // p_align
        return image;
    }
}
