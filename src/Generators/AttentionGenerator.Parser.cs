using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using SparseAttention.Generators.Diagnostics;
using SparseAttention.Generators.Helpers;
using SparseAttention.Generators.Models;

namespace SparseAttention.Generators;

/// <summary>What the parser found for one declaration: a model to emit (null when invalid) and diagnostics.</summary>
internal sealed record ParseResult(KernelModel? Kernel, EquatableArray<DiagnosticInfo> Diagnostics);

public sealed partial class AttentionGenerator
{
    /// <summary>
    /// Turns a <c>[AttentionKernel]</c> class into a <see cref="KernelModel"/>, validating every attribute with
    /// the same rules the runtime's <c>AttentionPattern</c> applies. Never throws: anything it cannot read
    /// becomes a diagnostic and no code.
    /// </summary>
    internal static class Parser
    {
        public const int MinHeadDim = 8;
        public const int MaxHeadDim = 256;
        public const int HeadDimMultiple = 8;

        private const string Namespace = "SparseAttention.";

        public static ParseResult Parse(GeneratorAttributeSyntaxContext context, CancellationToken cancellationToken)
        {
            var diagnostics = new List<DiagnosticInfo>();
            if (context.TargetSymbol is not INamedTypeSymbol type || context.TargetNode is not ClassDeclarationSyntax declaration)
            {
                return new ParseResult(null, EquatableArray<DiagnosticInfo>.Empty);
            }

            HierarchyInfo? hierarchy = ReadHierarchy(type, declaration, diagnostics);
            PatternModel? pattern = ReadPattern(type, diagnostics, cancellationToken);
            KernelModel? kernel = hierarchy is not null && pattern is not null && diagnostics.Count == 0
                ? new KernelModel(hierarchy, pattern)
                : null;
            return new ParseResult(kernel, new EquatableArray<DiagnosticInfo>(diagnostics));
        }

        private static HierarchyInfo? ReadHierarchy(INamedTypeSymbol type, ClassDeclarationSyntax declaration, List<DiagnosticInfo> diagnostics)
        {
            bool isStaticPartial = declaration.Modifiers.Any(SyntaxKind.StaticKeyword) && declaration.Modifiers.Any(SyntaxKind.PartialKeyword);
            bool containersArePartial = true;
            var types = new List<ContainingTypeInfo> { new("static partial class", type.Name) };
            for (INamedTypeSymbol? container = type.ContainingType; container is not null; container = container.ContainingType)
            {
                var containerSyntax = container.DeclaringSyntaxReferences.Select(reference => reference.GetSyntax()).OfType<TypeDeclarationSyntax>().FirstOrDefault();
                containersArePartial &= containerSyntax is not null && containerSyntax.Modifiers.Any(SyntaxKind.PartialKeyword) && !container.IsGenericType;
                types.Insert(0, new ContainingTypeInfo(TypeKeyword(container), container.Name));
            }

            if (!isStaticPartial || !containersArePartial || type.IsGenericType)
            {
                diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.KernelClassShape, declaration.Identifier.GetLocation(), type.Name));
                return null;
            }

