namespace Tandem.Kernel.Console
{
    /// <summary>
    /// How much the kernel log says (<c>loglevel=</c>): a line is written when its level is at or
    /// below <c>Log.Level</c>. Here, with the portable parsers, because the command-line
    /// parser reads it on the host too.
    /// </summary>
    public enum LogLevel
    {
        Error = 0,
        Warn = 1,
        Info = 2,
        Debug = 3,
    }
}
