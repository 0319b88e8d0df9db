#!/usr/bin/env python3
"""Counts the instructions an aarch64 program executes, under qemu-user (never its time).

    tests/insn_count.py BINARY [OP ...]

BINARY is the aarch64 build of agent/macula-store/examples/pi_kernels.rs (`make pi-estimate`
builds it). For each OP it runs `BINARY OP 1` and `BINARY OP 3` under
`qemu-aarch64-static -cpu cortex-a72 -d in_asm,exec,nochain`: QEMU logs every translated block
(with its instructions) once and every execution of a block (chaining off, so none is skipped);
the executed instructions are the sum over executions of the block's length. The difference of
the two runs over two 1 MiB segments is the kernel's cost without the start-up. Printed:
instructions per byte, and what that gives per core on a Pi 4 (Cortex-A72 at 1.5 GHz) for an
IPC of 1 and of 2 (docs/storage.md "The Pi 4 on paper" says which applies to which kernel), and
the functions (from the binary's symbol table) that ran most of them.
"""
import bisect
import collections
import re
import struct
import subprocess
import sys

MIB = 1 << 20
GHZ = 1.5
OPS = ["seal", "blake3", "encode", "decode1", "put", "get"]
INSN = re.compile(r"^0x([0-9a-f]+):")
TRACE = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")


def functions(binary):
    """(sorted start addresses, names) of the ELF64 little-endian file's function symbols."""
    data = open(binary, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit(f"insn_count.py: {binary} is not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    syms = []
    for _, kind, _, _, off, size, link, _, _, entsize in sections:
        if kind != 2:  # SHT_SYMTAB
            continue
        stroff = sections[link][4]
        for at in range(off, off + size, entsize):
            name, info, _, _, value, _ = struct.unpack_from("<IBBHQQ", data, at)
            if info & 0xF == 2 and value:  # STT_FUNC
                end = data.index(b"\0", stroff + name)
                syms.append((value, data[stroff + name:end].decode(errors="replace")))
    syms.sort()
    return [a for a, _ in syms], demangle([n for _, n in syms])


def demangle(names):
    """Rust symbols made readable by binutils' c++filt (v0 and legacy manglings), crate hashes
    and LLVM suffixes dropped; the names as they are without it."""
    try:
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                             text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return names
    if len(out) != len(names):
        return names
    return [re.sub(r"\[[0-9a-f]{16}\]|\.llvm\.\d+", "", n) for n in out]


def count(binary, op, n, symbols=None):
    """Instructions executed by `binary op n` (and, with `symbols`, per function)."""
    p = subprocess.Popen(
        ["qemu-aarch64-static", "-cpu", "cortex-a72", "-d", "in_asm,exec,nochain",
         binary, op, str(n)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
    sizes, total, block, start = {}, 0, 0, None
    per_pc = collections.Counter()
    in_block = False
    other = []
    for line in p.stderr:
        if line.startswith("Trace "):
            if in_block:
                sizes[start], in_block = block, False
            m = TRACE.match(line)
            if m:
                pc = int(m.group(1), 16)
                total += sizes.get(pc, 0)
                if symbols is not None:
                    per_pc[pc] += 1
        elif line.startswith("IN:"):
            if in_block:
                sizes[start] = block
            in_block, block, start = True, 0, None
        elif in_block:
            m = INSN.match(line)
            if m:
                if start is None:
                    start = int(m.group(1), 16)
                block += 1
        elif line.strip() and not line.startswith("---"):
            other.append(line.rstrip())
    if p.wait() != 0:
        sys.exit(f"insn_count.py: {binary} {op} {n} failed (exit {p.returncode}): "
                 + "\n".join(other[-10:]))
    if symbols is not None:
        starts, names = symbols
        for pc, times in per_pc.items():
            i = bisect.bisect_right(starts, pc) - 1
            symbols_count[names[i] if i >= 0 else "?"] += times * sizes.get(pc, 0)
    return total


symbols_count = collections.Counter()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary, ops = sys.argv[1], sys.argv[2:] or OPS
    print(f"instructions executed under qemu-aarch64 -cpu cortex-a72 ({binary}), per byte of a "
          f"1 MiB segment; MiB/s per core at {GHZ} GHz for IPC 1 / 2:")
    symbols = functions(binary)
    for op in ops:
        symbols_count.clear()
        base = count(binary, op, 1, symbols)
        once = collections.Counter(symbols_count)
        symbols_count.clear()
        per_byte = (count(binary, op, 3, symbols) - base) / (2 * MIB)
        rate = [ipc * GHZ * 1e9 / per_byte / MIB for ipc in (1, 2)]
        print(f"  {op:8} {per_byte:7.2f} instructions/byte   {rate[0]:7.0f} / {rate[1]:7.0f} MiB/s",
              flush=True)
        symbols_count.subtract(once)
        for name, insns in symbols_count.most_common(4):
            if insns / (2 * MIB) >= 0.05:
                print(f"           {insns / (2 * MIB):7.2f}  {name[:100]}")


if __name__ == "__main__":
    main()
