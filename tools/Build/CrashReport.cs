using System.Text;
using System.Text.RegularExpressions;
using Iced.Intel;
using Decoder = Iced.Intel.Decoder;

namespace Tandem.Build;

/// <summary>
/// Decodes what the kernel printed when a run ended badly (docs/debugging.md): the backtrace's
/// ILC-mangled names back to <c>Namespace.Type.Method</c>, and every "code:" line disassembled
/// with Iced, the instruction at RIP marked, as Linux's scripts/decodecode does.
/// </summary>
internal static partial class CrashReport
{
    // A backtrace frame as kernel/Backtrace.cs prints it: "  0x<16 hex>  <symbol>+0x<offset>".
    [GeneratedRegex(@"^\s+0x([0-9a-f]{16})\s+(\S+)\+0x([0-9a-f]+)\s*$")]
    private static partial Regex Frame();

    // kernel/Interrupts.cs: "rip=0x...", kvm/Vmx/StopDump.cs: "  rip 0x..."; the RIP the next code line is at.
    [GeneratedRegex(@"\brip[= ]0x([0-9a-f]+)")]
    private static partial Regex Rip();

    // arch/x86/CodeLine.cs: "code: 55 48 <0f> 0b", or "code (32-bit): ..." for a guest.
    [GeneratedRegex(@"\bcode(?: \((16|32|64)-bit\))?:((?: <?[0-9a-f]{2}>?)+)\s*$")]
    private static partial Regex Code();

    /// <summary>
    /// The decoded block for <paramref name="serial"/>, or null when it has nothing to decode. With
    /// <paramref name="debugElf"/> (an image built with --debug-info), every backtrace frame and the
    /// host RIP also get their source file and line from its DWARF (addr2line).
    /// </summary>
    public static string? Decode(string serial, string? debugElf = null)
    {
        string[] lines = serial.Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        Dictionary<ulong, string> sourceLines = debugElf != null ? SourceLines(debugElf, lines) : [];
        string At(ulong address) => sourceLines.TryGetValue(address, out string? where) ? "  at " + where : "";
        var output = new StringBuilder();
        ulong? rip = null;
        bool inBacktrace = false;
        foreach (string line in lines)
        {
            Match m;
            if ((m = Frame().Match(line)).Success)
            {
                if (!inBacktrace)
                    output.AppendLine("backtrace:");
                inBacktrace = true;
                ulong address = Convert.ToUInt64(m.Groups[1].Value, 16);
                output.AppendLine($"  0x{m.Groups[1].Value}  {Demangle(m.Groups[2].Value)}+0x{m.Groups[3].Value}{At(address - 1)}");
                continue;
            }
            inBacktrace = false;
            if ((m = Code().Match(line)).Success)
            {
                int bits = m.Groups[1].Success ? int.Parse(m.Groups[1].Value) : 64;
                output.Append(DecodeCode(m.Groups[2].Value, bits, rip));
                continue;
            }
            if ((m = Rip().Match(line)).Success)
            {
                rip = Convert.ToUInt64(m.Groups[1].Value, 16);
                if (At(rip.Value) is { Length: > 0 } where)
                    output.AppendLine($"rip 0x{rip.Value:x16}{where}");
            }
        }
        return output.Length == 0 ? null : output.ToString();
    }

