using Internal.Runtime;

namespace System
{
    /// <summary>The root of every class. Its layout (one MethodTable pointer) is a contract with ILC.</summary>
    public class Object
    {
#pragma warning disable CS0169, CS0649 // set by the allocator, read through unsafe code
        internal unsafe MethodTable* m_pMethodTable;
#pragma warning restore CS0169, CS0649

        public Object() { }

        public virtual bool Equals(object? obj) => this == obj;

        public virtual int GetHashCode() => 0;

        public virtual string? ToString() => null;

        /// <summary>Finalizers never run: the kernel heap has no collector.</summary>
        ~Object() { }
    }
}
