using System;

namespace Internal.Runtime.CompilerHelpers
{
    /// <summary>Called by generated code for the checks the compiler inserts.</summary>
    internal static class ThrowHelpers
    {
        private static void ThrowOverflowException() => throw new OverflowException();
        private static void ThrowIndexOutOfRangeException() => throw new IndexOutOfRangeException();
        private static void ThrowNullReferenceException() => throw new NullReferenceException();
        private static void ThrowDivideByZeroException() => throw new DivideByZeroException();
        private static void ThrowArrayTypeMismatchException() => throw new ArrayTypeMismatchException();
        private static void ThrowPlatformNotSupportedException() => throw new PlatformNotSupportedException();
        private static void ThrowTypeLoadException() => throw new TypeLoadException();
        private static void ThrowTypeLoadExceptionWithArgument() => throw new TypeLoadException();
        private static void ThrowArgumentException() => throw new ArgumentException();
        private static void ThrowArgumentOutOfRangeException() => throw new ArgumentOutOfRangeException();
        private static void ThrowInvalidProgramException() => throw new InvalidProgramException();
        private static void ThrowInvalidProgramExceptionWithArgument() => throw new InvalidProgramException();
        private static void ThrowMissingMethodException() => throw new NotSupportedException("missing method");
        private static void ThrowMissingFieldException() => throw new NotSupportedException("missing field");
        private static void ThrowFileNotFoundException() => throw new NotSupportedException("file not found");
        private static void ThrowBadImageFormatException() => throw new NotSupportedException("bad image format");
        private static void ThrowMarshalDirectiveException() => throw new NotSupportedException("marshalling");
        private static void ThrowAmbiguousMatchException() => throw new NotSupportedException("ambiguous match");
        private static void ThrowNotImplementedException() => throw new NotImplementedException();
        private static void ThrowInvalidCastException() => throw new InvalidCastException();
        private static void ThrowFeatureBodyRemoved() => throw new NotSupportedException("feature body removed");
    }
}
