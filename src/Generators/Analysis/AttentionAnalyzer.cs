using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using SparseAttention.Generators.Diagnostics;

namespace SparseAttention.Generators;

/// <summary>
/// Reports every invalid or suspicious SparseAttention declaration, located on the offending attribute argument.
/// It runs the generator's own <see cref="AttentionGenerator.Parser"/>, so what it accepts is exactly what the
/// generator emits code for; the generator itself reports nothing.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class AttentionAnalyzer : DiagnosticAnalyzer
{
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } = ImmutableArray.Create(DiagnosticDescriptors.All);

    public override void Initialize(AnalysisContext context)
    {
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.EnableConcurrentExecution();
        context.RegisterSymbolAction(AnalyzeType, SymbolKind.NamedType);
    }

    private static void AnalyzeType(SymbolAnalysisContext context)
    {
        var type = (INamedTypeSymbol)context.Symbol;
        ImmutableArray<AttributeData> attributes = type.GetAttributes();
        if (attributes.IsEmpty)
        {
            return;
        }

        if (attributes.Any(attribute => attribute.AttributeClass?.ToDisplayString() == AttentionGenerator.Parser.KernelAttribute))
        {
            var diagnostics = new List<Diagnostic>();
            AttentionGenerator.Parser.Parse(type, diagnostics, context.CancellationToken);
            foreach (Diagnostic diagnostic in diagnostics)
            {
                context.ReportDiagnostic(diagnostic);
            }

            return;
        }

        foreach (AttributeData attribute in attributes)
        {
            if (AttentionGenerator.Parser.PatternAttributes.Contains(attribute.AttributeClass?.ToDisplayString()))
            {
                context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.PatternWithoutKernel, AttentionGenerator.Parser.AttributeLocation(attribute), AttentionGenerator.Parser.ShortName(attribute), type.Name));
            }
        }
    }
}
