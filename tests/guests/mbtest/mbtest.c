/*
 * mbtest: a multiboot (v1) test kernel built with the Debian toolchain, no Tandem code, the way
 * small hypervisor test kernels are built. Linked at 4 MiB (link.ld). It prints on COM1, checks
 * the boot loader's magic and information block (memory, command line, loader name), reads the
 * CPU count and the signature from fw_cfg, finds the file opt/tandem/greeting in fw_cfg's
 * directory (given with vm=mbtest,fwcfg=opt/tandem/greeting:mbtest-greeting) and checks its
 * contents, checks fw_cfg's command line (keys 0x14, 0x15), etc/acpi/rsdp (against the RSDP in
 * RAM) and etc/e820 (against the multiboot memory map), reads its xAPIC ID and, with more vCPUs, starts every AP with INIT-SIPI-SIPI (a
 * real-mode trampoline copied to 0x8000; each AP sets its bit and parks), and ends through the
 * debug-exit port 0xF4 with the number of the first check that failed, or 0.
 */

#define MB_MAGIC 0x1BADB002u
#define MB_FLAGS 0x00000003u /* modules page-aligned, memory information wanted */

__attribute__((section(".multiboot"), used, aligned(4)))
static const unsigned int multiboot_header[3] = { MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS) };

struct multiboot_info {
    unsigned int flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    unsigned int syms[4];
    unsigned int mmap_length, mmap_addr, drives_length, drives_addr, config_table, boot_loader_name;
};

