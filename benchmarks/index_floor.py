"""The least a pure-Python reader can spend listing a large checkpoint (issue 16, item 5):
why `inspect` and `check` at 100,000 variables stay above 0.08x `tf.train.list_variables`.

    .venv/bin/python benchmarks/index_floor.py [--variables 100000]

Prints, for a TF1-named checkpoint of that many variables (best of 5, this process):
- the table scan alone (ckptmigrate's SSTable iterator: keys and values as bytes);
- that scan with the tightest decode of each entry we could write (one loop: varints
  inline, shapes looked up by their bytes, no validation, no role, nothing printed);
- ckptmigrate's own open (scan, decode, checks of every entry against the shards);
- the least output: one f-string line per variable, joined;
and, in fresh processes, the interpreter with the CLI's imports and TensorFlow's
`list_variables` (the goals are 0.08x of it). A floor adds start-up to the bare loops,
before anything a report needs (checks against the shards, roles, pairing, the table).
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import LIST_VARIABLES, _many

from ckptmigrate.formats import bundle_proto
from ckptmigrate.formats.bundle_proto import BundleEntry
from ckptmigrate.formats.bundle_reader import BundleReader
from ckptmigrate.formats.table import data_blocks, iter_table


def _bare_decode(data: bytes) -> int:
    """Every entry of the common form decoded straight from its block, nothing checked."""
    shapes: dict[bytes, tuple[tuple[int, ...], bool]] = {}
    count = 0
    for block in data_blocks(data):
        (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
        limit, pos, key = len(block) - 4 - 4 * restarts, 0, b""
        while pos < limit:
            shared, unshared, length = block[pos], block[pos + 1], block[pos + 2]
            pos += 3
            key = key[:shared] + block[pos : pos + unshared]
            pos += unshared
            end = pos + length
            if length and block[pos] == 0x08:
                n = block[pos + 3]
                at = pos + 4 + n
                raw = block[pos + 4 : at]
                shape = shapes.get(raw)
                if shape is None:
                    shape = shapes[raw] = bundle_proto._decode_shape(raw)
                offset = shift = 0
                if block[at] == 0x20:
                    at += 1
                    while True:
                        byte = block[at]
                        offset |= (byte & 0x7F) << shift
                        at += 1
                        if byte < 0x80:
                            break
                        shift += 7
                BundleEntry(block[pos + 1], shape[0], 0, offset, block[at + 1], 0, (), False)
                count += 1
            pos = end
    return count


def _best(call: Callable[[], object], runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _fresh(argv: list[str], runs: int = 5) -> float:
    return _best(lambda: subprocess.run(argv, check=True, capture_output=True), runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variables", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ckptmigrate-floor-") as tmp:
        prefix = _many(Path(tmp) / "a", args.variables)
        data = Path(f"{prefix}.index").read_bytes()
        scan = _best(lambda: sum(1 for _ in iter_table(data)))
        bare = _best(lambda: _bare_decode(data))
        opened = _best(lambda: BundleReader(prefix).close())
        keys = [k.decode() for k, _ in iter_table(data)]
        output = _best(lambda: "".join(f"{k}  float32  [4]  16 B\n" for k in keys))
        cli = "import ckptmigrate.cli, ckptmigrate.checker, ckptmigrate.render"
        imports = _fresh([sys.executable, "-c", cli])
        other = _many(Path(tmp) / "b", args.variables)
        one = _fresh([sys.executable, "-c", LIST_VARIABLES, str(prefix)], runs=3)
        both = _fresh([sys.executable, "-c", LIST_VARIABLES, str(prefix), str(other)], runs=3)
    n = args.variables
    rows = [
        ("table scan (keys and values as bytes)", scan),
        ("scan + the barest decode of each entry", bare),
        ("ckptmigrate's open (decode and every check)", opened),
        ("the barest output: one formatted line per variable", output),
        ("a fresh interpreter with the CLI's imports", imports),
        ("**inspect's floor**: start-up + bare decode + bare output", imports + bare + output),
        ("inspect's goal: 0.08 x `list_variables`", 0.08 * one),
        ("**check's floor**: start-up + two bare decodes", imports + 2 * bare),
        ("check's goal: 0.08 x `list_variables` on both", 0.08 * both),
    ]
    print(f"| {n:,} variables | seconds | µs per variable |")
    print("|---|--:|--:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.3f} | {seconds / n * 1e6:.2f} |")


if __name__ == "__main__":
    main()
