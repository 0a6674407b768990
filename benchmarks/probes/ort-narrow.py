#!/usr/bin/env python3
"""Writes a copy of ONNX Runtime's native library that picks the kernels it would pick on a narrower CPU.

Why: issue 16 races our kernels, forced to Vector256 or Vector128, against ORT's GroupQueryAttention. ORT (its MLAS
library and its CPU-feature code) picks its kernels at run time from CPUID and from XCR0, the register in which the
operating system says which vector state it saves. No switch or environment variable narrows that choice, so on an
AVX-512 machine ORT always runs its AVX-512 kernels and the race at 256 or 128 bits is not like for like.

Every ISA check in ORT asks XCR0 (the `xgetbv` instruction) before it uses AVX or AVX-512: AVX needs bits 1-2 (0x6),
AVX-512 bits 5-7 as well (0xE0). This script finds each `xgetbv` in the library with objdump and replaces its three
bytes, with the two bytes of the instruction next to it, by `mov eax, imm32`, so XCR0 reads as the value asked for:
  --width 256   XCR0 = 0x7 (x87, SSE, AVX): ORT runs its AVX2/FMA3 kernels, as on a Zen 3 or an Intel client part.
  --width 128   XCR0 = 0x3 (x87, SSE): ORT runs its SSE kernels.
Two neighbours occur in ORT 1.31.1 and both are handled: `xgetbv; mov eax, eax` (the mov only zero-extends eax,
which `mov eax, imm32` also does), and `xor ecx, ecx; xgetbv` followed by a write of ecx before any read (the xor
only selected XCR0). Any other neighbour stops the script rather than guess. The stack is not touched: some of these
functions keep values below rsp (the red zone), where a push would land. The high half (edx) keeps what it held; the
checks test the low bits. Nothing else in the library changes.

The copy is for measurement only: the quick benchmark loads it with `--ort-library OUTPUT.so` (see BENCHMARKS.md,
"ORT at the width it races").

Usage: ort-narrow.py --width 256 INPUT.so OUTPUT.so
"""
import argparse
import os
import re
import subprocess
import sys

XGETBV = b"\x0f\x01\xd0"
XCR0_FOR_WIDTH = {256: 0x7, 128: 0x3}


def xgetbv_sites(library):
    """(file offset, instruction lines from the one before xgetbv onwards) for every xgetbv in the library."""
    segments = []
    for line in subprocess.run(["readelf", "-lW", library], capture_output=True, text=True, check=True).stdout.splitlines():
        fields = line.split()
        if fields and fields[0] == "LOAD" and "E" in fields[6:-1]:
            segments.append((int(fields[1], 16), int(fields[2], 16), int(fields[4], 16)))
    lines = subprocess.run(["objdump", "-d", "--no-show-raw-insn", library],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    sites = []
    for index, line in enumerate(lines):
        match = re.match(r"^\s*([0-9a-f]+):\s+xgetbv\s*$", line)
        if not match:
            continue
        address = int(match.group(1), 16)
        for file_offset, virtual_address, size in segments:
            if virtual_address <= address < virtual_address + size:
                sites.append((address - virtual_address + file_offset, lines[index - 1:index + 4]))
                break
        else:
            sys.exit(f"xgetbv at {address:#x} lies in no executable segment")
    return sites


def instruction(line):
    """The instruction text of one objdump line, without its address."""
    return line.split(":", 1)[1].strip()


def patch_site(data, offset, context, xcr0):
    """Replaces xgetbv and one neighbour by `mov eax, xcr0`; returns which neighbour, or stops the script."""
    if data[offset:offset + 3] != XGETBV:
        sys.exit(f"expected xgetbv at file offset {offset:#x}, found {data[offset:offset + 3].hex()}")
    move = bytes([0xB8]) + xcr0.to_bytes(4, "little")  # mov eax, imm32 (zero-extends into rax)
    if data[offset + 3:offset + 5] == b"\x89\xc0":  # xgetbv; mov eax, eax
        data[offset:offset + 5] = move
        return "xgetbv; mov eax, eax"
    if data[offset - 2:offset] == b"\x31\xc9":  # xor ecx, ecx; xgetbv
        for text in (instruction(line) for line in context[2:]):
            # A mov into ecx whose source does not read rcx itself (mov 0x8(%rcx),%ecx would read the xor's zero).
            if text.startswith("mov ") and text.endswith(",%ecx") and "cx" not in text[:-len(",%ecx")]:
                data[offset - 2:offset + 3] = move
                return "xor ecx, ecx; xgetbv"
            if "cx" in text:
                break
    sys.exit(f"xgetbv at file offset {offset:#x} has neighbours this script does not know: {context}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, choices=sorted(XCR0_FOR_WIDTH), required=True)
    parser.add_argument("input")
    parser.add_argument("output")
    arguments = parser.parse_args()

    if not os.path.isfile(arguments.input):
        sys.exit(f"no file at {arguments.input}")
    header = subprocess.run(["readelf", "-h", arguments.input], capture_output=True, text=True).stdout
    if "X86-64" not in header:
        sys.exit(f"{arguments.input} is not an x86-64 ELF library: XCR0 and xgetbv exist only on x86")
    data = bytearray(open(arguments.input, "rb").read())
    sites = xgetbv_sites(arguments.input)
    if not sites:
        sys.exit("no xgetbv found: this library does not read XCR0, so this patch cannot narrow it")
    xcr0 = XCR0_FOR_WIDTH[arguments.width]
    for offset, context in sites:
        print(f"  {offset:#x}: {patch_site(data, offset, context, xcr0)}")
    open(arguments.output, "wb").write(data)
    print(f"{len(sites)} reads of XCR0 now give {xcr0:#x} in {arguments.output}")


if __name__ == "__main__":
    main()
