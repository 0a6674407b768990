using System.Runtime.CompilerServices;
using System.Text;
using DiffPlex.DiffBuilder;
using DiffPlex.DiffBuilder.Model;

namespace SparseAttention.Generators.Tests;

/// <summary>
/// Snapshot testing without Verify (not served here). The accepted text lives in
/// <c>Snapshots/NAME.verified.cs</c> next to the tests. On a mismatch the test writes
/// <c>Snapshots/NAME.received.cs</c> and fails with a line diff; accepting is an explicit step:
/// <c>tests/accept-snapshots.sh</c> (or copy the received file over the verified one) and commit.
/// </summary>
internal static class Snapshot
{
    public static void Verify(string name, string actual, [CallerFilePath] string callerPath = "")
    {
        string directory = Path.Combine(Path.GetDirectoryName(callerPath)!, "Snapshots");
        string verifiedPath = Path.Combine(directory, name + ".verified.cs");
        string receivedPath = Path.Combine(directory, name + ".received.cs");
        string normalized = Normalize(actual);
        string? verified = File.Exists(verifiedPath) ? Normalize(File.ReadAllText(verifiedPath)) : null;
        if (verified == normalized)
        {
            File.Delete(receivedPath);
            return;
        }

        Directory.CreateDirectory(directory);
        File.WriteAllText(receivedPath, normalized);
        string message = verified is null
            ? $"No accepted snapshot {verifiedPath}. Wrote {receivedPath}; review it and run tests/accept-snapshots.sh to accept."
            : $"Generated source differs from {verifiedPath}. Wrote {receivedPath}; if the change is intended run tests/accept-snapshots.sh.\n{Diff(verified, normalized)}";
        Assert.Fail(message);
    }

    private static string Normalize(string text) => text.Replace("\r\n", "\n").TrimStart('\uFEFF');

    private static string Diff(string expected, string actual)
    {
        var diff = new StringBuilder();
        DiffPaneModel model = InlineDiffBuilder.Diff(expected, actual, ignoreWhiteSpace: false);
        int shown = 0;
        foreach (DiffPiece line in model.Lines)
        {
            if (line.Type is ChangeType.Inserted or ChangeType.Deleted && shown++ < 60)
            {
                diff.Append(line.Type == ChangeType.Inserted ? "+ " : "- ").Append(line.Position).Append(": ").AppendLine(line.Text);
            }
        }

        return diff.ToString();
    }
}
