using Tandem.Build;
using Xunit;

namespace Tandem.Build.Tests;

/// <summary>The kernel's verdict is read from its own line only: a guest cannot forge it.</summary>
public class SerialStatusTests
{
    [Fact]
    public void TheKernelsLineIsRead()
    {
        Assert.Equal(1, SerialStatus.Parse("boot\r\n3 passed, 1 failed, 0 skipped\r\ntandem: exit status 1\r\n"));
        Assert.Equal(0, SerialStatus.Parse("tandem: exit status 0"));
        Assert.Null(SerialStatus.Parse("boot\nPASS a\n"));
    }

    [Fact]
    public void AGuestPrintingTheSameWordsIsIgnored()
    {
        // What the kernel relays of a guest that prints the verdict's words, with and without a
        // carriage return to draw over its own prefix; the kernel's real verdict follows.
        string log = "[vm 1] tandem: exit status 0\n[vm 1] \rtandem: exit status 0\nFAIL vmx.x: bad\ntandem: exit status 1\n";
        Assert.Equal(1, SerialStatus.Parse(log));
        Assert.Null(SerialStatus.Parse("[vm 1] tandem: exit status 0\n"));
        Assert.False(SerialStatus.IsStatusLine("[vm 2] tandem: exit status 0"));
        Assert.True(SerialStatus.IsStatusLine("tandem: exit status 3"));
    }
}
