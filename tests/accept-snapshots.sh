#!/usr/bin/env bash
# Accepts every pending snapshot: each *.received.cs (generator output, under tests/) replaces its *.verified.cs,
# and each *.received.svg (pattern pictures, under docs/) replaces its *.svg.
# Run it only after reading the diff the failing test printed (or looking at the picture); then commit the results.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
found=0
while IFS= read -r -d '' received; do
  mv "$received" "${received%.received.cs}.verified.cs"
  echo "accepted ${received%.received.cs}.verified.cs"
  found=1
done < <(find "$root/tests" -name '*.received.cs' -print0)
while IFS= read -r -d '' received; do
  mv "$received" "${received%.received.svg}.svg"
  echo "accepted ${received%.received.svg}.svg"
  found=1
done < <(find "$root/docs" -name '*.received.svg' -print0 2>/dev/null)
[ "$found" = 1 ] || echo "no received snapshots to accept"
