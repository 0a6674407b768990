using System.Diagnostics;

namespace SparseAttention.Consumer.Tests;

/// <summary>
/// The path of a user who references the three projects: a program outside the repository, written only
/// from DESIGN.md, declares its own patterns, is built by the real SDK with the generator as an analyzer,
/// and checks the results against its own naive attention.
/// </summary>
public class OutsideConsumerTests
{
#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    [Fact]
    public void ProgramOutsideTheRepoBuildsRunsAndMatchesItsOwnReference()
    {
        string repoRoot = FindRepoRoot();
        string work = Path.Combine(Path.GetTempPath(), "sparseattention-consumer-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(work);
        try
        {
            string template = Path.Combine(AppContext.BaseDirectory, "ConsumerApp");
            File.Copy(Path.Combine(template, "Program.cs"), Path.Combine(work, "Program.cs"));
            File.WriteAllText(Path.Combine(work, "ConsumerApp.csproj"), File.ReadAllText(Path.Combine(template, "ConsumerApp.csproj.template")).Replace("$(SparseAttentionRoot)", repoRoot + "/"));

            // The referenced projects were built with this test; don't rebuild them from a second process.
            (int exitCode, string output) = Run(work, "run", "-c", Configuration, "-p:BuildProjectReferences=false");
            Assert.True(exitCode == 0, "the consumer failed:\n" + output);
            Assert.Contains("consumer: all patterns match", output);
            Assert.Contains("longformer-like: max abs error", output);
            Assert.Contains("longformer-like on IlgpuCpu: max abs error", output);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private static string FindRepoRoot()
    {
        for (DirectoryInfo? directory = new(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Kernels.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("Kernels.sln not found above " + AppContext.BaseDirectory);
    }

    private static (int ExitCode, string Output) Run(string directory, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        using Process process = Process.Start(start)!;
        Task<string> error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            return (-1, output + "\n(timed out)");
        }

        return (process.ExitCode, output + error.Result);
    }
}
