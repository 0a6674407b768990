using System.Diagnostics;

namespace SparseAttention.Consumer.Tests;

/// <summary>Runs the dotnet CLI as a user would, in a folder outside the repository.</summary>
internal static class DotnetCli
{
    /// <summary>Tests that start builds share this collection, so two builds never compete for the two cores.</summary>
    public const string Collection = "dotnet CLI";

#if DEBUG
    public const string Configuration = "Debug";
#else
    public const string Configuration = "Release";
#endif

    public static (int ExitCode, string Output) Run(string directory, params string[] arguments) => RunWith(directory, new Dictionary<string, string>(), arguments);

    /// <summary>As <see cref="Run"/>, with <paramref name="environment"/>'s variables set for the process.</summary>
    public static (int ExitCode, string Output) RunWith(string directory, IReadOnlyDictionary<string, string> environment, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        foreach ((string name, string value) in environment)
        {
            start.Environment[name] = value;
        }

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

[CollectionDefinition(DotnetCli.Collection, DisableParallelization = true)]
public sealed class DotnetCliCollection;
