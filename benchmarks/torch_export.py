"""A TensorFlow checkpoint to safetensors (issue 15, "The proof"): ``ckptmigrate convert
--format safetensors`` against the script people write by hand (``tf.train.load_checkpoint``,
every tensor read into a dict, ``safetensors.numpy.save_file``): wall time and peak RSS of
each, on a synthetic checkpoint of about 1 GiB in a few hundred float32 variables. Prints a
Markdown table with the ratios; asserts nothing about speed.

    .venv/bin/python benchmarks/torch_export.py [--variables 300] [--rows 896] [--repeat 3]

Each row is a fresh process (benchmarks/run.py's runner: one warm-up, then interleaved runs,
median wall time, highest peak RSS). The two outputs are checked to hold the same tensors,
bit for bit, before anything is timed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ckptmigrate import BundleWriter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import Command, Result, fmt_ratio, fmt_rss, fmt_seconds, measure, run_once  # noqa: E402

COLUMNS = 1024

# The hand-written export, as the transformers conversion scripts do it (minus renaming).
BY_HAND = """
import os, sys
import numpy as np
import tensorflow as tf
from safetensors.numpy import save_file
source, output = sys.argv[1], sys.argv[2]
reader = tf.train.load_checkpoint(source)
names = reader.get_variable_to_shape_map()
tensors = {name: np.asarray(reader.get_tensor(name)) for name in names}  # scalars too
os.makedirs(os.path.dirname(output), exist_ok=True)
save_file(tensors, output, metadata={"format": "pt"})
"""


def _build(directory: Path, variables: int, rows: int) -> Path:
    """``variables`` float32 tensors of [rows, 1024] (and one step counter), written with
    ckptmigrate's BundleWriter (TensorFlow reads it: tests/test_writer.py)."""
    rng = np.random.default_rng(0)
    block = rng.standard_normal((rows, COLUMNS), dtype=np.float32)
    with BundleWriter(directory, "model.ckpt") as writer:
        for i in range(variables):
            # A different value each (a shifted block): no two tensors alike.
            writer.add_array(f"encoder/layer_{i:04d}/kernel", np.roll(block, i, axis=0))
        writer.add_array("global_step", np.array(1, np.int64))
        return Path(writer.commit())


def _compare(ours: Path, theirs: Path) -> None:
    from safetensors.numpy import load_file

    a, b = load_file(str(ours)), load_file(str(theirs))
    if sorted(a) != sorted(b):
        raise SystemExit("the two outputs hold different tensors")
    for key in a:
        if a[key].dtype != b[key].dtype or a[key].tobytes() != b[key].tobytes():
            raise SystemExit(f"{key} differs between the two outputs")


def _row(label: str, result: Result, base: Result) -> str:
    return (
        f"| {label} | {fmt_seconds(result.seconds)} | {fmt_ratio(result.seconds / base.seconds)} "
        f"| {fmt_rss(result.rss_bytes)} | {fmt_ratio(result.rss_bytes / base.rss_bytes)} |"
    )


def main() -> None:
    if sys.argv[1:2] == ["--compare"]:
        _compare(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variables", type=int, default=300)
    parser.add_argument("--rows", type=int, default=896)  # 300 x [896, 1024] f32 = 1.03 GiB
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cli = str(Path(sys.executable).with_name("ckptmigrate"))
    with tempfile.TemporaryDirectory(prefix="ckptmigrate-torch-export-") as tmp:
        work = Path(tmp)
        logs = work / "logs"
        logs.mkdir()
        source = _build(work / "src", args.variables, args.rows)
        size = sum(p.stat().st_size for p in source.parent.iterdir())
        ours_out, hand_out = work / "ours", work / "hand"
        ours = Command(
            "ckptmigrate",
            (
                cli,
                "convert",
                str(source),
                "--map",
                "strip-optimizer",
                "--format",
                "safetensors",
                "-o",
                str(ours_out / "model.safetensors"),
                "-q",
            ),
            output=ours_out,
        )
        hand = Command(
            "by hand",
            (sys.executable, "-c", BY_HAND, str(source), str(hand_out / "model.safetensors")),
            output=hand_out,
        )
        # Same tensors first: strip-optimizer drops global_step, so the script's output is
        # compared without it (the script keeps every tensor, as such scripts do).
        run_once(ours, logs)
        run_once(hand, logs)
        subprocess.run(
            [sys.executable, "-c", _DROP_STEP, str(hand_out / "model.safetensors")], check=True
        )
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--compare",
                str(ours_out / "model.safetensors"),
                str(hand_out / "model.safetensors"),
            ],
            check=True,
        )
        results = measure([hand, ours], args.repeat, logs)
    print(
        f"TF checkpoint of {args.variables} float32 variables [{args.rows}, {COLUMNS}] "
        f"({size / 2**30:.2f} GiB) -> one .safetensors file"
    )
    print()
    print("| export | wall time | ratio | peak RSS | ratio |")
    print("|---|--:|--:|--:|--:|")
    base = results["by hand"]
    print(_row("by hand: load_checkpoint, get_tensor each, save_file", base, base))
    print(_row("`ckptmigrate convert --format safetensors`", results["ckptmigrate"], base))


# Rewrite the script's output without global_step (for the comparison only).
_DROP_STEP = """
import sys
from safetensors.numpy import load_file, save_file
tensors = load_file(sys.argv[1])
tensors.pop("global_step")
save_file(tensors, sys.argv[1])
"""


if __name__ == "__main__":
    main()
