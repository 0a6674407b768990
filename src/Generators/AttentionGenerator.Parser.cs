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

public sealed partial class AttentionGenerator
{
    /// <summary>
    /// Turns an <c>[AttentionKernel]</c> class into a <see cref="KernelModel"/>, validating every attribute with the
    /// same rules the runtime's <c>AttentionPattern</c> applies. The generator and <see cref="AttentionAnalyzer"/>
    /// both call it: the analyzer reports what it finds, the generator only takes the model, which is null when the
    /// declaration has an error. Never throws on user input: anything it cannot read is a diagnostic and no code.
    /// </summary>
    internal static class Parser
    {
        public const int MinHeadDim = 8;
        public const int MaxHeadDim = 256;
        public const int HeadDimMultiple = 8;

        /// <summary>
        /// The oldest C# the generated code compiles with. The kernels are structs implementing interfaces with static
        /// abstract members (C# 11), which is how the runtime's schedules call them without a virtual call per tile, and
        /// they call .NET 10's vector APIs, whose generic overloads carry <c>allows ref struct</c> (C# 13 to bind).
        /// </summary>
        public const LanguageVersion MinimumLanguageVersion = LanguageVersion.CSharp13;

        /// <summary>The same version as a project file's &lt;LangVersion&gt; writes it.</summary>
        private const string MinimumLanguageVersionNumber = "13";

        public const string Namespace = "SparseAttention.";
        public const string KernelAttribute = Namespace + "AttentionKernelAttribute";

        /// <summary>The attributes that describe a pattern; each means something only beside <c>[AttentionKernel]</c>.</summary>
        public static readonly string[] PatternAttributes =
        {
            Namespace + "SlidingWindowAttribute", Namespace + "DilationAttribute", Namespace + "GlobalTokensAttribute", Namespace + "StridedAttribute",
            Namespace + "FixedFactorizedAttribute", Namespace + "BlockSparseAttribute", Namespace + "NeighborhoodAttribute",
            Namespace + "SoftcapAttribute", Namespace + "AlibiAttribute", Namespace + "LearnedSinksAttribute",
            Namespace + "AttentionMaskAttribute", Namespace + "ScoreModAttribute",
        };

        /// <summary>
        /// Reads <paramref name="type"/>. Diagnostics go to <paramref name="diagnostics"/> when it is given (the
        /// analyzer); the generator passes null. Returns null when the type is not a kernel or has an error.
        /// </summary>
        public static KernelModel? Parse(INamedTypeSymbol type, ICollection<Diagnostic>? diagnostics, CancellationToken cancellationToken)
        {
            var report = new Report(diagnostics);
            AttributeData? kernel = type.GetAttributes().FirstOrDefault(attribute => attribute.AttributeClass?.ToDisplayString() == KernelAttribute);
            if (kernel is null)
            {
                return null;
            }

            if (kernel.ApplicationSyntaxReference?.SyntaxTree.Options is CSharpParseOptions { LanguageVersion: var version } && version < MinimumLanguageVersion)
            {
                report.Add(DiagnosticDescriptors.LanguageVersionTooLow, AttributeLocation(kernel), type.Name, MinimumLanguageVersion.ToDisplayString(), version.ToDisplayString(), MinimumLanguageVersionNumber);
            }

            HierarchyInfo? hierarchy = ReadHierarchy(type, kernel, report);
            PatternModel? pattern = ReadPattern(type, kernel, report, cancellationToken);
            ScoresModel? scores = ReadScores(type, report, cancellationToken);
            return hierarchy is not null && pattern is not null && scores is not null && !report.HasError ? new KernelModel(hierarchy, pattern, scores) : null;
        }

        /// <summary>Collects diagnostics when asked to, and remembers whether any was an error.</summary>
        private sealed class Report(ICollection<Diagnostic>? diagnostics)
        {
            public bool HasError { get; private set; }

            public void Add(DiagnosticDescriptor descriptor, Location? location, params object[] arguments)
            {
                HasError |= descriptor.DefaultSeverity == DiagnosticSeverity.Error;
                diagnostics?.Add(Diagnostic.Create(descriptor, location, arguments));
            }
        }

