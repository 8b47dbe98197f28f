using System;

namespace Tandem.Kvm.Monitor
{
    /// <summary>What a typed byte asks of the console (see <see cref="ConsoleSwitch.Feed"/>).</summary>
    public enum SwitchAction : byte
    {
        /// <summary>Nothing to do (a Ctrl-A waiting for its second key, an ignored key).</summary>
        None,
        /// <summary>Send the byte to the focused VM's COM1.</summary>
        ToVm,
        /// <summary>Send a Ctrl-A, then the byte, to the focused VM (Ctrl-A and a key that is no command).</summary>
        ToVmAfterCtrlA,
        /// <summary>Ctrl-A C: the keyboard now reaches the monitor (<see cref="ConsoleSwitch.InMonitor"/>) or the VM again.</summary>
        Toggle,
        /// <summary>Monitor: the byte was added to the line (echo it).</summary>
        Echo,
        /// <summary>Monitor: the last byte of the line was erased (backspace).</summary>
        Erase,
        /// <summary>Monitor: Enter ended the line (<see cref="ConsoleSwitch.Line"/>; then <see cref="ConsoleSwitch.ClearLine"/>).</summary>
        Line,
        /// <summary>Ctrl-A H or Ctrl-A ?: show the keys.</summary>
        Help,
    }

    /// <summary>
    /// The serial console's keys (QEMU's <c>-serial mon:stdio</c> conventions): the keyboard reaches
    /// the focused VM's COM1, or the monitor's prompt. Ctrl-A C switches between them; Ctrl-A Ctrl-A
    /// sends one Ctrl-A to the VM; Ctrl-A H (or ?) shows the keys; Ctrl-A and any other key send both
    /// bytes to the VM, so nothing typed is lost (Ctrl-A X included: the build driver's terminal
    /// quits on it before it reaches the machine, and on a real serial line the kernel does not
    /// power the host off for a key). In the monitor, a line editor: printable ASCII, backspace
    /// (BS or DEL), Enter (CR, LF or CR LF) ends the line. Pure: the host tests drive it byte by byte.
    /// </summary>
    public sealed class ConsoleSwitch
    {
        /// <summary>The escape key's byte.</summary>
        public const byte CtrlA = 0x01;

        private readonly byte[] _line = new byte[MonitorParser.MaxLine];
        private int _length;
        private bool _afterCtrlA;
        private bool _afterCr;

        /// <summary>True while the keyboard reaches the monitor.</summary>
        public bool InMonitor;

        /// <summary>True after a Ctrl-A, while the second key is awaited.</summary>
        public bool AfterCtrlA => _afterCtrlA;

        /// <summary>The monitor line typed so far.</summary>
        public ReadOnlySpan<byte> Line => new ReadOnlySpan<byte>(_line, 0, _length);

        /// <summary>Empties the monitor line (after its command ran).</summary>
        public void ClearLine() => _length = 0;

        /// <summary>Takes one typed byte and says what to do with it.</summary>
        public SwitchAction Feed(byte b)
        {
            bool afterCr = _afterCr;
            _afterCr = false;
            if (_afterCtrlA)
            {
                _afterCtrlA = false;
                if (b == (byte)'c' || b == (byte)'C')
                {
                    InMonitor = !InMonitor;
                    return SwitchAction.Toggle;
                }
                if (b == (byte)'h' || b == (byte)'H' || b == (byte)'?')
                    return SwitchAction.Help;
                if (!InMonitor)
                    return b == CtrlA ? SwitchAction.ToVm : SwitchAction.ToVmAfterCtrlA;
                if (b == CtrlA)
                    return SwitchAction.None;
                // In the monitor a Ctrl-A that is no command is dropped; the key counts as typed.
            }
            else if (b == CtrlA)
            {
                _afterCtrlA = true;
                return SwitchAction.None;
            }
            if (!InMonitor)
                return SwitchAction.ToVm;
            if (b == (byte)'\r' || b == (byte)'\n')
            {
                if (b == (byte)'\n' && afterCr)
                    return SwitchAction.None;       // CR LF is one Enter
                _afterCr = b == (byte)'\r';
                return SwitchAction.Line;
            }
            if (b == 8 || b == 127)
            {
                if (_length == 0)
                    return SwitchAction.None;
                _length--;
                return SwitchAction.Erase;
            }
            if (b < 32 || b > 126 || _length == _line.Length)
                return SwitchAction.None;
            _line[_length++] = b;
            return SwitchAction.Echo;
        }
    }
}