            string? ns = type.ContainingNamespace is { IsGlobalNamespace: false } containing ? containing.ToDisplayString() : null;
            return new HierarchyInfo(ns, new EquatableArray<ContainingTypeInfo>(types));
        }

        private static string TypeKeyword(INamedTypeSymbol type) => type switch
        {
            { IsRecord: true, TypeKind: TypeKind.Struct } => "partial record struct",
            { IsRecord: true } => "partial record",
            { TypeKind: TypeKind.Struct } => "partial struct",
            { TypeKind: TypeKind.Interface } => "partial interface",
            { IsStatic: true } => "static partial class",
            _ => "partial class",
        };

        private static PatternModel? ReadPattern(INamedTypeSymbol type, List<DiagnosticInfo> diagnostics, CancellationToken cancellationToken)
        {
            AttributeData? kernel = null, window = null, dilation = null, globals = null, strided = null;
            foreach (AttributeData attribute in type.GetAttributes())
            {
                cancellationToken.ThrowIfCancellationRequested();
                switch (attribute.AttributeClass?.ToDisplayString())
                {
                    case Namespace + "AttentionKernelAttribute": kernel = attribute; break;
                    case Namespace + "SlidingWindowAttribute": window = attribute; break;
                    case Namespace + "DilationAttribute": dilation = attribute; break;
                    case Namespace + "GlobalTokensAttribute": globals = attribute; break;
                    case Namespace + "StridedAttribute": strided = attribute; break;
                }
            }

            if (kernel is null)
            {
                return null;
            }

            int errorsBefore = diagnostics.Count;
            foreach (AttributeData? attribute in new[] { kernel, window, dilation, globals, strided })
            {
                if (attribute is not null && !IsReadable(attribute))
                {
                    diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.MalformedAttribute, AttributeLocation(attribute), ShortName(attribute), type.Name));
                }
            }

            if (diagnostics.Count > errorsBefore)
            {
                return null;
            }

            int? headDim = NamedInt(kernel, "HeadDim");
            bool causal = NamedBool(kernel, "Causal") ?? true;
            if (headDim is not int dimension || dimension < MinHeadDim || dimension > MaxHeadDim || dimension % HeadDimMultiple != 0)
            {
                diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.UnsupportedHeadDim, ArgumentLocation(kernel, "HeadDim"), headDim?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "nothing (HeadDim is not set)"));
            }

            int? left = null, right = null;
            if (window is not null)
            {
                int? size = NamedInt(window, "Size");
                left = NamedInt(window, "Left");
                right = NamedInt(window, "Right");
                if (size is not null && (left is not null || right is not null))
                {
                    diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.WindowSizeWithLeftRight, ArgumentLocation(window, "Size")));
                }
                else if (size is not null)
                {
                    if (AttentionPattern.FindWindowSizeProblem(size.Value) is string sizeProblem)
                    {
                        diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.InvalidPatternValue, ArgumentLocation(window, "Size"), sizeProblem));
                        return null;
                    }

                    left = size - 1;
                    right = 0;
                }
                else
                {
                    left ??= 0;
                    right ??= 0;
                }
            }

            int[] dilations = dilation is null ? Array.Empty<int>() : ArrayArgument(dilation);
            int[] globalTokens = globals is null ? Array.Empty<int>() : ArrayArgument(globals);
            int? stride = strided is null ? null : NamedInt(strided, "Stride") ?? 0;

            // The runtime's own rules, so a declaration the generator accepts is one AttentionPattern accepts.
            string? problem = AttentionPattern.FindProblem(left, right, dilations, globalTokens, stride, out string parameter);
            if (problem is not null)
            {
                Location? location = parameter switch
                {
                    "windowLeft" => ArgumentLocation(window!, "Left"),
                    "windowRight" => ArgumentLocation(window!, "Right"),
                    "dilation" => ElementLocation(dilation!, Array.FindIndex(dilations, value => value < 1)),
                    "globalTokens" => ElementLocation(globals!, Array.FindIndex(globalTokens, value => value < 0)),
                    _ => ArgumentLocation(strided!, "Stride"),
                };
                diagnostics.Add(DiagnosticInfo.Create(DiagnosticDescriptors.InvalidPatternValue, location, problem));
            }

            if (diagnostics.Count > errorsBefore)
            {
                return null;
            }

            return new PatternModel(headDim!.Value, causal, left, right, new EquatableArray<int>(dilations), new EquatableArray<int>(globalTokens), stride);
        }

        private static bool IsReadable(AttributeData attribute) =>
            attribute.AttributeConstructor is not null
            && attribute.ConstructorArguments.All(argument => argument.Kind != TypedConstantKind.Error)
            && attribute.NamedArguments.All(argument => argument.Value.Kind != TypedConstantKind.Error);

        private static int? NamedInt(AttributeData attribute, string name)
        {
            foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
            {
                if (argument.Key == name && argument.Value.Value is int value)
                {
                    return value;
                }
            }

            return null;
        }

        private static bool? NamedBool(AttributeData attribute, string name)
        {
            foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
            {
                if (argument.Key == name && argument.Value.Value is bool value)
                {
                    return value;
                }
            }

            return null;
        }

        /// <summary>Reads a <c>params int[]</c> constructor argument, whether written as a list or as an array.</summary>
        private static int[] ArrayArgument(AttributeData attribute)
        {
            if (attribute.ConstructorArguments.Length != 1)
            {
                return Array.Empty<int>();
            }

            TypedConstant argument = attribute.ConstructorArguments[0];
            return argument.Kind == TypedConstantKind.Array && !argument.IsNull
                ? argument.Values.Select(value => value.Value is int item ? item : 0).ToArray()
                : Array.Empty<int>();
        }

        private static string ShortName(AttributeData attribute)
        {
            string name = attribute.AttributeClass?.Name ?? "attribute";
            return name.EndsWith("Attribute", StringComparison.Ordinal) ? name.Substring(0, name.Length - "Attribute".Length) : name;
        }

        private static Location? AttributeLocation(AttributeData attribute) =>
            attribute.ApplicationSyntaxReference?.GetSyntax().GetLocation();

        /// <summary>
        /// The location of element <paramref name="index"/> of a <c>params</c> list written out as arguments, or of the
        /// attribute when the list was passed as one array expression.
        /// </summary>
        private static Location? ElementLocation(AttributeData attribute, int index)
        {
            if (attribute.ApplicationSyntaxReference?.GetSyntax() is AttributeSyntax { ArgumentList: { } list }
                && index >= 0 && index < list.Arguments.Count
                && list.Arguments.All(argument => argument.NameEquals is null && argument.Expression is not (ArrayCreationExpressionSyntax or ImplicitArrayCreationExpressionSyntax or CollectionExpressionSyntax)))
            {
                return list.Arguments[index].GetLocation();
            }

            return AttributeLocation(attribute);
        }

        /// <summary>The location of <c>Name = value</c> inside the attribute, or of the attribute when it is absent.</summary>
        private static Location? ArgumentLocation(AttributeData attribute, string name)
        {
            if (attribute.ApplicationSyntaxReference?.GetSyntax() is AttributeSyntax syntax && syntax.ArgumentList is not null)
            {
                foreach (AttributeArgumentSyntax argument in syntax.ArgumentList.Arguments)
                {
                    if (argument.NameEquals?.Name.Identifier.ValueText == name)
                    {
                        return argument.GetLocation();
                    }
                }
            }

            return AttributeLocation(attribute);
        }
    }
}