        private static HierarchyInfo? ReadHierarchy(INamedTypeSymbol type, AttributeData kernel, Report report)
        {
            // Mid-keystroke ("public static partial class" and no name yet): the compiler already reports it, and there is
            // no name to generate into.
            for (INamedTypeSymbol? named = type; named is not null; named = named.ContainingType)
            {
                if (string.IsNullOrEmpty(named.Name))
                {
                    return null;
                }
            }

            // A static partial class: static on any part, partial on every part (the compiler insists on the latter
            // once one part is partial, so a missing 'partial' shows up on a single-part class).
            bool isStaticPartial = type.TypeKind == TypeKind.Class && !type.IsRecord && type.IsStatic && AllPartsPartial(type);
            bool containersArePartial = true;
            var types = new List<ContainingTypeInfo> { new("static partial class", Identifier(type.Name)) };
            var plainNames = new List<string> { type.Name };
            for (INamedTypeSymbol? container = type.ContainingType; container is not null; container = container.ContainingType)
            {
                containersArePartial &= AllPartsPartial(container) && !container.IsGenericType;
                types.Insert(0, new ContainingTypeInfo(TypeKeyword(container), Identifier(container.Name)));
                plainNames.Insert(0, container.Name);
            }

            if (!isStaticPartial || !containersArePartial || type.IsGenericType)
            {
                report.Add(DiagnosticDescriptors.KernelClassShape, DeclarationLocation(type, kernel), type.Name);
                return null;
            }

            var namespaces = new List<string>();
            for (INamespaceSymbol? ns = type.ContainingNamespace; ns is { IsGlobalNamespace: false }; ns = ns.ContainingNamespace)
            {
                namespaces.Insert(0, ns.Name);
            }

            string? escapedNamespace = namespaces.Count == 0 ? null : string.Join(".", namespaces.Select(Identifier));
            string fullName = string.Join(".", namespaces.Concat(plainNames));
            return new HierarchyInfo(escapedNamespace, new EquatableArray<ContainingTypeInfo>(types), fullName);
        }

        /// <summary>
        /// <paramref name="name"/> as a C# identifier: a keyword (reserved, like <c>object</c>, or contextual, like
        /// <c>record</c> or <c>required</c>, which some declarations refuse unescaped) gets the '@' that makes it a name.
        /// </summary>
        internal static string Identifier(string name) =>
            SyntaxFacts.GetKeywordKind(name) != SyntaxKind.None || SyntaxFacts.GetContextualKeywordKind(name) != SyntaxKind.None ? "@" + name : name;

        private static bool AllPartsPartial(INamedTypeSymbol type)
        {
            if (type.DeclaringSyntaxReferences.IsEmpty)
            {
                return false;
            }

            foreach (SyntaxReference reference in type.DeclaringSyntaxReferences)
            {
                if (reference.GetSyntax() is not TypeDeclarationSyntax declaration || !declaration.Modifiers.Any(SyntaxKind.PartialKeyword))
                {
                    return false;
                }
            }

            return true;
        }

