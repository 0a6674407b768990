#!/usr/bin/env bash
# Accepts every pending generator snapshot: each Snapshots/*.received.cs replaces its *.verified.cs.
# Run it only after reading the diff the failing test printed; then commit the .verified.cs files.
set -euo pipefail
cd "$(dirname "$0")"
found=0
while IFS= read -r -d '' received; do
  mv "$received" "${received%.received.cs}.verified.cs"
  echo "accepted ${received%.received.cs}.verified.cs"
  found=1
done < <(find . -name '*.received.cs' -print0)
[ "$found" = 1 ] || echo "no received snapshots to accept"
