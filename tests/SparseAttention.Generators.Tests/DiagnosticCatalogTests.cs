using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;

namespace SparseAttention.Generators.Tests;

/// <summary>
/// The descriptor catalog, the docs pages and the analyzer release files agree: an ID without a page or a release
/// entry, or a page or entry for an ID that does not exist, fails here (Mapperly checks the same at build time).
/// </summary>
public class DiagnosticCatalogTests
{
    private static readonly string RepoRoot = SparseAttention.Testing.RepositoryRoot.Find();
    /// <summary>The whole catalog: the analyzer's rules and the generator's own SPA0014.</summary>
    private static readonly DiagnosticDescriptor[] Catalog = GeneratorInternals.Catalog;

    [Fact]
    public void TheAnalyzerSupportsEveryIdButTheGeneratorsOwn()
    {
        Assert.Equal(Catalog.Select(descriptor => descriptor.Id).Where(id => id != "SPA0014"), new AttentionAnalyzer().SupportedDiagnostics.Select(descriptor => descriptor.Id));
    }

    [Fact]
    public void EveryIdHasADocsPageNamingItsTitleAndBothExamples()
    {
        string folder = Path.Combine(RepoRoot, "docs", "diagnostics");
        var pages = Directory.GetFiles(folder, "SPA*.md").Select(Path.GetFileNameWithoutExtension).ToHashSet();
        Assert.Equal(Catalog.Select(descriptor => descriptor.Id).OrderBy(id => id), pages.OrderBy(id => id));
        foreach (DiagnosticDescriptor descriptor in Catalog)
        {
            string page = File.ReadAllText(Path.Combine(folder, descriptor.Id + ".md"));
            Assert.StartsWith("# " + descriptor.Id + ": " + descriptor.Title, page);
            Assert.Contains("**Severity:** " + descriptor.DefaultSeverity, page);
            Assert.Contains("## What triggers it", page);
            Assert.Contains("## Wrong", page);
            Assert.Contains("## Right", page);
            Assert.Equal(DiagnosticCatalogLink(descriptor.Id), descriptor.HelpLinkUri);
            Assert.Contains("[" + descriptor.Id + "](" + descriptor.Id + ".md) | " + descriptor.DefaultSeverity + " | " + descriptor.Title, File.ReadAllText(Path.Combine(folder, "README.md")));
        }
    }

    [Fact]
    public void EveryIdIsInAnAnalyzerReleaseWithItsSeverityAndTitle()
    {
        string text = File.ReadAllText(Path.Combine(RepoRoot, "src", "Generators", "AnalyzerReleases.Shipped.md"))
            + File.ReadAllText(Path.Combine(RepoRoot, "src", "Generators", "AnalyzerReleases.Unshipped.md"));
        var entries = Regex.Matches(text, @"^(SPA\d{4}) \| (\w+) \| (\w+) \| (.+)$", RegexOptions.Multiline)
            .ToDictionary(match => match.Groups[1].Value, match => (Category: match.Groups[2].Value, Severity: match.Groups[3].Value, Title: match.Groups[4].Value.Trim()));
        Assert.Equal(Catalog.Select(descriptor => descriptor.Id).OrderBy(id => id), entries.Keys.OrderBy(id => id));
        foreach (DiagnosticDescriptor descriptor in Catalog)
        {
            Assert.Equal(("SparseAttention", descriptor.DefaultSeverity.ToString(), descriptor.Title.ToString()), entries[descriptor.Id]);
        }
    }

    [Fact]
    public void IdsAreConsecutiveInOneCategoryAndEnabled()
    {
        Assert.Equal(Enumerable.Range(1, Catalog.Length).Select(number => $"SPA{number:D4}"), Catalog.Select(descriptor => descriptor.Id));
        Assert.All(Catalog, descriptor =>
        {
            Assert.Equal("SparseAttention", descriptor.Category);
            Assert.True(descriptor.IsEnabledByDefault);
        });
    }

    private static string DiagnosticCatalogLink(string id) => "docs/diagnostics/" + id + ".md";
}
