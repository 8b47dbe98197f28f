namespace Tandem.Mm;

/// <summary>
/// Receives missing-page faults of a userfault region (seed 002: postcopy migration, memory
/// externalisation). The faulting context waits in the kernel after this call and retries when
/// the handler fills the page (<c>AddressSpace.UserfaultCopy</c>/<c>UserfaultZero</c>) or wakes it
/// (<c>UserfaultWake</c>); it never sees an error.
/// </summary>
public interface IUserfaultHandler
{
    /// <summary>
    /// A fault hit the missing page at <paramref name="page"/>. Called from the faulting context
    /// with no mm lock held; must not wait for the fill itself (queue the request and return). May
    /// be called again for the same page by other faulting contexts.
    /// </summary>
    void OnMissing(IAddressSpace space, VirtAddr page, bool write);
}
