using System;
using Tandem.Kvm.Acpi;
using Xunit;

namespace Tandem.Kvm.Tests.Acpi;

public class AmlTests
{
    [Theory]
    [InlineData(0, new byte[] { 0x01 })]
    [InlineData(7, new byte[] { 0x08 })]
    [InlineData(62, new byte[] { 0x3F })] // 63 in all: the last one-byte length
    [InlineData(63, new byte[] { 0x41, 0x04 })] // 65 = 0x41: two bytes, low nibble 1, then 0x04
    [InlineData(64, new byte[] { 0x42, 0x04 })]
    [InlineData(0xFFF - 2, new byte[] { 0x4F, 0xFF })] // 0xFFF: the last two-byte length
    [InlineData(0xFFF - 1, new byte[] { 0x81, 0x00, 0x01 })] // 0x1001 in three bytes
    [InlineData(0xF_FFFF - 3, new byte[] { 0x8F, 0xFF, 0xFF })]
    [InlineData(0xF_FFFF - 2, new byte[] { 0xC1, 0x00, 0x00, 0x01 })] // 0x100001 in four bytes
    [InlineData(Aml.MaxPkgLength - 4, new byte[] { 0xCF, 0xFF, 0xFF, 0xFF })]
    public void PkgLengthEncodesTheTotalIncludingItself(int contentLength, byte[] expected)
    {
        byte[] b = new byte[8];
        int size = Aml.WritePkgLength(b, 1, contentLength);
        Assert.Equal(expected.Length, size);
        Assert.Equal(expected.Length, Aml.PkgLengthSize(contentLength));
        Assert.Equal(expected, b.AsSpan(1, size).ToArray());
        (int value, int read) = AmlReader.PkgLength(b, 1);
        Assert.Equal(size, read);
        Assert.Equal(contentLength + size, value);
    }

    [Fact]
    public void PkgLengthRoundTripsAcrossEveryFormBoundary()
    {
        byte[] b = new byte[4];
        for (int c = 0; c < 0x2_0000; c++)
        {
            int size = Aml.WritePkgLength(b, 0, c);
            (int value, int read) = AmlReader.PkgLength(b, 0);
            Assert.Equal(size, read);
            Assert.Equal(c + size, value);
            // The shortest form: one byte fewer could not hold the total.
            int limit = size switch { 1 => 0x3F, 2 => 0xFFF, 3 => 0xF_FFFF, _ => Aml.MaxPkgLength };
            Assert.True(c + size <= limit);
            if (size > 1)
            {
                int shorter = size == 2 ? 0x3F : size == 3 ? 0xFFF : 0xF_FFFF;
                Assert.True(c + size - 1 > shorter, $"content {c} took {size} bytes");
            }
        }
    }

    [Fact]
    public void APackageTooLongForAPkgLengthIsABug()
    {
        Assert.Equal(0, Aml.PkgLengthSize(Aml.MaxPkgLength - 3));
        Assert.Equal(0, Aml.PkgLengthSize(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Aml.WritePkgLength(new byte[4], 0, Aml.MaxPkgLength));
    }

    [Theory]
    [InlineData(0u, new byte[] { 0x00 })]
    [InlineData(1u, new byte[] { 0x01 })]
    [InlineData(5u, new byte[] { 0x0A, 0x05 })]
    [InlineData(0xFFu, new byte[] { 0x0A, 0xFF })]
    [InlineData(0x100u, new byte[] { 0x0B, 0x00, 0x01 })]
    [InlineData(0x1_0000u, new byte[] { 0x0C, 0x00, 0x00, 0x01, 0x00 })]
    public void IntegersTakeTheirShortestForm(uint value, byte[] expected)
    {
        byte[] b = new byte[8];
        int size = Aml.WriteInteger(b, 0, value);
        Assert.Equal(expected, b.AsSpan(0, size).ToArray());
        Assert.Equal(size, Aml.IntegerSize(value));
        Assert.Equal(((ulong)value, size), AmlReader.Integer(b, 0));
    }

    [Fact]
    public void TheDsdtBodyIsExactlyNameS5Package()
    {
        (LowRam ram, AcpiLayout layout) = AcpiTablesTests.Written(1);
        byte[] aml = new AcpiReader(ram.Bytes).Slice(layout.Dsdt + 36, AcpiTables.DsdtLength - 36);
        Assert.Equal(new byte[] { 0x08, (byte)'_', (byte)'S', (byte)'5', (byte)'_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00 }, aml);
    }
}
