namespace Tandem.Kvm.Boot
{
    /// <summary>What kind of refusal a <see cref="LoadError"/> is.</summary>
    public enum LoadErrorKind
    {
        /// <summary>No error.</summary>
        None = 0,
        /// <summary>The image is not of the loader's format (no header, wrong magic).</summary>
        NotThisFormat,
        /// <summary>The image claims to be of the format but a field is wrong or points outside the file.</summary>
        Malformed,
        /// <summary>A well-formed image asks for something this loader does not offer.</summary>
        Unsupported,
        /// <summary>The image, its modules or the boot information do not fit in guest RAM.</summary>
        DoesNotFit,
        /// <summary>Guest RAM refused a write (out of host memory).</summary>
        WriteFailed,
    }

    /// <summary>
    /// Why a loader refused an image, without building a string: a literal template and up to three
    /// values. In the template, <c>{d}</c> stands for the next value in decimal and <c>{x}</c> for the
    /// next value in hexadecimal, e.g. <c>"bad ELF: program header {d} ends past the file (offset {x}, size {x})"</c>.
    /// <see cref="WriteTo"/> prints it through an <see cref="ITextSink"/> (the kernel's log, a host
    /// string builder).
    /// </summary>
    public readonly struct LoadError
    {
        /// <summary>What kind of refusal.</summary>
        public readonly LoadErrorKind Kind;
        /// <summary>The message template (a literal).</summary>
        public readonly string? Template;
        /// <summary>The first placeholder's value.</summary>
        public readonly ulong Value0;
        /// <summary>The second placeholder's value.</summary>
        public readonly ulong Value1;
        /// <summary>The third placeholder's value.</summary>
        public readonly ulong Value2;

        /// <summary>An error of kind with its template and values.</summary>
        public LoadError(LoadErrorKind kind, string template, ulong value0 = 0, ulong value1 = 0, ulong value2 = 0)
        {
            Kind = kind;
            Template = template;
            Value0 = value0;
            Value1 = value1;
            Value2 = value2;
        }

        /// <summary>True unless this is the default (no error).</summary>
        public bool IsError => Kind != LoadErrorKind.None;

        /// <summary>The value that the <paramref name="index"/>-th placeholder prints.</summary>
        public ulong Value(int index) => index == 0 ? Value0 : index == 1 ? Value1 : Value2;

        /// <summary>Prints the message (without a trailing newline) through <paramref name="sink"/>.</summary>
        public void WriteTo<TSink>(ref TSink sink) where TSink : struct, ITextSink
        {
            string? text = Template;
            if (text == null)
                return;
            int next = 0;
            int i = 0;
            while (i < text.Length)
            {
                char c = text[i];
                if (c == '{' && i + 2 < text.Length && text[i + 2] == '}' && (text[i + 1] == 'd' || text[i + 1] == 'x'))
                {
                    ulong v = Value(next);
                    next++;
                    if (text[i + 1] == 'd')
                        sink.WriteDecimal(v);
                    else
                        sink.WriteHex(v);
                    i += 3;
                    continue;
                }
                sink.WriteChar(c);
                i++;
            }
        }
    }
}
