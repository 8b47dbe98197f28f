using System.Globalization;
using System.Xml.Linq;

namespace Tandem.Build;

/// <summary>
/// Reads the TRX file that <c>dotnet test --logger trx</c> writes (Visual Studio's test result
/// XML): one <c>UnitTestResult</c> per test with its outcome, duration, and error message or
/// skip reason.
/// </summary>
internal static class Trx
{
    private static readonly XNamespace Ns = "http://microsoft.com/schemas/VisualStudio/TeamTest/2010";

    public static List<JUnitCase> Read(string path)
    {
        XDocument doc = XDocument.Load(path);
        var cases = new List<JUnitCase>();
        foreach (XElement r in doc.Descendants(Ns + "UnitTestResult"))
        {
            string name = (string?)r.Attribute("testName") ?? "?";
            string outcome = (string?)r.Attribute("outcome") ?? "";
            double seconds = TimeSpan.TryParse((string?)r.Attribute("duration"), CultureInfo.InvariantCulture, out var d) ? d.TotalSeconds : 0;
            XElement? output = r.Element(Ns + "Output");
            string? message = output?.Element(Ns + "ErrorInfo")?.Element(Ns + "Message")?.Value;
            string? stack = output?.Element(Ns + "ErrorInfo")?.Element(Ns + "StackTrace")?.Value;
            string? stdout = output?.Element(Ns + "StdOut")?.Value;
            string? failure = null, skipped = null;
            switch (outcome)
            {
                case "Passed":
                    break;
                case "NotExecuted":
                case "Inconclusive":
                    skipped = message ?? stdout ?? "not executed";
                    break;
                default:
                    failure = (message ?? $"outcome {outcome}") + (stack != null ? "\n" + stack : "");
                    break;
            }
            cases.Add(new JUnitCase(name, seconds, failure, skipped, stdout));
        }
        return cases;
    }
}