        /// <summary>The name of the class declaration that carries <paramref name="kernel"/>: where a shape error points.</summary>
        private static Location? DeclarationLocation(INamedTypeSymbol type, AttributeData kernel)
        {
            if (kernel.ApplicationSyntaxReference?.GetSyntax().Parent?.Parent is BaseTypeDeclarationSyntax declaration)
            {
                return declaration.Identifier.GetLocation();
            }

            return type.Locations.FirstOrDefault();
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

        private static PatternModel? ReadPattern(INamedTypeSymbol type, AttributeData kernel, Report report, CancellationToken cancellationToken)
        {
            DeclaredAttributes attributes = FindPatternAttributes(type, cancellationToken);
            if (!AllReadable(type, kernel, attributes, report))
            {
                return null;
            }

            bool valid = true;
            int? headDim = NamedInt(kernel, "HeadDim");
            bool causal = NamedBool(kernel, "Causal") ?? true;
            if (headDim is not int dimension || dimension < MinHeadDim || dimension > MaxHeadDim || dimension % HeadDimMultiple != 0)
            {
                report.Add(DiagnosticDescriptors.UnsupportedHeadDim, ArgumentLocation(kernel, "HeadDim"), headDim?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "nothing (HeadDim is not set)");
                valid = false;
            }

            // Each reader adds its component, or reports what is wrong and stops the declaration (null).
            var components = new List<PatternComponent>();
            if (!ReadWindowStrideAndGlobals(type, causal, attributes, report, components)
                || !ReadFixedFactorized(attributes.FixedFactorized, report, components)
                || !ReadBlockSparse(attributes.BlockSparse, causal, report, components)
                || !ReadNeighborhood(attributes.Neighborhood, kernel, causal, report, components)
                || !valid)
            {
                return null;
            }

            // Everything the emitter needs to know of the pattern, computed here by the runtime's own semantics, as text.
            var pattern = new AttentionPattern(causal, components);
            string? streamingProblem = pattern.FindStreamingProblem(headDim!.Value);
            return new PatternModel(
                headDim.Value,
                causal,
                pattern.ToCSharp(),
                pattern.ToString(),
                streamingProblem,
                streamingProblem is null ? pattern.StreamingRingSlots : 0,
                pattern.GlobalTokens.Count,
                pattern.Neighborhood?.Axes ?? 0);
        }

        /// <summary>
        /// The score modifiers: [Softcap] (a finite cap above 0), [Alibi], [LearnedSinks], and the methods [AttentionMask] and
        /// [ScoreMod] name, which must be static methods of the kernel class with exactly the documented signature (the
        /// generated kernels call them directly). Null after reporting a problem.
        /// </summary>
        private static ScoresModel? ReadScores(INamedTypeSymbol type, Report report, CancellationToken cancellationToken)
        {
            AttributeData? softcap = null, alibi = null, sinks = null, mask = null, scoreMod = null;
            foreach (AttributeData attribute in type.GetAttributes())
            {
                cancellationToken.ThrowIfCancellationRequested();
                switch (attribute.AttributeClass?.ToDisplayString())
                {
                    case Namespace + "SoftcapAttribute": softcap ??= attribute; break;
                    case Namespace + "AlibiAttribute": alibi ??= attribute; break;
                    case Namespace + "LearnedSinksAttribute": sinks ??= attribute; break;
                    case Namespace + "AttentionMaskAttribute": mask ??= attribute; break;
                    case Namespace + "ScoreModAttribute": scoreMod ??= attribute; break;
                }
            }

            bool valid = true;
            foreach (AttributeData? attribute in new[] { softcap, mask, scoreMod })
            {
                if (attribute is not null && !IsReadable(attribute))
                {
                    report.Add(DiagnosticDescriptors.MalformedAttribute, AttributeLocation(attribute), ShortName(attribute), type.Name);
                    valid = false;
                }
            }

            if (!valid)
            {
                return null;
            }

            float? cap = null;
            if (softcap is not null)
            {
                object? value = softcap.ConstructorArguments.Length == 1 ? softcap.ConstructorArguments[0].Value : null;
                cap = value is float given ? given : float.NaN;
                if (!(cap > 0f && !float.IsInfinity(cap.Value)))
                {
                    report.Add(DiagnosticDescriptors.InvalidSoftcap, ElementLocation(softcap, 0), type.Name, cap.Value.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
                    valid = false;
                }
            }

            string? maskMethod = mask is null ? null : ReadModifierMethod(type, mask, SpecialType.System_Boolean, new[] { SpecialType.System_Int32, SpecialType.System_Int32, SpecialType.System_Int32 }, "static bool {0}(int query, int key, int head)", report);
            string? scoreModMethod = scoreMod is null ? null : ReadModifierMethod(type, scoreMod, SpecialType.System_Single, new[] { SpecialType.System_Single, SpecialType.System_Int32, SpecialType.System_Int32, SpecialType.System_Int32 }, "static float {0}(float score, int query, int key, int head)", report);
            valid &= (mask is null || maskMethod is not null) && (scoreMod is null || scoreModMethod is not null);
            return valid ? new ScoresModel(cap, alibi is not null, maskMethod, scoreModMethod, sinks is not null) : null;
        }

        /// <summary>
        /// The method <paramref name="attribute"/> names, as C# source, if the kernel class has a static, non-generic one
        /// with exactly the given return and parameter types (by value); otherwise reports SPA0016 on the argument and
        /// returns null.
        /// </summary>
        private static string? ReadModifierMethod(INamedTypeSymbol type, AttributeData attribute, SpecialType returns, SpecialType[] parameters, string signature, Report report)
        {
            string? name = attribute.ConstructorArguments.Length == 1 ? attribute.ConstructorArguments[0].Value as string : null;
            string expected = string.Format(System.Globalization.CultureInfo.InvariantCulture, signature, string.IsNullOrEmpty(name) ? "M" : name);
            string? problem;
            if (string.IsNullOrEmpty(name))
            {
                problem = "it names no method";
            }
            else
            {
                IMethodSymbol[] candidates = type.GetMembers(name!).OfType<IMethodSymbol>().ToArray();
                bool Matches(IMethodSymbol method) =>
                    method.ReturnType.SpecialType == returns && !method.ReturnsByRef && !method.ReturnsByRefReadonly && !method.IsGenericMethod
                    && method.Parameters.Length == parameters.Length
                    && method.Parameters.Select((parameter, index) => parameter.RefKind == RefKind.None && parameter.Type.SpecialType == parameters[index]).All(match => match);
                IMethodSymbol? match = candidates.FirstOrDefault(Matches);
                problem = candidates.Length == 0 ? "'" + type.Name + "' has no method named '" + name + "'"
                    : match is null ? "'" + name + "' does not have that signature"
                    : !match.IsStatic ? "'" + name + "' is not static"
                    : null;
                if (problem is null)
                {
                    return Identifier(name!);
                }
            }

            report.Add(DiagnosticDescriptors.InvalidModifierMethod, ElementLocation(attribute, 0), ShortName(attribute), type.Name, problem, expected);
            return null;
        }

        /// <summary>The pattern attributes on a declaration (the first of each kind; the analyzer reports repeats).</summary>
        private struct DeclaredAttributes
        {
            public AttributeData? Window, Dilation, Globals, Strided, FixedFactorized, BlockSparse, Neighborhood;

            public AttributeData?[] All => new[] { Window, Dilation, Globals, Strided, FixedFactorized, BlockSparse, Neighborhood };
        }

        private static DeclaredAttributes FindPatternAttributes(INamedTypeSymbol type, CancellationToken cancellationToken)
        {
            var found = new DeclaredAttributes();
            foreach (AttributeData attribute in type.GetAttributes())
            {
                cancellationToken.ThrowIfCancellationRequested();
                switch (attribute.AttributeClass?.ToDisplayString())
                {
                    case Namespace + "SlidingWindowAttribute": found.Window ??= attribute; break;
                    case Namespace + "DilationAttribute": found.Dilation ??= attribute; break;
                    case Namespace + "GlobalTokensAttribute": found.Globals ??= attribute; break;
                    case Namespace + "StridedAttribute": found.Strided ??= attribute; break;
                    case Namespace + "FixedFactorizedAttribute": found.FixedFactorized ??= attribute; break;
                    case Namespace + "BlockSparseAttribute": found.BlockSparse ??= attribute; break;
                    case Namespace + "NeighborhoodAttribute": found.Neighborhood ??= attribute; break;
                }
            }

            return found;
        }

        /// <summary>Reports every attribute whose arguments the compiler could not bind (they are being typed); false if any.</summary>
        private static bool AllReadable(INamedTypeSymbol type, AttributeData kernel, DeclaredAttributes attributes, Report report)
        {
            bool readable = true;
            foreach (AttributeData? attribute in new[] { kernel }.Concat(attributes.All))
            {
                if (attribute is not null && !IsReadable(attribute))
                {
                    report.Add(DiagnosticDescriptors.MalformedAttribute, AttributeLocation(attribute), ShortName(attribute), type.Name);
                    readable = false;
                }
            }

            return readable;
        }

        /// <summary>The window's steps back and forward from Size or Left/Right, or false after reporting a conflict or a bad Size.</summary>
        private static bool ReadWindowExtent(AttributeData window, Report report, out int? left, out int? right)
        {
            int? size = NamedInt(window, "Size");
            left = NamedInt(window, "Left");
            right = NamedInt(window, "Right");
            if (size is not null && (left is not null || right is not null))
            {
                report.Add(DiagnosticDescriptors.WindowSizeWithLeftRight, ArgumentLocation(window, "Size"));
                return false;
            }

            if (size is not null)
            {
                if (AttentionPattern.FindWindowSizeProblem(size.Value) is string sizeProblem)
                {
                    report.Add(DiagnosticDescriptors.InvalidPatternValue, ArgumentLocation(window, "Size"), sizeProblem);
                    return false;
                }

                left = size - 1;
                right = 0;
            }
            else
            {
                left ??= 0;
                right ??= 0;
            }

            return true;
        }

        /// <summary>
        /// The window (with its dilations), the stride and the global tokens: checked together by the runtime's own rules
        /// (a dilation needs a window), each problem located on the argument at fault.
        /// </summary>
        private static bool ReadWindowStrideAndGlobals(INamedTypeSymbol type, bool causal, DeclaredAttributes attributes, Report report, List<PatternComponent> components)
        {
            AttributeData? window = attributes.Window, dilation = attributes.Dilation, globals = attributes.Globals, strided = attributes.Strided;
            int? left = null, right = null;
            if (window is not null && !ReadWindowExtent(window, report, out left, out right))
            {
                return false;
            }

            int[] dilations = dilation is null ? Array.Empty<int>() : ArrayArgument(dilation);
            int[] globalTokens = globals is null ? Array.Empty<int>() : ArrayArgument(globals);
            if (dilation is not null && dilations.Length == 0)
            {
                report.Add(DiagnosticDescriptors.EmptyValueList, AttributeLocation(dilation), "Dilation", type.Name, "dilations (every head keeps dilation 1)", "give one per head, e.g. [Dilation(2)] or [Dilation(1, 2)],");
            }

            if (globals is not null && globalTokens.Length == 0)
            {
                report.Add(DiagnosticDescriptors.EmptyValueList, AttributeLocation(globals), "GlobalTokens", type.Name, "positions (no token becomes global)", "list the global token positions, e.g. [GlobalTokens(0)],");
            }

            int? stride = strided is null ? null : NamedInt(strided, "Stride") ?? 0;

            // The runtime's own rules, so a declaration the generator accepts is one AttentionPattern accepts.
            string? problem = AttentionPattern.FindProblem(left, right, dilations, globalTokens, stride, out string parameter);
            if (problem is not null)
            {
                if (parameter == "dilation" && window is null)
                {
                    report.Add(DiagnosticDescriptors.DilationWithoutWindow, AttributeLocation(dilation!), type.Name);
                }
                else
                {
                    Location? location = parameter switch
                    {
                        "windowLeft" => ArgumentLocation(window!, "Left"),
                        "windowRight" => ArgumentLocation(window!, "Right"),
                        "dilation" => ElementLocation(dilation!, Array.FindIndex(dilations, value => value < 1)),
                        "globalTokens" => ElementLocation(globals!, Array.FindIndex(globalTokens, value => value < 0)),
                        _ => ArgumentLocation(strided!, "Stride"),
                    };
                    report.Add(DiagnosticDescriptors.InvalidPatternValue, location, problem);
                }

                return false;
            }

            ReportSuspicious(type, causal, window, right, dilation, left, globals, globalTokens, report);
            if (left is not null || right is not null)
            {
                components.Add(new WindowComponent(left ?? 0, right ?? 0, dilations));
            }

            if (stride is int strideValue)
            {
                components.Add(new StridedComponent(strideValue));
            }

            if (globalTokens.Length > 0)
            {
                components.Add(new GlobalTokensComponent(globalTokens));
            }

            return true;
        }

        /// <summary>[FixedFactorized]: checked by the component's own rules, located on the property at fault.</summary>
        private static bool ReadFixedFactorized(AttributeData? attribute, Report report, List<PatternComponent> components)
        {
            if (attribute is null)
            {
                return true;
            }

            int block = NamedInt(attribute, "Block") ?? 0, summary = NamedInt(attribute, "Summary") ?? 0;
            bool varyByHead = NamedBool(attribute, "VaryByHead") ?? false;
            if (FixedFactorizedComponent.FindProblem(block, summary, varyByHead, out string parameter) is string problem)
            {
                report.Add(DiagnosticDescriptors.InvalidPatternValue, ArgumentLocation(attribute, PropertyName(parameter)), problem);
                return false;
            }

            components.Add(new FixedFactorizedComponent(block, summary, varyByHead));
            return true;
        }

        /// <summary>[BlockSparse]: checked by the component's own rules, located on the property at fault.</summary>
        private static bool ReadBlockSparse(AttributeData? attribute, bool causal, Report report, List<PatternComponent> components)
        {
            if (attribute is null)
            {
                return true;
            }

            int blockSize = NamedInt(attribute, "BlockSize") ?? 0, windowBlocks = NamedInt(attribute, "WindowBlocks") ?? 0, randomBlocks = NamedInt(attribute, "RandomBlocks") ?? 0;
            if (BlockSparseComponent.FindProblem(blockSize, windowBlocks, randomBlocks, out string parameter) is string problem)
            {
                report.Add(DiagnosticDescriptors.InvalidPatternValue, ArgumentLocation(attribute, PropertyName(parameter)), problem);
                return false;
            }

            components.Add(new BlockSparseComponent(blockSize, windowBlocks, NamedArray<int>(attribute, "GlobalBlocks"), randomBlocks, NamedLong(attribute, "Seed") ?? 0, causal));
            return true;
        }

        /// <summary>
        /// [Neighborhood]: checked by the component's own rules (located on the kernel sizes, Dilation or CausalAxes), and
        /// the kernel must not be causal as a whole, since causality is per axis (located on the kernel's Causal).
        /// </summary>
        private static bool ReadNeighborhood(AttributeData? attribute, AttributeData kernel, bool causal, Report report, List<PatternComponent> components)
        {
            if (attribute is null)
            {
                return true;
            }

            int[] kernelSize = ArrayArgument(attribute), dilation = NamedArray<int>(attribute, "Dilation");
            bool[] causalAxes = NamedArray<bool>(attribute, "CausalAxes");
            dilation = dilation.Length == 0 ? Enumerable.Repeat(1, kernelSize.Length).ToArray() : dilation;
            causalAxes = causalAxes.Length == 0 ? new bool[kernelSize.Length] : causalAxes;
            if (NeighborhoodComponent.FindProblem(kernelSize, dilation, causalAxes, out string parameter) is string problem)
            {
                Location? location = parameter == "kernelSize" ? AttributeLocation(attribute) : ArgumentLocation(attribute, PropertyName(parameter));
                report.Add(DiagnosticDescriptors.InvalidPatternValue, location, problem);
                return false;
            }

            if (causal)
            {
                // On `Causal = true` where it is written; on the [Neighborhood] when Causal is left at its default (true).
                Location? at = kernel.NamedArguments.Any(argument => argument.Key == "Causal") ? ArgumentLocation(kernel, "Causal") : AttributeLocation(attribute);
                report.Add(
                    DiagnosticDescriptors.InvalidPatternValue, at,
                    "A [Neighborhood] kernel is not causal as a whole (causality is per axis): set Causal = false on [AttentionKernel], and CausalAxes on [Neighborhood] for the axes that are causal.");
                return false;
            }

            components.Add(new NeighborhoodComponent(kernelSize, dilation, causalAxes));
            return true;
        }

        /// <summary>The attribute property a component's parameter name stands for (blockSize → BlockSize).</summary>
        private static string PropertyName(string parameter) => parameter.Length == 0 ? parameter : char.ToUpperInvariant(parameter[0]) + parameter.Substring(1);

        /// <summary>Declarations that are valid but probably not what was meant: warnings, and the kernel is still generated.</summary>
        private static void ReportSuspicious(INamedTypeSymbol type, bool causal, AttributeData? window, int? right, AttributeData? dilation, int? left, AttributeData? globals, int[] globalTokens, Report report)
        {
            if (dilation is not null && left == 0 && right == 0)
            {
                report.Add(DiagnosticDescriptors.DilationWithoutEffect, AttributeLocation(dilation), type.Name);
            }

            if (causal && right > 0)
            {
                report.Add(DiagnosticDescriptors.CausalHidesRight, ArgumentLocation(window!, "Right"), type.Name, right.Value);
            }

            var seen = new HashSet<int>();
            for (int index = 0; index < globalTokens.Length; index++)
            {
                if (!seen.Add(globalTokens[index]))
                {
                    report.Add(DiagnosticDescriptors.DuplicateGlobalToken, ElementLocation(globals!, index), globalTokens[index]);
                }
            }
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

        private static long? NamedLong(AttributeData attribute, string name)
        {
            foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
            {
                if (argument.Key == name && argument.Value.Value is long or int)
                {
                    return Convert.ToInt64(argument.Value.Value, System.Globalization.CultureInfo.InvariantCulture);
                }
            }

            return null;
        }

        /// <summary>A named array argument's elements (default for an element of another type), or empty when it is absent.</summary>
        private static T[] NamedArray<T>(AttributeData attribute, string name)
            where T : struct
        {
            foreach (KeyValuePair<string, TypedConstant> argument in attribute.NamedArguments)
            {
                if (argument.Key == name && argument.Value.Kind == TypedConstantKind.Array && !argument.Value.IsNull)
                {
                    return argument.Value.Values.Select(value => value.Value is T item ? item : default).ToArray();
                }
            }

            return Array.Empty<T>();
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

        public static string ShortName(AttributeData attribute)
        {
            string name = attribute.AttributeClass?.Name ?? "attribute";
            return name.EndsWith("Attribute", StringComparison.Ordinal) ? name.Substring(0, name.Length - "Attribute".Length) : name;
        }

        public static Location? AttributeLocation(AttributeData attribute) =>
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
