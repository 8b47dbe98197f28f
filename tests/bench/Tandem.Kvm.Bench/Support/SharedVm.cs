using System;

namespace Tandem.Kvm.Bench;

/// <summary>
/// The aging VM is built once per process (filling it is most of a minute) and shared by every
/// benchmark case; BenchmarkDotNet runs all cases in this process (in-process toolchain).
/// </summary>
public static class SharedVm
{
    /// <summary>
    /// Alias slots over the 1 GiB of guest RAM: 256 × 262,144 = 67,108,864 leaves (512 MiB of leaf
    /// tables, more than this machine's last-level cache): about 130 ms for the fastest pass.
    /// </summary>
    public const int DefaultAliases = 256;

    public static int Aliases = DefaultAliases;

    private static readonly Lazy<AgingVm> s_vm = new Lazy<AgingVm>(() => new AgingVm(Aliases));

    public static AgingVm Vm => s_vm.Value;
}
