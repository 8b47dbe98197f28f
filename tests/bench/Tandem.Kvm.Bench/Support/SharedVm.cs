using System;

namespace Tandem.Kvm.Bench;

/// <summary>
/// The aging VM is built once per process (filling it is most of a minute) and shared by every
/// benchmark case; BenchmarkDotNet runs all cases in this process (in-process toolchain).
/// </summary>
public static class SharedVm
{
    /// <summary>
    /// Alias slots over the 1 GiB of guest RAM: 576 × 262,144 = 150,994,944 leaves (1,152 MiB of
    /// leaf tables, more than this machine's last-level cache). A plain scan takes about 1.5 to
    /// 1.7 ns per leaf here, so even half of a pass (one side of an interleaved pair) stays above 110 ms.
    /// </summary>
    public const int DefaultAliases = 576;

    public static int Aliases = DefaultAliases;

    private static readonly Lazy<AgingVm> s_vm = new Lazy<AgingVm>(() => new AgingVm(Aliases));

    public static AgingVm Vm => s_vm.Value;

    public static bool Built => s_vm.IsValueCreated;

    private static readonly System.Collections.Generic.HashSet<string> s_checked = new System.Collections.Generic.HashSet<string>();

    /// <summary>The first time for <paramref name="what"/>: the pass just run cleared every accessed bit.</summary>
    public static void CheckAgedOnce(string what)
    {
        if (!s_checked.Add(what))
            return;
        long left = Vm.CountYoung();
        if (left != 0)
            throw new InvalidOperationException(what + ": the pass left " + left + " accessed leaves");
    }
}
