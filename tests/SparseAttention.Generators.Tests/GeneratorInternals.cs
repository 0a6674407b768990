using System.Reflection;
using Microsoft.CodeAnalysis;

namespace SparseAttention.Generators.Tests;

/// <summary>
/// The generator's internals a few tests need, reached by reflection: InternalsVisibleTo would also expose the
/// generator's internal copy of AttentionPattern and make it clash with the runtime's public one in every test.
/// </summary>
internal static class GeneratorInternals
{
    private static readonly Assembly Generator = typeof(AttentionGenerator).Assembly;

    /// <summary>DiagnosticDescriptors.All: the whole catalog, the generator's own SPA0014 included.</summary>
    public static DiagnosticDescriptor[] Catalog => (DiagnosticDescriptor[])Type("SparseAttention.Generators.Diagnostics.DiagnosticDescriptors").GetField("All")!.GetValue(null)!;

    public static DiagnosticDescriptor Descriptor(string field) => (DiagnosticDescriptor)Type("SparseAttention.Generators.Diagnostics.DiagnosticDescriptors").GetField(field)!.GetValue(null)!;

    /// <summary>
    /// Calls Emitter.TryEmit on a model of a global-namespace class <paramref name="name"/> with the given values, which
    /// need not be ones the parser produces: that is how a test reaches the emitter's failure path.
    /// </summary>
    public static (bool Emitted, string? Failure) TryEmit(string name, int headDim, bool causal, string construction)
    {
        object types = EquatableArray(Type("SparseAttention.Generators.Models.ContainingTypeInfo"), new[] { Create("SparseAttention.Generators.Models.ContainingTypeInfo", "static partial class", name) });
        object hierarchy = Create("SparseAttention.Generators.Models.HierarchyInfo", null, types, name);
        object pattern = Create("SparseAttention.Generators.Models.PatternModel", headDim, causal, construction, "a test pattern", null, 8, 0, 0);
        object scores = Type("SparseAttention.Generators.Models.ScoresModel").GetField("None")!.GetValue(null)!;
        object kernel = Create("SparseAttention.Generators.Models.KernelModel", hierarchy, pattern, scores, false, false);
        object?[] arguments = { kernel, null, null, null };
        bool emitted = (bool)Type("SparseAttention.Generators.AttentionGenerator+Emitter").GetMethod("TryEmit")!.Invoke(null, arguments)!;
        return (emitted, (string?)arguments[3]);
    }

    private static Type Type(string name) => Generator.GetType(name, throwOnError: true)!;

    private static object Create(string typeName, params object?[] arguments) =>
        Type(typeName).GetConstructors().Single(constructor => constructor.GetParameters().Length == arguments.Length).Invoke(arguments);

    private static object EquatableArray(Type element, object[] items)
    {
        Array array = Array.CreateInstance(element, items.Length);
        Array.Copy(items, array, items.Length);
        Type equatable = Type("SparseAttention.Generators.Helpers.EquatableArray`1").MakeGenericType(element);
        return equatable.GetConstructors().Single().Invoke(new object[] { array });
    }
}
