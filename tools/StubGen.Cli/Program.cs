// Writes the stub object to the path given as the first argument (default: stubs.o).
var path = args.Length > 0 ? args[0] : "stubs.o";
File.WriteAllBytes(path, Tandem.StubGen.StubImage.BuildObject());
Console.WriteLine($"wrote {path}");
