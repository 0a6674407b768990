using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;
using SparseAttention.Generators.Diagnostics;

namespace SparseAttention.Generators;

/// <summary>
/// Reports every invalid or suspicious SparseAttention declaration, located on the offending attribute argument.
/// It runs the generator's own <see cref="AttentionGenerator.Parser"/>, so what it accepts is exactly what the
/// generator emits code for; the generator itself reports nothing. It also reports calls that can only throw: the
/// streaming members (<c>CreateCache</c>, <c>Decode</c>, <c>Prefill</c>) of a kernel whose pattern a rolling cache
/// cannot serve, with the reason <see cref="AttentionPattern.FindStreamingProblem(int)"/> gives the runtime.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class AttentionAnalyzer : DiagnosticAnalyzer
{
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } = ImmutableArray.Create(DiagnosticDescriptors.Analyzer);

    public override void Initialize(AnalysisContext context)
    {
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.EnableConcurrentExecution();
        context.RegisterSymbolAction(AnalyzeType, SymbolKind.NamedType);
        context.RegisterOperationAction(AnalyzeStreamingCall, OperationKind.Invocation, OperationKind.MethodReference);
    }

    /// <summary>The generated members that need a pattern a rolling KV cache can serve.</summary>
    private static readonly ImmutableHashSet<string> StreamingMembers = ImmutableHashSet.Create("CreateCache", "Decode", "Prefill");

    private static void AnalyzeStreamingCall(OperationAnalysisContext context)
    {
        IMethodSymbol? method = context.Operation switch
        {
            IInvocationOperation invocation => invocation.TargetMethod,
            IMethodReferenceOperation reference => reference.Method,
            _ => null,
        };
        if (method is null || !method.IsStatic || !StreamingMembers.Contains(method.Name)
            || !method.ContainingType.GetAttributes().Any(attribute => attribute.AttributeClass?.ToDisplayString() == AttentionGenerator.Parser.KernelAttribute))
        {
            return;
        }

        // A declaration with errors is reported on its attributes and has no generated members to call.
        Models.KernelModel? kernel = AttentionGenerator.Parser.Parse(method.ContainingType, diagnostics: null, context.CancellationToken);
        string? problem = kernel?.Pattern.StreamingProblem;
        if (problem is not null)
        {
            context.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.StreamingNotSupported, context.Operation.Syntax.GetLocation(), method.ContainingType.Name, method.Name, problem));
        }
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
