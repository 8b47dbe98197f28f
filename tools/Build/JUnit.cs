using System.Globalization;
using System.Xml.Linq;

namespace Tandem.Build;

/// <summary>One test case of a JUnit report: a failure text, a skip reason, or neither (passed).</summary>
internal sealed record JUnitCase(string Name, double Seconds, string? Failure, string? Skipped, string? Output = null);

/// <summary>One suite: a kernel configuration, a host test project, the mutation check or the format check.</summary>
internal sealed class JUnitSuite(string name)
{
    public string Name { get; } = name;
    public List<JUnitCase> Cases { get; } = [];
    public Dictionary<string, string> Properties { get; } = [];
    /// <summary>Why the suite as a whole broke (no summary line, a crash, a build error), if it did.</summary>
    public string? Error { get; set; }
}

/// <summary>
/// Writes the suites as one JUnit XML file (the format CI systems read: testsuites / testsuite /
/// testcase with failure, skipped and error children).
/// </summary>
internal static class JUnit
{
    public static void Write(string path, IReadOnlyList<JUnitSuite> suites)
    {
        static string Seconds(double s) => s.ToString("0.000", CultureInfo.InvariantCulture);
        var root = new XElement("testsuites", new XAttribute("name", "tandem"),
            new XAttribute("tests", suites.Sum(s => s.Cases.Count)),
            new XAttribute("failures", suites.Sum(s => s.Cases.Count(c => c.Failure != null))),
            new XAttribute("errors", suites.Count(s => s.Error != null)),
            new XAttribute("skipped", suites.Sum(s => s.Cases.Count(c => c.Failure == null && c.Skipped != null))),
            new XAttribute("time", Seconds(suites.Sum(s => s.Cases.Sum(c => c.Seconds)))));
        foreach (JUnitSuite suite in suites)
        {
            var element = new XElement("testsuite", new XAttribute("name", suite.Name),
                new XAttribute("tests", suite.Cases.Count),
                new XAttribute("failures", suite.Cases.Count(c => c.Failure != null)),
                new XAttribute("errors", suite.Error != null ? 1 : 0),
                new XAttribute("skipped", suite.Cases.Count(c => c.Failure == null && c.Skipped != null)),
                new XAttribute("time", Seconds(suite.Cases.Sum(c => c.Seconds))));
            if (suite.Properties.Count > 0)
                element.Add(new XElement("properties", suite.Properties.Select(p =>
                    new XElement("property", new XAttribute("name", p.Key), new XAttribute("value", p.Value)))));
            foreach (JUnitCase c in suite.Cases)
            {
                var testcase = new XElement("testcase", new XAttribute("classname", suite.Name), new XAttribute("name", c.Name),
                    new XAttribute("time", Seconds(c.Seconds)));
                if (c.Failure != null)
                    testcase.Add(new XElement("failure", new XAttribute("message", FirstLine(c.Failure)), Clean(c.Failure)));
                else if (c.Skipped != null)
                    testcase.Add(new XElement("skipped", new XAttribute("message", FirstLine(c.Skipped))));
                if (c.Output != null)
                    testcase.Add(new XElement("system-out", Clean(c.Output)));
                element.Add(testcase);
            }
            if (suite.Error != null)
                element.Add(new XElement("error", new XAttribute("message", FirstLine(suite.Error)), Clean(suite.Error)));
            root.Add(element);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var settings = new System.Xml.XmlWriterSettings { Encoding = new System.Text.UTF8Encoding(false), Indent = true };
        using var writer = System.Xml.XmlWriter.Create(path, settings);
        new XDocument(new XDeclaration("1.0", "utf-8", null), root).Save(writer);
    }

    private static string FirstLine(string s) => Clean(s.Split('\n')[0].Trim());

    /// <summary>XML 1.0 has no place for most control characters; serial text can hold them.</summary>
    private static string Clean(string s) =>
        new(s.Where(c => c is '\n' or '\t' or '\r' || (c >= ' ' && !char.IsSurrogate(c) && c != '\uFFFE' && c != '\uFFFF')).ToArray());
}
