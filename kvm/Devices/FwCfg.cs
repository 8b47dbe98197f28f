using System;

namespace Tandem.Kvm.Devices
{
    /// <summary>
    /// QEMU's firmware configuration device, traditional I/O interface only (QEMU
    /// docs/specs/fw_cfg.rst): write a 16-bit item key to the selector at 0x510, then read the
    /// item's bytes one by one from the data port 0x511. Selecting resets the read offset; reads
    /// past an item's end, and every read of an item that does not exist, return 0.
    /// <list type="bullet">
    /// <item>0x0000 signature "QEMU"; 0x0001 ID = 1 (traditional interface, no DMA); 0x0003 RAM
    /// size (u64 LE); 0x0005 CPU count (u16 LE); 0x000F maximum CPU count (u16 LE); 0x0014 and
    /// 0x0015 the command line's size (u32 LE, NUL included) and bytes (NUL-terminated), when the VM
    /// has one (<see cref="SetCommandLine"/>).</item>
    /// <item>0x0019 the file directory: a big-endian u32 count, then per file { u32 size BE, u16
    /// select BE, u16 reserved, char name[56] NUL-padded }, in the order the files were added.</item>
    /// <item>Files (added at VM creation with <see cref="AddFile"/>) at keys 0x0020 on.</item>
    /// </list>
    /// A read wider than a byte returns that many successive bytes, the first in the most
    /// significant position (the order QEMU's data register uses). Not emulated: the DMA
    /// interface (0x514), writes through the data port, architecture-local keys (0x8000 on);
    /// the write-channel bit (0x4000) of a key is ignored.
    /// </summary>
    public sealed class FwCfg : IPortDevice
    {
        /// <summary>The selector port (16-bit writes).</summary>
        public const ushort SelectorPort = 0x510;
        /// <summary>The data port (8-bit reads).</summary>
        public const ushort DataPort = 0x511;
        /// <summary>Ports the device claims: the selector and the data port.</summary>
        public const int PortCount = 2;

        /// <summary>Key of the "QEMU" signature.</summary>
        public const ushort KeySignature = 0x0000;
        /// <summary>Key of the interface ID (feature bits).</summary>
        public const ushort KeyId = 0x0001;
        /// <summary>Key of the RAM size in bytes (u64 LE).</summary>
        public const ushort KeyRamSize = 0x0003;
        /// <summary>Key of the CPU count (u16 LE).</summary>
        public const ushort KeyCpuCount = 0x0005;
        /// <summary>Key of the maximum CPU count (u16 LE).</summary>
        public const ushort KeyMaxCpus = 0x000F;
        /// <summary>Key of the command line's size in bytes, its NUL included (u32 LE; QEMU's FW_CFG_CMDLINE_SIZE).</summary>
        public const ushort KeyCmdlineSize = 0x0014;
        /// <summary>Key of the command line: its bytes, then a NUL (QEMU's FW_CFG_CMDLINE_DATA).</summary>
        public const ushort KeyCmdlineData = 0x0015;
        /// <summary>Key of the file directory.</summary>
        public const ushort KeyFileDir = 0x0019;
        /// <summary>Key of the first file.</summary>
        public const ushort KeyFirstFile = 0x0020;

        /// <summary>Bytes per file directory entry.</summary>
        public const int DirEntrySize = 64;
        /// <summary>Bytes of a file name, NUL included.</summary>
        public const int NameSize = 56;

        private readonly byte[]?[] _items;
        private readonly int[] _lengths;
        private readonly byte[] _dir;
        private int _files;
        private ushort _key;
        private int _offset;

        /// <summary>
        /// A device for a VM with <paramref name="ramBytes"/> of RAM and <paramref name="cpus"/>
        /// vCPUs (<paramref name="maxCpus"/> at most), with room for <paramref name="fileCapacity"/> files.
        /// </summary>
        public FwCfg(ulong ramBytes, ushort cpus, ushort maxCpus, int fileCapacity)
        {
            _items = new byte[]?[KeyFirstFile + fileCapacity];
            _lengths = new int[_items.Length];
            byte[] signature = new byte[4];
            signature[0] = (byte)'Q';
            signature[1] = (byte)'E';
            signature[2] = (byte)'M';
            signature[3] = (byte)'U';
            Set(KeySignature, signature);
            Set(KeyId, Le(1, 4));
            Set(KeyRamSize, Le(ramBytes, 8));
            Set(KeyCpuCount, Le(cpus, 2));
            Set(KeyMaxCpus, Le(maxCpus, 2));
            _dir = new byte[4 + DirEntrySize * fileCapacity];
            Set(KeyFileDir, _dir);
            _lengths[KeyFileDir] = 4;
        }

