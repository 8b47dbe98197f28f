using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Xunit;

namespace Tandem.Build.Tests;

/// <summary>
/// The debug image under QEMU's gdbstub, as './build.sh run --gdb' starts it (-gdb tcp::PORT -S):
/// gdb breaks in KernelMain.Main by its ILC symbol, and ILC's DWARF (-g) gives the arguments'
/// values, the source line, and a local's value by name at a later line. Needs out/tandem-debug.iso and .elf from
/// './build.sh image --debug-info' ('./build.sh test' builds them before the host tests; a plain
/// 'dotnet test' without them reports the test SKIPPED, with the reason).
/// </summary>
public sealed class GdbTests
{
    /// <summary>KernelMain.Main(uint magic, ulong info) as ILC names it (kernel/Kernel.cs).</summary>
    public const string MainSymbol = "kernel_Tandem_Kernel_KernelMain__Main";

    [FactWithDebugImage]
    public void GdbBreaksInKernelMain()
    {
        string elf = Path.Combine(Host.RepoRoot, "out", "tandem-debug.elf");
        string iso = Path.Combine(Host.RepoRoot, "out", "tandem-debug.iso");
        int port = FreePort();
        // A line of Main after the local reservedEnd is set: the highest end of the image, the
        // boot information and the modules.
        int line = Array.FindIndex(File.ReadAllLines(Path.Combine(Host.RepoRoot, "kernel", "Kernel.cs")),
            l => l.Trim() == "problem = FrameAllocator.Initialize(reservedEnd);") + 1;
        Assert.True(line > 0, "kernel/Kernel.cs no longer has the line the test breaks at");
        var psi = new ProcessStartInfo("qemu-system-x86_64")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string a in new[]
        {
            "-cdrom", iso, "-m", "512", "-smp", "1", "-serial", "null", "-display", "none", "-monitor", "none",
            "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-cpu", "max",
            "-gdb", $"tcp:127.0.0.1:{port}", "-S",
        })
            psi.ArgumentList.Add(a);
        using Process qemu = Process.Start(psi)!;
        try
        {
            qemu.StandardInput.Close();
            _ = qemu.StandardOutput.ReadToEndAsync();
            Task<string> qemuErr = qemu.StandardError.ReadToEndAsync();
            string[] gdbArgs =
            [
                "-nx", "-batch", elf,
                "-ex", $"target remote 127.0.0.1:{port}",
                "-ex", $"break {MainSymbol}",
                "-ex", "continue",
                "-ex", "info args",
                "-ex", "bt",
                "-ex", $"break Kernel.cs:{line}",
                "-ex", "continue",
                "-ex", "p/x reservedEnd",
                "-ex", "p/x (unsigned long)&__image_end",
            ];
            // QEMU listens a moment after it starts: try again while gdb finds no listener.
            (int Code, string Stdout, string Stderr) gdb = default;
            for (int attempt = 0; attempt < 20; attempt++)
            {
                Assert.False(qemu.HasExited, $"QEMU exited (code {(qemu.HasExited ? qemu.ExitCode : 0)}) before gdb attached");
                gdb = Host.Run("gdb", gdbArgs, timeoutSeconds: 90);
                if (!(gdb.Stdout + gdb.Stderr).Contains("Connection refused", StringComparison.Ordinal))
                    break;
                Thread.Sleep(250);
            }
            string output = gdb.Stdout + gdb.Stderr;
            // The breakpoint is hit, in Main, at a line of kernel/Kernel.cs, with the arguments'
            // values: magic is multiboot2's bootloader magic 0x36d76289 = 920085129.
            Assert.Matches(@"Breakpoint 1, " + MainSymbol + @" \(magic=920085129, info=\d+\) at \S*kernel/Kernel\.cs:\d+", output);
            Assert.Matches(@"(?m)^magic = 920085129$", output);
            Assert.Matches(@"(?m)^info = \d+$", output);
            Assert.Matches(@"(?m)^#0  " + MainSymbol + @" \(", output);
            Assert.Matches(@"(?m)^#1  0x[0-9a-f]+ in tandem_boot_long_mode \(\)", output);
            // The second breakpoint, and a local by name with its value.
            Assert.Matches(@"Breakpoint 2, " + MainSymbol + @" \(.*\) at \S*kernel/Kernel\.cs:" + line, output);
            Match local = Regex.Match(output, @"(?m)^\$1 = 0x([0-9a-f]+)$");
            Match imageEnd = Regex.Match(output, @"(?m)^\$2 = 0x([0-9a-f]+)$");
            Assert.True(local.Success && imageEnd.Success, "gdb printed no value for reservedEnd or __image_end:\n" + output);
            ulong reservedEnd = Convert.ToUInt64(local.Groups[1].Value, 16);
            ulong end = Convert.ToUInt64(imageEnd.Groups[1].Value, 16);
            // At least the image's end and the boot information's start (GRUB puts it above the
            // image and the modules); below 4 GiB, where GRUB loads everything.
            ulong info = ulong.Parse(Regex.Match(output, @"(?m)^info = (\d+)$").Groups[1].Value);
            Assert.True(reservedEnd > Math.Max(end, info) && reservedEnd < 1UL << 32,
                $"reservedEnd = 0x{reservedEnd:x}: below the image's end (0x{end:x}) or the boot information (0x{info:x})");
        }
        finally
        {
            if (!qemu.HasExited)
                qemu.Kill(entireProcessTree: true);
            qemu.WaitForExit();
        }
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}

/// <summary>
/// A fact that needs gdb, qemu-system-x86_64 and the debug image (out/tandem-debug.elf and .iso,
/// made by './build.sh image --debug-info'). Without one it is reported as SKIPPED with what is
/// missing: a skip is not a pass.
/// </summary>
public sealed class FactWithDebugImageAttribute : FactAttribute
{
    public FactWithDebugImageAttribute()
    {
        var missing = new List<string>();
        foreach (string tool in new[] { "gdb", "qemu-system-x86_64" })
        {
            if (Host.Which(tool) == null)
                missing.Add($"{tool} is not on the PATH");
        }
        foreach (string file in new[] { "tandem-debug.elf", "tandem-debug.iso" })
        {
            if (!File.Exists(Path.Combine(Host.RepoRoot, "out", file)))
                missing.Add($"out/{file} is not built (./build.sh image --debug-info makes it)");
        }
        if (missing.Count > 0)
            Skip = "SKIPPED, NOT PASSED: " + string.Join("; ", missing);
    }
}
