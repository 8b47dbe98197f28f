namespace Tandem.Kvm.Vmx.Exits
{
    /// <summary>INVD and WBINVD (exit reasons 13 and 54): guest memory is ordinary write-back RAM; nothing to do.</summary>
    internal static class CacheExit
    {
        public static ExitAction Handle(Vcpu v, in ExitInfo e)
        {
            e.Skip();
            return ExitAction.Resume;
        }
    }
}
