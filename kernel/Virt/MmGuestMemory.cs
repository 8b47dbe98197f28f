using System.Threading;
using Tandem.Kernel.Memory;
using Tandem.Kvm.Ept;
using Tandem.Kvm.Vmx;
using Tandem.Mm;

namespace Tandem.Kernel.Virt
{
    /// <summary>
    /// Guest RAM as the design intends: an anonymous region of the VM's own host address space
    /// (the primary MMU), mirrored into EPT by an <see cref="EptMmu{TPlatform}"/> registered as that
    /// address space's notifier. EPT violations fault pages in through the primary MMU under the
    /// sequence/retry protocol; the host ages, protects and unmaps guest memory through the
    /// primary MMU and the notifier keeps EPT coherent.
    /// </summary>
    public sealed unsafe class MmGuestMemory : IGuestMemory
    {
        /// <summary>Where guest RAM lives in the VM's host address space (1 TiB, one PML4 slot per VM).</summary>
        public static readonly VirtAddr HostBase = new VirtAddr(1UL << 40);

        public readonly AddressSpace<KernelMmPlatform> Space;
        public readonly EptMmu<KernelEptPlatform> Ept;
        private readonly ulong _size;
        private ulong _faults;

        private MmGuestMemory(AddressSpace<KernelMmPlatform> space, EptMmu<KernelEptPlatform> ept, ulong size)
        {
            Space = space;
            Ept = ept;
            _size = size;
        }

        /// <summary>
        /// Guest RAM of <paramref name="size"/> bytes. Anonymous (demand-zero 4 KiB pages, aged and
        /// reclaimable) by default; with <paramref name="hugeBacked"/>, a fixed region over
        /// physically contiguous, 2 MiB-aligned host memory that the primary MMU maps with 2 MiB
        /// pages, so EPT maps it with 2 MiB leaves too (untracked: not aged or reclaimed).
        /// </summary>
        public static MmGuestMemory? Create(ulong size, out string? problem, bool hugeBacked = false)
        {
            MemoryManager<KernelMmPlatform>? mm = KernelMm.Manager;
            if (mm == null)
            {
                problem = "the mm core is not running";
                return null;
            }
            AddressSpace<KernelMmPlatform>? space = mm.CreateAddressSpace();
            if (space == null)
            {
                problem = "out of memory for the VM's address space";
                return null;
            }
            Region ram;
            if (hugeBacked)
            {
                ulong pages = (size + PageSizes.Size2M) / FrameAllocator.PageSize;
                ulong run = FrameAllocator.AllocateContiguous(pages);
                if (run == 0)
                {
                    problem = "not enough contiguous host memory for huge-page guest RAM";
                    return null;
                }
                ulong aligned = (run + PageSizes.Size2M - 1) & ~(PageSizes.Size2M - 1);
                Tandem.Arch.X86.Native.MemSet((void*)aligned, 0, size);
                ram = Region.Fixed(HostBase, size, PageProt.Write, new PhysAddr(aligned));
            }
            else
            {
                ram = Region.Anonymous(HostBase, size, PageProt.Write);
            }
            if (!space.AddRegion(ram))
            {
                problem = "could not add the guest RAM region";
                return null;
            }
            EptMmu<KernelEptPlatform>? ept = EptMmu<KernelEptPlatform>.Create(default, space);
            if (ept == null)
            {
                problem = "out of memory for the EPT root";
                return null;
            }
            ept.RegisterWith(space.Notifiers);
            if (!ept.AddMemslot(new Memslot(new Gfn(0), size / 4096, HostBase, writable: true)))
            {
                problem = "could not add the guest memslot";
                return null;
            }
            ept.Activate(Cpu.CurrentIndex);
            problem = null;
            return new MmGuestMemory(space, ept, size);
        }

        public ulong EptPointer => Ept.EptPointer;

        public ulong Size => _size;

        public ulong FaultsHandled => Volatile.Read(ref _faults);

        public VirtAddr HostAddress(ulong gpa) => HostBase + gpa;

        /// <summary>The host frame backing <paramref name="gpa"/>, faulting it in through the primary MMU.</summary>
        public byte* HostPointer(ulong gpa)
        {
            if (gpa >= _size)
                return null;
            VirtAddr va = HostBase + gpa;
            if (!Space.TranslateFrame(va, out Pfn frame))
            {
                if (Space.HandleFault(va, write: true) != FaultStatus.Ok || !Space.TranslateFrame(va, out frame))
                    return null;
            }
            return (byte*)frame.Address.Value + (gpa & 0xFFF);
        }

        public string? HandleViolation(ulong gpa, ulong qualification)
        {
            if (gpa >= _size)
                return "EPT violation outside guest RAM";
            bool write = (qualification & 2) != 0;
            FaultStatus status = Ept.HandleViolation(new GuestPhysAddr(gpa), write);
            switch (status)
            {
                case FaultStatus.Ok:
                case FaultStatus.Exists:
                    Interlocked.Increment(ref _faults);
                    return null;
                case FaultStatus.OutOfMemory:
                    return "out of host memory for guest RAM";
                case FaultStatus.AccessDenied:
                    return "guest write to read-only memory";
                default:
                    return "EPT violation the primary MMU could not resolve";
            }
        }
    }
}
