namespace SparseAttention.Consumer.Tests;

/// <summary>
/// The path of a user who references the three projects: a program outside the repository, written only
/// from the README and docs/design.md, declares its own patterns, is built by the real SDK with the generator as an analyzer,
/// and checks the results against its own naive attention.
/// </summary>
[Collection(DotnetCli.Collection)]
public class OutsideConsumerTests
{
    [Fact]
    public void ProgramOutsideTheRepoBuildsRunsAndMatchesItsOwnReference()
    {
        string repoRoot = SparseAttention.Testing.RepositoryRoot.Find();
        string work = Path.Combine(Path.GetTempPath(), "sparseattention-consumer-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(work);
        try
        {
            string template = Path.Combine(AppContext.BaseDirectory, "ConsumerApp");
            File.Copy(Path.Combine(template, "Program.cs"), Path.Combine(work, "Program.cs"));
            File.WriteAllText(Path.Combine(work, "ConsumerApp.csproj"), File.ReadAllText(Path.Combine(template, "ConsumerApp.csproj.template")).Replace("$(SparseAttentionRoot)", repoRoot + "/"));

            // The referenced projects were built with this test; don't rebuild them from a second process.
            (int exitCode, string output) = DotnetCli.Run(work, "run", "-c", DotnetCli.Configuration, "-p:BuildProjectReferences=false");
            Assert.True(exitCode == 0, "the consumer failed:\n" + output);
            Assert.Contains("consumer: all patterns match", output);
            Assert.Contains("longformer-like: max abs error", output);
            Assert.Contains("longformer-like on IlgpuCpu: max abs error", output);

            // The same program where the JIT has 16 vector registers, as on AVX2 and SSE parts: the narrow kernels' other
            // register plan (VectorRegisters.ThirtyTwo is false), which an AVX-512 machine would otherwise never run. With
            // AVX-512 off the kernels run at 256 bits; with AVX2 off too, at 128.
            foreach (string[] off in new[] { new[] { "DOTNET_EnableAVX512" }, new[] { "DOTNET_EnableAVX512", "DOTNET_EnableAVX2" } })
            {
                (exitCode, output) = DotnetCli.RunWith(work, off.ToDictionary(name => name, _ => "0"), "run", "--no-build", "-c", DotnetCli.Configuration);
                Assert.True(exitCode == 0, "the consumer failed with " + string.Join(", ", off) + " = 0:\n" + output);
                Assert.Contains("consumer: all patterns match", output);
            }
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }
}