static inline void outb(unsigned short port, unsigned char v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(unsigned short port, unsigned short v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(unsigned short port, unsigned int v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline unsigned char inb(unsigned short port)
{
    unsigned char v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static void putc(char c)
{
    while (!(inb(0x3FD) & 0x20))
        ;
    outb(0x3F8, (unsigned char)c);
}

static void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

static void putdec(unsigned int v)
{
    char buf[12];
    int i = 0;
    do {
        buf[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        putc(buf[--i]);
}

static int same(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static unsigned int be32(void)
{
    unsigned int v = 0;
    for (int i = 0; i < 4; i++)
        v = (v << 8) | inb(0x511);
    return v;
}

static unsigned int le32(void)
{
    unsigned int v = 0;
    for (int i = 0; i < 4; i++)
        v |= (unsigned int)inb(0x511) << (8 * i);
    return v;
}

static unsigned int be16(void)
{
    unsigned int v = inb(0x511);
    return (v << 8) | inb(0x511);
}

static volatile unsigned int *const lapic = (volatile unsigned int *)0xFEE00000u;

/* Set by each AP (bit = its APIC ID) in ap_entry32. */
volatile unsigned int ap_mask;

extern const unsigned char ap_tramp_start[], ap_tramp_end[];

static void spin(unsigned int n)
{
    for (unsigned int i = 0; i < n; i++)
        __asm__ volatile("pause");
}

static void __attribute__((noreturn)) finish(unsigned int status)
{
    puts(status == 0 ? "mbtest: all checks passed\n" : "mbtest: CHECK FAILED\n");
    outl(0xF4, status);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void kmain(unsigned int magic, const struct multiboot_info *mbi)
{
    puts("mbtest: a multiboot kernel built with gcc, linked at 4 MiB\n");
    if (magic != 0x2BADB002u)
        finish(1);
    if (!(mbi->flags & 1) || mbi->mem_lower < 512 || mbi->mem_lower > 640 || mbi->mem_upper < 1024)
        finish(2);
    puts("mbtest: mem_upper ");
    putdec(mbi->mem_upper);
    puts(" KiB\n");
    if (!(mbi->flags & 4))
        finish(3);
    puts("mbtest: cmdline '");
    puts((const char *)mbi->cmdline);
    puts("'\n");
    if (!same((const char *)mbi->cmdline, "hello from the command line"))
        finish(4);
    if (!(mbi->flags & (1u << 6)) || mbi->mmap_length == 0)
        finish(5);
    if (!(mbi->flags & (1u << 9)))
        finish(6);
    puts("mbtest: boot loader '");
    puts((const char *)mbi->boot_loader_name);
    puts("'\n");

    outw(0x510, 0x0000); /* fw_cfg signature */
    if (inb(0x511) != 'Q' || inb(0x511) != 'E' || inb(0x511) != 'M' || inb(0x511) != 'U')
        finish(7);
    outw(0x510, 0x0005); /* fw_cfg CPU count, 16-bit little-endian */
    unsigned int cpus = inb(0x511);
    cpus |= (unsigned int)inb(0x511) << 8;
    puts("mbtest: cpus from fw_cfg ");
    putdec(cpus);
    puts("\n");
    if (cpus < 1 || cpus > 8)
        finish(8);

    /* fw_cfg's file directory (key 0x19): a big-endian count, then 64-byte entries: size (BE32),
     * key (BE16), reserved (BE16), name[56]. */
    outw(0x510, 0x0019);
    unsigned int files = be32();
    unsigned int greetingSize = 0, greetingKey = 0, rsdpSize = 0, rsdpKey = 0, e820Size = 0, e820Key = 0;
    for (unsigned int i = 0; i < files && i < 64; i++) {
        char name[56];
        unsigned int size = be32();
        unsigned int key = be16();
        be16();
        for (int k = 0; k < 56; k++)
            name[k] = (char)inb(0x511);
        name[55] = 0;
        if (same(name, "opt/tandem/greeting")) {
            greetingSize = size;
            greetingKey = key;
        }
        if (same(name, "etc/acpi/rsdp")) {
            rsdpSize = size;
            rsdpKey = key;
        }
        if (same(name, "etc/e820")) {
            e820Size = size;
            e820Key = key;
        }
    }
    if (greetingKey == 0) {
        puts("mbtest: no fw_cfg file opt/tandem/greeting (run with vm=mbtest,fwcfg=opt/tandem/greeting:mbtest-greeting)\n");
        finish(9);
    }
    char greeting[64];
    if (greetingSize >= sizeof greeting)
        finish(10);
    outw(0x510, (unsigned short)greetingKey);
    for (unsigned int k = 0; k < greetingSize; k++)
        greeting[k] = (char)inb(0x511);
    greeting[greetingSize] = 0;
    puts("mbtest: fw_cfg opt/tandem/greeting: ");
    puts(greeting);
    if (!same(greeting, "hello from fw_cfg\n"))
        finish(10);

    /* 13: fw_cfg's command line (key 0x14: its size with the NUL, u32 LE; key 0x15: the bytes and
     * the NUL) is the one the boot loader gave. */
    const char *mbCmdline = (const char *)mbi->cmdline;
    unsigned int mbCmdlineLength = 0;
    while (mbCmdline[mbCmdlineLength])
        mbCmdlineLength++;
    outw(0x510, 0x0014);
    unsigned int cmdlineSize = le32();
    char line[64];
    if (cmdlineSize != mbCmdlineLength + 1 || cmdlineSize > sizeof line)
        finish(13);
    outw(0x510, 0x0015);
    for (unsigned int k = 0; k < cmdlineSize; k++)
        line[k] = (char)inb(0x511);
    if (line[cmdlineSize - 1] != 0 || !same(line, mbCmdline))
        finish(13);
    puts("mbtest: fw_cfg command line '");
    puts(line);
    puts("'\n");

    /* 14: etc/acpi/rsdp holds the RSDP a legacy scan of 0xE0000-0xFFFFF finds in RAM. */
    const unsigned char *rsdp = 0;
    for (unsigned int a = 0xE0000; a < 0x100000 && !rsdp; a += 16) {
        const unsigned char *p = (const unsigned char *)a;
        if (p[0] == 'R' && p[1] == 'S' && p[2] == 'D' && p[3] == ' ' && p[4] == 'P' && p[5] == 'T' && p[6] == 'R' && p[7] == ' ')
            rsdp = p;
    }
    if (rsdp == 0 || rsdpKey == 0 || rsdpSize != 36)
        finish(14);
    outw(0x510, (unsigned short)rsdpKey);
    for (unsigned int k = 0; k < 36; k++)
        if (inb(0x511) != rsdp[k])
            finish(14);

    /* 15: etc/e820 has the multiboot memory map's entries, in its order, with its types. */
    if (e820Key == 0 || e820Size % 20 != 0)
        finish(15);
    outw(0x510, (unsigned short)e820Key);
    unsigned int entries = 0;
    for (unsigned int at = mbi->mmap_addr; at < mbi->mmap_addr + mbi->mmap_length; entries++) {
        const unsigned int *e = (const unsigned int *)at;
        if (entries >= e820Size / 20)
            finish(15);
        unsigned int baseLo = le32(), baseHi = le32(), lengthLo = le32(), lengthHi = le32(), type = le32();
        if (baseLo != e[1] || baseHi != e[2] || lengthLo != e[3] || lengthHi != e[4] || type != e[5])
            finish(15);
        at += e[0] + 4;
    }
    if (entries != e820Size / 20)
        finish(15);
    puts("mbtest: fw_cfg etc/acpi/rsdp and etc/e820 agree with RAM and the multiboot map (");
    putdec(entries);
    puts(" entries)\n");

    /* The xAPIC (0xFEE00000): this CPU's ID, then INIT-SIPI-SIPI to APs 1 .. cpus-1. */
    unsigned int id = lapic[0x20 / 4] >> 24;
    puts("mbtest: xapic id ");
    putdec(id);
    puts("\n");
    if (id != 0)
        finish(11);
    if (cpus > 1) {
        unsigned char *to = (unsigned char *)0x8000;
        for (const unsigned char *from = ap_tramp_start; from < ap_tramp_end; from++)
            *to++ = *from;
        lapic[0xF0 / 4] = 0x1FF;                      /* software-enable, spurious vector 0xFF */
        for (unsigned int ap = 1; ap < cpus; ap++) {
            lapic[0x310 / 4] = ap << 24;
            lapic[0x300 / 4] = 0x4500;                /* INIT, assert */
            spin(100000);
            for (int sipi = 0; sipi < 2; sipi++) {    /* the second is ignored by a started AP */
                lapic[0x310 / 4] = ap << 24;
                lapic[0x300 / 4] = 0x4600 | (0x8000 >> 12);
                spin(100000);
            }
            for (unsigned int wait = 0; wait < 400000000u && !(ap_mask & (1u << ap)); wait++)
                __asm__ volatile("pause");
        }
        if (ap_mask != ((1u << cpus) - 2))
            finish(12);
    }
    puts("mbtest: cpus up ");
    putdec(cpus);
    puts(" (APs by INIT-SIPI-SIPI)\n");
    finish(0);
}

/* The AP trampoline, copied to 0x8000 (the SIPI's page): real mode with DS = 0, so the GDTR is at
 * its absolute address there; protected mode on, then a far jump to ap_entry32 in the image. */
__asm__(".pushsection .text\n"
        ".code16\n"
        ".global ap_tramp_start, ap_tramp_end\n"
        "ap_tramp_start:\n"
        "  cli\n"
        "  xor %ax, %ax\n"
        "  mov %ax, %ds\n"
        "  lgdtl 0x8000 + (ap_gdtr - ap_tramp_start)\n"
        "  mov %cr0, %eax\n"
        "  or $1, %eax\n"
        "  mov %eax, %cr0\n"
        "  ljmpl $0x08, $ap_entry32\n"
        ".balign 8\n"
        "ap_gdt:\n"
        "  .quad 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF\n"
        "ap_gdtr:\n"
        "  .word 23\n"
        "  .long 0x8000 + (ap_gdt - ap_tramp_start)\n"
        "ap_tramp_end:\n"
        ".code32\n"
        "ap_entry32:\n"
        "  mov $0x10, %ax\n"
        "  mov %ax, %ds\n"
        "  mov %ax, %es\n"
        "  mov %ax, %ss\n"
        "  mov 0xFEE00020, %eax\n"
        "  shr $24, %eax\n"
        "  lock bts %eax, ap_mask\n"
        "2: cli\n"
        "  hlt\n"
        "  jmp 2b\n"
        ".popsection\n");

/* The entry: a stack, then kmain(eax, ebx). Interrupts stay off. */
__asm__(".pushsection .text\n"
        ".global _start\n"
        "_start:\n"
        "  mov $stack_top, %esp\n"
        "  push %ebx\n"
        "  push %eax\n"
        "  call kmain\n"
        "1: cli\n"
        "  hlt\n"
        "  jmp 1b\n"
        ".popsection\n"
        ".pushsection .bss\n"
        ".align 16\n"
        "  .skip 16384\n"
        "stack_top:\n"
        ".popsection\n");
