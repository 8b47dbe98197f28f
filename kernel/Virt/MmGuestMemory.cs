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
        private ulong _violationTsc;

        private MmGuestMemory(AddressSpace<KernelMmPlatform> space, EptMmu<KernelEptPlatform> ept, ulong size)
        {
            Space = space;
            Ept = ept;
            _size = size;
        }

        /// <summary>
        /// Guest RAM of <paramref name="size"/> bytes. Anonymous (demand-zero 4 KiB pages, aged and
        /// reclaimable) by default; with <paramref name="hugeBacked"/> (or <c>thp=on</c>), a fault may
        /// back it with a tracked 2 MiB page (<see cref="Region.HugePages"/>), which EPT then maps
        /// with one 2 MiB leaf; such pages are aged as a unit and split before any part is evicted.
        /// </summary>
        public static MmGuestMemory? Create(ulong size, out string? problem, bool hugeBacked = false) => Create(size, out problem, hugeBacked, null);

        /// <summary>
        /// Guest RAM of <paramref name="size"/> bytes as a userfault region: every page is missing
        /// until <paramref name="handler"/> fills it (<see cref="AddressSpace{TPlatform}.UserfaultCopy"/>);
        /// a vCPU that touches a missing page waits in its EPT violation until then (the postcopy move).
        /// </summary>
        public static MmGuestMemory? CreateUserfault(ulong size, IUserfaultHandler handler, out string? problem) => Create(size, out problem, false, handler);

        private static MmGuestMemory? Create(ulong size, out string? problem, bool hugeBacked, IUserfaultHandler? userfault)
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
            if (userfault != null)
            {
                ram = Region.UserfaultAnonymous(HostBase, size, PageProt.Write, userfault);
            }
            else
            {
                ram = Region.Anonymous(HostBase, size, PageProt.Write);
                // Tracked 2 MiB pages where a fault finds a free 2 MiB block (aged as a unit,
                // split before any part is evicted), else 4 KiB pages.
                ram.HugePages = hugeBacked || CommandLine.Thp;
            }
            if (!space.AddRegion(ram))
            {
                problem = "could not add the guest RAM region";
                Abandon(space);
                return null;
            }
            EptMmu<KernelEptPlatform>? ept = EptMmu<KernelEptPlatform>.Create(default, space);
            if (ept == null)
            {
                problem = "out of memory for the EPT root";
                Abandon(space);
                return null;
            }
            if (!ept.RegisterWith(space.Notifiers))
            {
                problem = "the guest's address space is dying";
                Abandon(space);
                return null;
            }
            if (!ept.AddMemslot(new Memslot(new Gfn(0), size / 4096, HostBase, writable: true)))
            {
                problem = "could not add the guest memslot";
                Abandon(space);
                return null;
            }
            problem = null;
            return new MmGuestMemory(space, ept, size);
        }

        /// <summary>A VM's memory that could not be completed: its address space (with the EPT registered on it, if it was) goes back.</summary>
        private static void Abandon(AddressSpace<KernelMmPlatform> space)
        {
            space.Destroy();
        }

        public ulong EptPointer => Ept.EptPointer;

        public ulong Size => _size;

        public ulong FaultsHandled => Volatile.Read(ref _faults);

        /// <summary>TSC units spent in <see cref="HandleViolation"/> (the EPT fault, the primary fault or swap-in, and any direct reclaim in it), for the benchmarks' breakdown.</summary>
        public ulong ViolationTsc => Volatile.Read(ref _violationTsc);

        public VirtAddr HostAddress(ulong gpa) => HostBase + gpa;

        public bool Write(ulong gpa, byte* data, ulong length) => Copy(gpa, data, length, toGuest: true);

        public bool Read(ulong gpa, byte* data, ulong length) => Copy(gpa, data, length, toGuest: false);

        /// <summary>
        /// Page by page: resolve through the primary MMU (faulting in, taking a frame reference),
        /// copy, drop the reference. The frame cannot be freed or reused while we copy.
        /// </summary>
        private bool Copy(ulong gpa, byte* data, ulong length, bool toGuest)
        {
            if (gpa >= _size || length > _size - gpa)
                return false;
            while (length > 0)
            {
                ulong inPage = 4096 - (gpa & 0xFFF);
                ulong chunk = length < inPage ? length : inPage;
                if (Space.ResolveForSecondary(HostBase + gpa, toGuest, out ResolvedPage page) != FaultStatus.Ok)
                    return false;
                byte* frame = (byte*)page.Frame.Address.Value + (gpa & 0xFFF);
                if (toGuest)
                    Tandem.Arch.X86.Native.MemCopy(frame, data, chunk);
                else
                    Tandem.Arch.X86.Native.MemCopy(data, frame, chunk);
                Space.ReleaseResolved(page);
                gpa += chunk;
                data += chunk;
                length -= chunk;
            }
            return true;
        }

        public void ActivateOn(int cpu) => Ept.Activate(cpu);

        private int _released;

        /// <inheritdoc/>
        public void Release()
        {
            if (Interlocked.Exchange(ref _released, 1) != 0)
                return;
            // The guest's host address space was never loaded into CR3, so no CPU needs a
            // Deactivate; Destroy tears it down once its last user (an aging walk, say) lets go.
            Space.Destroy();
        }

        /// <inheritdoc/>
        public bool Maps(ulong gpa) => gpa < _size || Ept.InForeignMemslot(new GuestPhysAddr(gpa));

        public string? HandleViolation(ulong gpa, ulong qualification)
        {
            if (!Maps(gpa))
                return "EPT violation outside guest RAM";
            bool write = (qualification & 2) != 0;
            ulong t0 = Tandem.Arch.X86.Native.Rdtsc();
            FaultStatus status = Ept.HandleViolation(new GuestPhysAddr(gpa), write);
            Interlocked.Add(ref _violationTsc, Tandem.Arch.X86.Native.Rdtsc() - t0);
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
                case FaultStatus.Dead:
                    return "the VM's memory is being torn down";
                case FaultStatus.SwapError:
                    return "the swap device could not return a guest page";
                default:
                    return "EPT violation the primary MMU could not resolve";
            }
        }
    }
}
