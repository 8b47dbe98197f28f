using System.Runtime.CompilerServices;
using Internal.Runtime;

namespace System.Runtime
{
    /// <summary>
    /// The cast and array-store helpers ILC calls by name. No variance and no array covariance:
    /// a class cast walks the base chain, an interface cast scans the interface map.
    /// </summary>
    internal static unsafe class TypeCast
    {
        private static bool IsClass(MethodTable* type, MethodTable* target)
        {
            for (MethodTable* t = type; t != null; t = t->BaseType)
            {
                if (t == target)
                    return true;
            }
            return false;
        }

        private static bool ImplementsInterface(MethodTable* type, MethodTable* target)
        {
            MethodTable** interfaces = type->InterfaceMap;
            for (int i = 0; i < type->_usNumInterfaces; i++)
            {
                if (interfaces[i] == target)
                    return true;
            }
            return false;
        }

        private static bool IsAssignable(MethodTable* type, MethodTable* target) =>
            type == target || (target->IsInterface ? ImplementsInterface(type, target) : IsClass(type, target));

        private static object? IsInstanceOfClass(MethodTable* target, object? obj) =>
            obj == null || IsClass(obj.m_pMethodTable, target) ? obj : null;

        private static object? IsInstanceOfInterface(MethodTable* target, object? obj) =>
            obj == null || ImplementsInterface(obj.m_pMethodTable, target) ? obj : null;

        private static object? IsInstanceOfAny(MethodTable* target, object? obj) =>
            obj == null || IsAssignable(obj.m_pMethodTable, target) ? obj : null;

        private static object? IsInstanceOfException(MethodTable* target, object? obj) => IsInstanceOfAny(target, obj);

        private static object? CheckCastClass(MethodTable* target, object? obj)
        {
            if (obj == null || IsClass(obj.m_pMethodTable, target))
                return obj;
            throw new InvalidCastException();
        }

        private static object? CheckCastClassSpecial(MethodTable* target, object? obj) => CheckCastClass(target, obj);

        private static object? CheckCastInterface(MethodTable* target, object? obj)
        {
            if (obj == null || ImplementsInterface(obj.m_pMethodTable, target))
                return obj;
            throw new InvalidCastException();
        }

        private static object? CheckCastAny(MethodTable* target, object? obj)
        {
            if (obj == null || IsAssignable(obj.m_pMethodTable, target))
                return obj;
            throw new InvalidCastException();
        }

        private static void StelemRef(object?[] array, nint index, object? obj)
        {
            if ((nuint)index >= (uint)array.Length)
                throw new IndexOutOfRangeException();
            ref object? element = ref Unsafe.As<byte, object?>(ref Unsafe.As<RawArrayData>(array).Data);
            element = ref Unsafe.Add(ref element, index);
            if (obj != null && !IsAssignable(obj.m_pMethodTable, array.m_pMethodTable->_relatedType))
                throw new ArrayTypeMismatchException();
            element = obj;
        }

        private static ref object? LdelemaRef(object?[] array, nint index, MethodTable* elementType)
        {
            if ((nuint)index >= (uint)array.Length)
                throw new IndexOutOfRangeException();
            if (array.m_pMethodTable->_relatedType != elementType)
                throw new ArrayTypeMismatchException();
            ref object? element = ref Unsafe.As<byte, object?>(ref Unsafe.As<RawArrayData>(array).Data);
            return ref Unsafe.Add(ref element, index);
        }
    }
}
