using System;
using System.Runtime.InteropServices;
using System.Text;
using Tandem.Kvm.Boot;

namespace Tandem.Kvm.Tests.Loaders;

public enum LoaderKind { Multiboot, Multiboot2, Linux, Pvh, Flat }

/// <summary>A module for a test load: bytes and a command line.</summary>
public sealed record TestModule(byte[] Data, string Cmdline);

/// <summary>Prints a <see cref="LoadError"/> into a string (the host side of <see cref="ITextSink"/>).</summary>
public struct StringSink : ITextSink
{
    public StringBuilder Text;
    public void WriteChar(char c) => Text.Append(c);
    public void WriteHex(ulong value) => Text.Append("0x").Append(value.ToString("X"));
    public void WriteDecimal(ulong value) => Text.Append(value);

    public static string Format(in LoadError error)
    {
        var sink = new StringSink { Text = new StringBuilder() };
        error.WriteTo(ref sink);
        return "vm: " + sink.Text;
    }
}

/// <summary>Runs one loader on test inputs (copied to native memory for the call) and keeps the outcome.</summary>
public sealed unsafe class LoaderRun
{
    public const ulong DefaultRam = 16UL << 20;

    public TestRam Ram = null!;
    public BootEntry Entry;
    public LoadError Error;
    public bool Ok;
    public string Message => StringSink.Format(Error);

    public static LoaderRun Load(LoaderKind kind, byte[] image, ulong ramSize = DefaultRam, string? cmdline = null,
        TestModule[]? modules = null, ulong rsdp = 0, byte[]? rawCmdline = null, TestRam? ram = null)
    {
        var run = new LoaderRun { Ram = ram ?? new TestRam(ramSize) };
        var map = new GuestMemoryMap(ramSize);
        byte[] cmd = rawCmdline ?? (cmdline == null ? Array.Empty<byte>() : Encoding.ASCII.GetBytes(cmdline));
        modules ??= Array.Empty<TestModule>();
        var allocations = new System.Collections.Generic.List<IntPtr>();
        byte* Copy(byte[] bytes)
        {
            IntPtr p = Marshal.AllocHGlobal(Math.Max(bytes.Length, 1));
            Marshal.Copy(bytes, 0, p, bytes.Length);
            allocations.Add(p);
            return (byte*)p;
        }
        try
        {
            var mods = (BootModule*)Marshal.AllocHGlobal(Math.Max(modules.Length, 1) * sizeof(BootModule));
            allocations.Add((IntPtr)mods);
            for (int i = 0; i < modules.Length; i++)
            {
                byte[] mc = Encoding.ASCII.GetBytes(modules[i].Cmdline);
                mods[i] = new BootModule { Data = Copy(modules[i].Data), Length = (ulong)modules[i].Data.Length, Cmdline = Copy(mc), CmdlineLength = (ulong)mc.Length };
            }
            var input = new BootInput
            {
                Image = Copy(image),
                ImageLength = (ulong)image.Length,
                Cmdline = cmd.Length == 0 && cmdline == null && rawCmdline == null ? null : Copy(cmd),
                CmdlineLength = (ulong)cmd.Length,
                Modules = mods,
                ModuleCount = modules.Length,
                RsdpAddress = rsdp,
            };
            run.Ok = Invoke(kind, run.Ram, map, input, out run.Entry, out run.Error);
        }
        finally
        {
            foreach (IntPtr p in allocations)
                Marshal.FreeHGlobal(p);
        }
        return run;
    }

    public static bool Invoke(LoaderKind kind, TestRam testRam, in GuestMemoryMap map, in BootInput input, out BootEntry entry, out LoadError error)
    {
        var ram = new TestRamRef(testRam);
        switch (kind)
        {
            case LoaderKind.Multiboot: return MultibootLoader.Load(ref ram, map, input, out entry, out error);
            case LoaderKind.Multiboot2: return Multiboot2Loader.Load(ref ram, map, input, out entry, out error);
            case LoaderKind.Linux: return LinuxLoader.Load(ref ram, map, input, out entry, out error);
            case LoaderKind.Pvh: return PvhLoader.Load(ref ram, map, input, out entry, out error);
            default: return FlatLoader.Load(ref ram, map, input, out entry, out error);
        }
    }
}
