namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// The APIC bus of a VM with several vCPUs (SDM volume 3, 10.6): it carries the IOAPIC's
    /// interrupt messages (<see cref="IApicBus"/>) and the local APICs' IPIs
    /// (<see cref="IIpiSink"/>) to the local APICs, one per vCPU, vCPU i being the i-th APIC
    /// added (vCPU 0 is the BSP), and kicks (<see cref="IVcpuKick"/>) each vCPU it gave something.
    /// </summary>
    /// <remarks>
    /// Routing. A destination names its targets as <see cref="LocalApic.Matches"/> says, in each
    /// target's own mode: physical (the APIC ID; 0xFF is everyone in xAPIC mode, 0xFFFFFFFF in
    /// x2APIC mode) or logical (xAPIC flat or cluster model through DFR and LDR, x2APIC logical
    /// cluster). An IOAPIC message's 8-bit destination 0xFF is everyone in both modes (as KVM
    /// treats it). The shorthands: all including self, all excluding self (self stays in the
    /// sending APIC and never reaches the bus). A hardware-disabled APIC takes nothing.
    ///
    /// Delivery modes: fixed, NMI, INIT and start-up go to every target (INIT is ignored by the
    /// BSP; start-up is recorded only by a target waiting for one, see
    /// <see cref="LocalApic.WaitingForSipi"/>). Lowest priority goes to exactly one target: among
    /// those that would accept it (hardware- and software-enabled), the one with the lowest
    /// processor priority (PPR), ties going to the lowest APIC ID (then to the lowest vCPU
    /// index); for an IPI the sender is a candidate too. ExtINT is taken only by vCPU 0's APIC
    /// while it passes the PIC's interrupts (the 8259A is wired to vCPU 0 alone); its vector comes
    /// from the PIC. SMI and the reserved modes reach nobody. The INIT level de-assert does
    /// nothing.
    ///
    /// The sender of an IPI is the APIC whose ID is <see cref="IpiRequest.Source"/> (the first
    /// one, should a guest give two APICs the same xAPIC ID); it already took its own share and
    /// gets nothing more from the bus (but a lowest-priority pick).
    ///
    /// Kicks: every target that took something (an accepted fixed or lowest-priority vector, an
    /// NMI, an INIT, a start-up) is kicked after its state was updated, except the sender of an
    /// IPI. An IOAPIC message does not know whose exit caused it, so it kicks its targets even
    /// when one of them is the vCPU that caused it (harmless, see <see cref="IVcpuKick"/>).
    ///
    /// Locking: every call is made with the VM's <see cref="DeviceLock"/> held (it comes from a
    /// vCPU's device access, poll or EOI, or from the host console); the deliveries into the other
    /// vCPUs' APICs and the kicks happen under it.
    /// </remarks>
    public sealed class ApicBus : IApicBus, IIpiSink
    {
        private readonly LocalApic[] _apics;
        private int _count;

        /// <summary>Who is told that a vCPU has something new; null: nobody (a single vCPU, tests).</summary>
        public IVcpuKick? Kicker;

        /// <summary>A bus with room for <paramref name="capacity"/> local APICs, none attached yet.</summary>
        public ApicBus(int capacity)
        {
            if (capacity <= 0)
                throw new System.ArgumentException("ApicBus: at least one local APIC");
            _apics = new LocalApic[capacity];
        }

        /// <summary>The local APICs attached so far.</summary>
        public int Count => _count;

        /// <summary>vCPU <paramref name="cpu"/>'s local APIC.</summary>
        public LocalApic this[int cpu] => _apics[cpu];

        /// <summary>
        /// Attaches <paramref name="apic"/> as the next vCPU's local APIC (created with this bus as
        /// its <see cref="IIpiSink"/>); returns its vCPU index.
        /// </summary>
        public int Attach(LocalApic apic)
        {
            if (_count == _apics.Length)
                throw new System.InvalidOperationException("ApicBus: no room for another local APIC");
            _apics[_count] = apic;
            return _count++;
        }

        /// <summary>The vCPU index of the APIC with ID <paramref name="apicId"/> (the first such), or -1.</summary>
        public int IndexOf(uint apicId)
        {
            for (int i = 0; i < _count; i++)
            {
                if (_apics[i].Id == apicId)
                    return i;
            }
            return -1;
        }

        /// <inheritdoc/>
        public bool Deliver(uint destination, bool logical, int deliveryMode, int vector, bool level)
        {
            // The IOAPIC's destination is 8 bits; its 0xFF is everyone, in x2APIC mode too.
            if (destination == 0xFF)
                destination = 0xFFFF_FFFF;
            return Route(destination, logical, IpiRequest.NoShorthand, -1, deliveryMode, vector, level);
        }

        /// <inheritdoc/>
        public void SendIpi(IpiRequest request)
        {
            if (request.IsInitDeassert)
                return;                         // no CPU acts on it (SDM 10.6.1)
            int shorthand = request.Shorthand;
            if (shorthand == IpiRequest.Self)
                return;                         // the sending APIC keeps those
            Route(request.Destination, request.Logical, shorthand, IndexOf(request.Source), request.DeliveryMode, request.Vector, request.LevelTriggered);
        }

        /// <summary>APIC <paramref name="i"/> is among the targets named by the destination or shorthand.</summary>
        private bool Targets(int i, uint destination, bool logical, int shorthand, int sender)
        {
            switch (shorthand)
            {
                case IpiRequest.AllIncludingSelf:
                    return true;
                case IpiRequest.AllExcludingSelf:
                    return i != sender;
                default:
                    return _apics[i].Matches(destination, logical);
            }
        }

        private bool Route(uint destination, bool logical, int shorthand, int sender, int mode, int vector, bool level)
        {
            if (mode == IpiRequest.LowestPriority)
                return RouteLowestPriority(destination, logical, shorthand, sender, vector, level);
            if (mode == IpiRequest.ExtInt)
            {
                // Only vCPU 0 hears the 8259A.
                if (_count == 0 || sender == 0 || !Targets(0, destination, logical, shorthand, sender) || !_apics[0].ReceiveRouted(mode, vector, level))
                    return false;
                Kick(0);
                return true;
            }
            bool taken = false;
            for (int i = 0; i < _count; i++)
            {
                if (i == sender || !Targets(i, destination, logical, shorthand, sender))
                    continue;
                if (_apics[i].ReceiveRouted(mode, vector, level))
                {
                    taken = true;
                    Kick(i);
                }
            }
            return taken;
        }

        /// <summary>Lowest priority: one target, the lowest PPR among those that would accept, ties to the lowest APIC ID, then vCPU index.</summary>
        private bool RouteLowestPriority(uint destination, bool logical, int shorthand, int sender, int vector, bool level)
        {
            int best = -1;
            uint bestPpr = 0, bestId = 0;
            for (int i = 0; i < _count; i++)
            {
                LocalApic a = _apics[i];
                if (!a.HardwareEnabled || !a.SoftwareEnabled || !Targets(i, destination, logical, shorthand, sender))
                    continue;
                uint ppr = a.Ppr, id = a.Id;
                if (best < 0 || ppr < bestPpr || (ppr == bestPpr && id < bestId))
                {
                    best = i;
                    bestPpr = ppr;
                    bestId = id;
                }
            }
            if (best < 0 || !_apics[best].ReceiveRouted(IpiRequest.LowestPriority, vector, level))
                return false;
            if (best != sender)
                Kick(best);
            return true;
        }

        private void Kick(int cpu) => Kicker?.Kick(cpu);
    }
}
