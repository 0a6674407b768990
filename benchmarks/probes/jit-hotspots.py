#!/usr/bin/env python3
"""jit-hotspots: where perf's samples fall inside one JIT-compiled method, by instruction and by the JIT's code groups.

`perf annotate` cannot read .NET's JIT code, but perf records each sample's offset into the method named in the
perf map, and the JIT can print the same method with its code bytes, from which every instruction's offset follows.
Not part of the build; a diagnostic for BENCHMARKS.md (issue 16). Linux, perf, .NET 8 or later:

  export DOTNET_EnableWriteXorExecute=0 DOTNET_PerfMapEnabled=1
  export DOTNET_JitDisasm='AccumulateBandTile' DOTNET_JitDisasmWithCodeBytes=1 DOTNET_JitStdOutFile=/tmp/jit.txt
  perf record -F 8000 -o /tmp/perf.data dotnet $B --versus bidir-4k-w512:bidir-4k-w512 --rounds 3 --threads 1
  benchmarks/probes/jit-hotspots.py /tmp/perf.data /tmp/jit.txt AccumulateBandTile [listing-number] [second perf.data]

The listing number picks one of the method's listings in the JIT output (0 = the first; Tier0 and Tier1 listings of the
same method all appear there; the one perf sampled is the one its map names, e.g. "[Optimized]" = FullOpts). With a
second perf.data (the same build on another case), the groups are printed side by side, so what one case spends and
the other does not stands out.
"""
import bisect
import collections
import re
import subprocess
import sys


def listing(path, number):
    """Instructions of the number-th listing in a JIT output file: (offset, group, text)."""
    text = open(path, encoding="utf-8", errors="replace").read()
    parts = text.split("; Assembly listing for method ")[1:]
    print(f"listing {number} of {len(parts)}: {parts[number].splitlines()[0]}")
    instructions, group, offset = [], None, 0
    for line in parts[number].splitlines():
        start = re.match(r"(G_M\d+_IG\d+):\s+;; offset=0x([0-9A-F]+)", line)
        if start:
            group, offset = start.group(1), int(start.group(2), 16)
            continue
        code = re.match(r"\s+([0-9A-F]{2,})\s+(\S.*)$", line)
        if code and group and len(code.group(1)) % 2 == 0:
            instructions.append((offset, group, code.group(2).strip()))
            offset += len(code.group(1)) // 2
    return instructions


def samples(perf_data, method):
    """Sample counts per offset into the sampled method whose name contains `method`."""
    script = subprocess.run(["perf", "script", "-i", perf_data, "-F", "ip,sym,symoff"], capture_output=True, text=True).stdout
    counts = collections.Counter()
    for line in script.splitlines():
        if method in line:
            found = re.search(r"\+0x([0-9a-f]+)\s*$", line)
            if found:
                counts[int(found.group(1), 16)] += 1
    return counts


def by_group(instructions, counts):
    offsets = [i[0] for i in instructions]
    groups, per_instruction = collections.Counter(), collections.Counter()
    for offset, count in counts.items():
        index = bisect.bisect_right(offsets, offset) - 1
        if index >= 0:
            groups[instructions[index][1]] += count
            per_instruction[index] += count
    return groups, per_instruction, sum(counts.values())


def main():
    perf_data, jit_text, method = sys.argv[1:4]
    number = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    instructions = listing(jit_text, number)
    first = by_group(instructions, samples(perf_data, method))
    second = by_group(instructions, samples(sys.argv[5], method)) if len(sys.argv) > 5 else None
    print(f"{first[2]} samples in {method}" + (f" ({second[2]} in the second profile)" if second else ""))
    print(f"{'group':14} {'%':>6} {'2nd %':>6} {'instr':>5} {'FMAs':>4}  first instruction | last")
    for group, count in first[0].most_common(30):
        members = [i for i in instructions if i[1] == group]
        fmas = sum("vfmadd" in i[2] for i in members)
        other = f"{100 * second[0][group] / max(1, second[2]):6.1f}" if second else "     -"
        print(f"{group:14} {100 * count / first[2]:6.1f} {other} {len(members):5} {fmas:4}  {members[0][2][:48]} | {members[-1][2][:36]}")
    print("\nhottest instructions:")
    for index, count in first[1].most_common(12):
        offset, group, text = instructions[index]
        print(f"  {100 * count / first[2]:5.1f}%  {offset:#06x} {group:14} {text}")


if __name__ == "__main__":
    main()