    /// <summary>
    /// The source line of every backtrace frame (its return address - 1, inside the call) and every
    /// RIP in <paramref name="lines"/>, from <paramref name="elf"/>'s DWARF through one addr2line
    /// call; empty when addr2line is missing or knows none of them.
    /// </summary>
    public static Dictionary<ulong, string> SourceLines(string elf, IEnumerable<string> lines)
    {
        var addresses = new List<ulong>();
        foreach (string line in lines)
        {
            Match m;
            if ((m = Frame().Match(line)).Success)
                addresses.Add(Convert.ToUInt64(m.Groups[1].Value, 16) - 1);
            else if ((m = Rip().Match(line)).Success)
                addresses.Add(Convert.ToUInt64(m.Groups[1].Value, 16));
        }
        var result = new Dictionary<ulong, string>();
        addresses = addresses.Distinct().ToList();
        if (addresses.Count == 0 || !File.Exists(elf))
            return result;
        var psi = new System.Diagnostics.ProcessStartInfo("addr2line") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("-e");
        psi.ArgumentList.Add(elf);
        foreach (ulong a in addresses)
            psi.ArgumentList.Add("0x" + a.ToString("x"));
        try
        {
            using var p = System.Diagnostics.Process.Start(psi)!;
            Task<string> err = p.StandardError.ReadToEndAsync();
            string[] answers = p.StandardOutput.ReadToEnd().Split('\n');
            p.WaitForExit();
            _ = err.Result;
            // One line per address, in order: "file:line" (maybe " (discriminator N)"), or "??:0"/"??:?".
            for (int i = 0; i < addresses.Count && i < answers.Length; i++)
            {
                string where = answers[i].Trim();
                int cut = where.IndexOf(" (discriminator", StringComparison.Ordinal);
                if (cut >= 0)
                    where = where[..cut];
                if (where.Length > 0 && !where.StartsWith("??", StringComparison.Ordinal) && !where.EndsWith(":0", StringComparison.Ordinal) && !where.EndsWith(":?", StringComparison.Ordinal))
                    result[addresses[i]] = where;
            }
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // addr2line is not installed: the report goes without source lines.
        }
        return result;
    }

    /// <summary>
    /// Turns an ILC symbol back into a .NET name: "kernel_Tandem_Kernel_Tests_PanicTests__Touch" is
    /// "Tandem.Kernel.Tests.PanicTests.Touch". ILC writes the module (a lower-case assembly name)
    /// first, '_' for every '.', "__" between the type and the method, "_N" for a generic type's
    /// arity and instantiations as &lt;A__B&gt;. A symbol that is not a managed method is returned as it is.
    /// </summary>
    public static string Demangle(string symbol)
    {
        int split = MethodSeparator(symbol);
        if (split < 0 || symbol.StartsWith('_'))
            return symbol;
        string method = symbol[(split + 2)..];
        // ".ctor" and ".cctor" keep their dot: "___ctor" is the separator and "_ctor".
        if (method.StartsWith('_'))
            method = "." + method[1..];
        return TypeName(symbol[..split], stripModule: true) + "." + Generic(method);
    }

    /// <summary>The index of the last "__" outside angle brackets (the type/method split), or -1.</summary>
    private static int MethodSeparator(string symbol)
    {
        int depth = 0, found = -1;
        for (int i = 0; i < symbol.Length; i++)
        {
            char c = symbol[i];
            if (c == '<')
                depth++;
            else if (c == '>')
                depth--;
            else if (depth == 0 && c == '_' && i + 1 < symbol.Length && symbol[i + 1] == '_' && (i == 0 || symbol[i - 1] != '_'))
                found = i;
        }
        return found > 0 ? found : -1;
    }

    /// <summary>A mangled type ("kvm_Tandem_Kvm_Ept_EptMmu_1&lt;...&gt;") as "Tandem.Kvm.Ept.EptMmu&lt;...&gt;".</summary>
    private static string TypeName(string mangled, bool stripModule)
    {
        int bracket = mangled.IndexOf('<');
        string name = bracket < 0 ? mangled : mangled[..bracket];
        string[] parts = name.Split('_');
        var kept = new List<string>();
        for (int i = 0; i < parts.Length; i++)
        {
            string part = parts[i];
            if (i == 0 && stripModule && parts.Length > 1 && part.Length > 0 && char.IsLower(part[0]))
                continue;                              // the module: kernel, kvm, mm, runtime, arch
            if (part.Length > 0 && part.All(char.IsAsciiDigit) && kept.Count > 0)
            {
                if (bracket < 0)
                    kept[^1] += "`" + part;            // an open generic type's arity
                continue;                              // dropped before its <arguments>
            }
            kept.Add(part);
        }
        string result = string.Join('.', kept);
        return bracket < 0 ? result : result + Generic(mangled[bracket..]);
    }