        /// <summary>
        /// The VM's command line (<c>vm=...,cmdline="..."</c>, as the loader hands it to the guest):
        /// <see cref="KeyCmdlineSize"/> becomes its length plus one (the NUL) and
        /// <see cref="KeyCmdlineData"/> its bytes up to the first NUL, then a NUL, as QEMU gives
        /// them with <c>-append</c>. Copied; a second call replaces the first. A VM without a command
        /// line has neither item (both read 0). Call while the VM is built.
        /// </summary>
        public void SetCommandLine(ReadOnlySpan<byte> text)
        {
            int n = 0;
            while (n < text.Length && text[n] != 0)
                n++;
            byte[] data = new byte[n + 1];
            for (int i = 0; i < n; i++)
                data[i] = text[i];
            Set(KeyCmdlineSize, Le((ulong)(n + 1), 4));
            Set(KeyCmdlineData, data);
        }

        /// <summary>Back to the power-on state (the VM restarts): key 0 selected, offset 0. Items stay.</summary>
        public void Reset()
        {
            _key = 0;
            _offset = 0;
        }

        /// <summary>Files added so far.</summary>
        public int Files => _files;

        /// <summary>The key last written to the selector.</summary>
        public ushort Selected => _key;

        /// <summary>
        /// Adds a file named <paramref name="name"/> (at most 55 bytes, no NUL) holding
        /// <paramref name="contents"/> (kept by reference, not copied), and returns its key;
        /// 0xFFFF if the device is full or the name is empty or too long. Call while the VM is built.
        /// </summary>
        public ushort AddFile(ReadOnlySpan<byte> name, byte[] contents)
        {
            if (_files + KeyFirstFile >= _items.Length || name.Length == 0 || name.Length >= NameSize)
                return 0xFFFF;
            ushort key = (ushort)(KeyFirstFile + _files);
            Set(key, contents);
            int e = 4 + DirEntrySize * _files;
            PutBe(_dir, e, (uint)contents.Length, 4);
            PutBe(_dir, e + 4, key, 2);
            for (int i = 0; i < name.Length; i++)
                _dir[e + 8 + i] = name[i];
            _files++;
            PutBe(_dir, 0, (uint)_files, 4);
            _lengths[KeyFileDir] = 4 + DirEntrySize * _files;
            return key;
        }

        /// <inheritdoc/>
        public uint Read(ushort port, int size)
        {
            if (port == SelectorPort)
                return _key;
            uint value = 0;
            for (int i = 0; i < size; i++)
                value = (value << 8) | NextByte();
            return value;
        }

        /// <inheritdoc/>
        public void Write(ushort port, int size, uint value)
        {
            if (port != SelectorPort)
                return;
            _key = (ushort)value;
            _offset = 0;
        }

        private byte NextByte()
        {
            // Bit 14 (the write channel) does not change what is read; bit 15 selects the
            // architecture's own keys, of which there are none.
            int index = _key & 0x3FFF;
            if ((_key & 0x8000) != 0 || index >= _items.Length)
                return 0;
            byte[]? item = _items[index];
            if (item == null || _offset >= _lengths[index])
                return 0;
            return item[_offset++];
        }

        private void Set(ushort key, byte[] data)
        {
            _items[key] = data;
            _lengths[key] = data.Length;
        }

        private static byte[] Le(ulong value, int bytes)
        {
            byte[] b = new byte[bytes];
            for (int i = 0; i < bytes; i++)
                b[i] = (byte)(value >> (8 * i));
            return b;
        }

        private static void PutBe(byte[] dest, int offset, uint value, int bytes)
        {
            for (int i = 0; i < bytes; i++)
                dest[offset + i] = (byte)(value >> (8 * (bytes - 1 - i)));
        }
    }
}
