using System.IO.Compression;

namespace SparseAttention.Consumer.Tests;

/// <summary>
/// The path a real user takes: `dotnet pack` makes the one package, a fresh console project outside the repository
/// references only it (PackageReference), declares two patterns, builds with the packaged generator and analyzer,
/// runs and checks the output against the package's reference implementation.
/// </summary>
[Collection(DotnetCli.Collection)]
public class PackageConsumerTests(PackedPackage packed) : IClassFixture<PackedPackage>
{
    [Fact]
    public void PackedPackageHasTheLayoutUsersNeed()
    {
        using ZipArchive archive = ZipFile.OpenRead(packed.Path);
        var entries = archive.Entries.Select(entry => entry.FullName).ToHashSet();
        Assert.Contains("lib/net10.0/SparseAttention.Runtime.dll", entries);
        Assert.Contains("lib/net10.0/SparseAttention.Runtime.xml", entries);
        Assert.Contains("lib/net10.0/SparseAttention.Abstractions.dll", entries);
        Assert.Contains("lib/net10.0/SparseAttention.Abstractions.xml", entries);
        Assert.Contains("analyzers/dotnet/cs/SparseAttention.Generators.dll", entries);
        Assert.Contains("analyzers/dotnet/cs/SparseAttention.Abstractions.dll", entries);
        Assert.Contains("README.md", entries);

        using var nuspec = new StreamReader(archive.GetEntry("SparseAttention.nuspec")!.Open());
        string manifest = nuspec.ReadToEnd();
        Assert.Contains("<id>SparseAttention</id>", manifest);
        Assert.Contains("<dependency id=\"ILGPU\" version=\"1.5.3\"", manifest);
        Assert.Contains("<readme>README.md</readme>", manifest);
        Assert.DoesNotContain("SparseAttention.Abstractions\" version", manifest); // bundled, not a dependency
    }

    [Fact]
    public void FreshProjectReferencingOnlyThePackageBuildsRunsAndMatchesTheReference()
    {
        string work = NewFolder();
        try
        {
            string package = packed.Path;
            string version = Path.GetFileNameWithoutExtension(package)["SparseAttention.".Length..];
            string app = Path.Combine(work, "app");
            Directory.CreateDirectory(app);
            string template = Path.Combine(AppContext.BaseDirectory, "PackageApp");
            File.Copy(Path.Combine(template, "Program.cs"), Path.Combine(app, "Program.cs"));
            File.WriteAllText(Path.Combine(app, "PackageApp.csproj"), File.ReadAllText(Path.Combine(template, "PackageApp.csproj.template"))
                .Replace("$(PackagesFolder)", Path.Combine(work, "packages")).Replace("$(SparseAttentionVersion)", version).Replace("$(MachinePackages)", MachinePackagesFolder()));
            File.WriteAllText(Path.Combine(app, "nuget.config"), File.ReadAllText(Path.Combine(template, "nuget.config.template")).Replace("$(Feed)", Path.GetDirectoryName(package)!));

            (int exitCode, string output) = DotnetCli.Run(app, "run", "-c", "Release");
            Assert.True(exitCode == 0, "the package consumer failed:\n" + output);
            Assert.Contains("sliding window: max abs error", output);
            Assert.Contains("longformer on ILGPU: max abs error", output);
            Assert.Contains("package consumer: all patterns match", output);

            // The packaged analyzer is live in the user's build: a bad declaration is a located SPA error.
            File.WriteAllText(Path.Combine(app, "Invalid.cs"), "using SparseAttention;\n[AttentionKernel(HeadDim = 12)]\nstatic partial class Broken;\n");
            (int badExitCode, string badOutput) = DotnetCli.Run(app, "build", "-c", "Release", "--no-restore");
            Assert.NotEqual(0, badExitCode);
            Assert.Contains("Invalid.cs(2,18): error SPA0002", badOutput);

            // A project on C# 10 gets SPA0012 on its kernel and no generated code, not dozens of errors inside a generated
            // file (CS8706: static abstract members need C# 11; the generated code needs 13). The program is rewritten in
            // C# 10 and calls nothing generated: the compiler runs analyzers only on code without errors of its own.
            File.Delete(Path.Combine(app, "Invalid.cs"));
            File.WriteAllText(Path.Combine(app, "Program.cs"), "using SparseAttention;\nnamespace OldApp\n{\n    [AttentionKernel(HeadDim = 64)]\n    [SlidingWindow(Size = 8)]\n    public static partial class OldKernel { }\n\n    public static class Program\n    {\n        public static void Main() { }\n    }\n}\n");
            (int oldExitCode, string oldOutput) = DotnetCli.Run(app, "build", "-c", "Release", "--no-restore", "-p:LangVersion=10");
            Assert.NotEqual(0, oldExitCode);
            Assert.True(oldOutput.Contains("error SPA0012", StringComparison.Ordinal), oldOutput);
            Assert.Contains("needs C# 13.0 or later", oldOutput);
            Assert.DoesNotContain("CS8706", oldOutput);
            Assert.DoesNotContain(".g.cs(", oldOutput);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>The machine's NuGet cache (NUGET_PACKAGES, else ~/.nuget/packages).</summary>
    private static string MachinePackagesFolder() =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } configured
            ? configured
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    internal static string NewFolder()
    {
        string work = Path.Combine(Path.GetTempPath(), "sparseattention-package-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(work);
        return work;
    }
}

/// <summary>
/// The package, packed once for this class's tests (from the runtime project already built with them) under a
/// version no earlier run used, so no cache anywhere can hand the consumer an older package.
/// </summary>
public sealed class PackedPackage : IDisposable
{
    private readonly string _work = PackageConsumerTests.NewFolder();

    public PackedPackage()
    {
        string feed = System.IO.Path.Combine(_work, "feed");
        string version = "0.0.0-test." + DateTime.UtcNow.ToString("yyyyMMddHHmmss", System.Globalization.CultureInfo.InvariantCulture) + "." + Guid.NewGuid().ToString("N")[..8];
        (int exitCode, string output) = DotnetCli.Run(SparseAttention.Testing.RepositoryRoot.Find(), "pack", System.IO.Path.Combine("src", "Runtime", "SparseAttention.Runtime.csproj"), "-c", DotnetCli.Configuration, "--no-build", "-o", feed, "-p:PackageVersion=" + version);
        Assert.True(exitCode == 0, "dotnet pack failed:\n" + output);
        Path = Assert.Single(Directory.GetFiles(feed, "SparseAttention.*.nupkg"));
    }

    /// <summary>The .nupkg, alone in its folder (the feed).</summary>
    public string Path { get; }

    public void Dispose() => Directory.Delete(_work, recursive: true);
}
