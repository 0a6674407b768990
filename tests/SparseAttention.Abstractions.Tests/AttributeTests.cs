using System.Reflection;
using SparseAttention;

namespace SparseAttention.Abstractions.Tests;

public class AttributeTests
{
    public static TheoryData<Type> AttributeTypes() => new()
    {
        typeof(AttentionKernelAttribute), typeof(SlidingWindowAttribute), typeof(DilationAttribute), typeof(GlobalTokensAttribute), typeof(StridedAttribute),
    };

    [Theory]
    [MemberData(nameof(AttributeTypes))]
    public void EachAttributeGoesOnceOnAClassAndIsNotInherited(Type type)
    {
        AttributeUsageAttribute usage = type.GetCustomAttribute<AttributeUsageAttribute>()!;
        Assert.Equal(AttributeTargets.Class, usage.ValidOn);
        Assert.False(usage.AllowMultiple);
        Assert.False(usage.Inherited);
        Assert.True(type.IsSealed);
    }

    [Fact]
    public void KernelIsCausalUnlessToldOtherwise()
    {
        Assert.True(new AttentionKernelAttribute().Causal);
        Assert.False(new AttentionKernelAttribute { Causal = false }.Causal);
    }

    [Fact]
    public void ParamsListsKeepTheirValuesAndNullBecomesEmpty()
    {
        Assert.Equal(new[] { 1, 1, 2, 2 }, new DilationAttribute(1, 1, 2, 2).PerHead);
        Assert.Equal(new[] { 0, 1 }, new GlobalTokensAttribute(0, 1).Positions);
        Assert.Empty(new DilationAttribute(null!).PerHead);
        Assert.Empty(new GlobalTokensAttribute(null!).Positions);
    }

    [Fact]
    public void AbstractionsHaveNoDependencies()
    {
        AssemblyName[] references = typeof(AttentionKernelAttribute).Assembly.GetReferencedAssemblies();
        Assert.All(references, reference => Assert.Equal("netstandard", reference.Name));
    }
}