    /// <summary>"Name&lt;A__B&gt;" with each argument demangled as a type and joined with ", ".</summary>
    private static string Generic(string text)
    {
        int open = text.IndexOf('<');
        if (open < 0 || !text.EndsWith('>'))
            return text;
        string inner = text[(open + 1)..^1];
        var args = new List<string>();
        int depth = 0, start = 0;
        for (int i = 0; i < inner.Length; i++)
        {
            char c = inner[i];
            if (c == '<')
                depth++;
            else if (c == '>')
                depth--;
            else if (depth == 0 && c == '_' && i + 1 < inner.Length && inner[i + 1] == '_')
            {
                args.Add(inner[start..i]);
                i++;
                start = i + 1;
            }
        }
        args.Add(inner[start..]);
        return text[..open] + "<" + string.Join(", ", args.Select(a => TypeName(a, stripModule: true))) + ">";
    }

    /// <summary>
    /// One code line disassembled. The bytes before RIP are ambiguous (the dump does not know where
    /// an instruction starts), so as decodecode does, the first start that decodes cleanly to an
    /// instruction boundary exactly at RIP is used; without one only the bytes from RIP are shown.
    /// </summary>
    public static string DecodeCode(string bytesText, int bits, ulong? rip)
    {
        var bytes = new List<byte>();
        int ripIndex = -1;
        foreach (string token in bytesText.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (token.StartsWith('<'))
                ripIndex = bytes.Count;
            bytes.Add(Convert.ToByte(token.Trim('<', '>'), 16));
        }
        if (ripIndex < 0)
            ripIndex = 0;
        byte[] code = bytes.ToArray();
        ulong at = rip ?? (ulong)ripIndex;        // without a RIP line: offsets into the code line
        ulong origin = at - (ulong)ripIndex;
        int start = ripIndex;
        for (int s = 0; s < ripIndex; s++)
        {
            if (EndsAt(code, s, ripIndex, bits))
            {
                start = s;
                break;
            }
        }
        var sb = new StringBuilder();
        sb.AppendLine($"code at rip 0x{at:x} ({bits}-bit){(start == ripIndex && ripIndex > 0 ? ", the bytes before RIP do not decode up to it" : "")}:");
        var decoder = Decoder.Create(bits, new ByteArrayCodeReader(code, start, code.Length - start), origin + (ulong)start);
        var formatter = new IntelFormatter();
        formatter.Options.FirstOperandCharIndex = 8;
        formatter.Options.HexPrefix = "0x";
        formatter.Options.HexSuffix = null;
        formatter.Options.UppercaseHex = false;
        formatter.Options.SpaceAfterOperandSeparator = true;
        formatter.Options.ShowBranchSize = false;
        formatter.Options.BranchLeadingZeros = false;
        var text = new StringOutput();
        while (decoder.IP < origin + (ulong)code.Length)
        {
            ulong ip = decoder.IP;
            decoder.Decode(out Instruction instruction);
            int offset = (int)(ip - origin);
            if (instruction.IsInvalid)
            {
                string rest = string.Join(' ', code.Skip(offset).Select(b => b.ToString("x2")));
                sb.AppendLine($"    0x{ip:x}  {rest}  (does not decode{(offset + 15 > code.Length ? ": the line ends inside an instruction" : "")})");
                break;
            }
            formatter.Format(instruction, text);
            string hex = string.Join(' ', code.Skip(offset).Take(instruction.Length).Select(b => b.ToString("x2")));
            bool trapping = offset == ripIndex;
            sb.AppendLine($"  {(trapping ? '*' : ' ')} 0x{ip:x}  {hex,-30} {text.ToStringAndReset()}{(trapping ? "   <-- trapping instruction" : "")}");
        }
        return sb.ToString();
    }

    /// <summary>True if decoding <paramref name="code"/> from <paramref name="start"/> meets <paramref name="target"/> exactly, with no invalid instruction.</summary>
    private static bool EndsAt(byte[] code, int start, int target, int bits)
    {
        var decoder = Decoder.Create(bits, new ByteArrayCodeReader(code, start, code.Length - start), (ulong)start);
        while (decoder.IP < (ulong)target)
        {
            decoder.Decode(out Instruction instruction);
            if (instruction.IsInvalid)
                return false;
        }
        return decoder.IP == (ulong)target;
    }
}
