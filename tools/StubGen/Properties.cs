using System.Runtime.CompilerServices;

// Host-side tests (and the boot test generator) build extra objects with the same ObjectBuilder.
[assembly: InternalsVisibleTo("Tandem.StubGen.Tests")]
