namespace SparseAttention.Testing;

/// <summary>The checkout the tests run from, for tests that read docs or build projects from it.</summary>
public static class RepositoryRoot
{
    /// <summary>The nearest folder above the test binaries that holds Kernels.sln.</summary>
    public static string Find()
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
}
