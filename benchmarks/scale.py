"""How ckptmigrate scales (issue 16, item 6): per-variable cost and memory against the size
of a checkpoint. Prints Markdown tables of wall times, ratios and peak RSS.

    .venv/bin/python benchmarks/scale.py [--variables 1000 10000 100000] [--gib 1 4 16]

- inspect and check at 1k, 10k and 100k variables (4 floats each) against
  ``tf.train.list_variables`` (on both checkpoints for check), each a fresh process;
- convert of every variable sliced and padded at 1, 4 and 16 GiB (16 MiB tensors), wall time,
  throughput and peak RSS, which should stay flat as the checkpoint grows; and the same with
  ``--workers 1``, for the speed-up of computing values ahead of the writer.

Uses benchmarks/run.py's process runner (fresh processes, interleaved runs, medians).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from ckptmigrate import BundleWriter

sys.path.insert(0, str(Path(__file__).parent))
from run import Command, Result, fmt_rss, fmt_seconds, measure

LIST_VARIABLES = (
    "import sys, tensorflow as tf\nfor p in sys.argv[1:]: print(len(tf.train.list_variables(p)))\n"
)


def _many(path: Path, count: int) -> Path:
    with BundleWriter(path, "ckpt") as writer:
        for i in range(count):
            writer.add_array(f"layer_{i // 10}/dense_{i % 10}/kernel", np.zeros(4, "f4"))
        return Path(writer.commit())


TENSOR_ROWS = 4096  # of 1,024 float32: 16 MiB tensors, however large the checkpoint


def _big(path: Path, gib: float) -> Path:
    """``gib`` GiB of 16 MiB tensors: the checkpoint grows by its count of tensors, so what
    grows with it (memory that should not) is told apart from what grows with a tensor."""
    rng = np.random.default_rng(0)
    block = rng.standard_normal((TENSOR_ROWS, 1024)).astype("f4")
    with BundleWriter(path, "ckpt") as writer:
        for i in range(int(gib * 64)):
            writer.add_array(f"layer_{i}/kernel", block)
        return Path(writer.commit())


def _row(label: str, ours: Result, base: Result | None) -> str:
    ratio = f"{ours.seconds / base.seconds:.3f}" if base else "—"
    base_time = fmt_seconds(base.seconds) if base else "—"
    base_rss = fmt_rss(base.rss_bytes) if base else "—"
    return (
        f"| {label} | {fmt_seconds(ours.seconds)} | {base_time} | {ratio} | "
        f"{fmt_rss(ours.rss_bytes)} | {base_rss} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variables", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    parser.add_argument("--gib", type=float, nargs="*", default=[1, 4, 16])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cli = str(Path(sys.executable).with_name("ckptmigrate"))
    python = sys.executable
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ckptmigrate-scale-") as tmp:
        work = Path(tmp)
        logs = work / "logs"
        logs.mkdir()
        for count in args.variables:
            a = _many(work / f"a{count}", count)
            b = _many(work / f"b{count}", count)
            commands = [
                Command(f"inspect {count}", (cli, "inspect", str(a), "-q")),
                Command(f"check {count}", (cli, "check", str(a), "--target", str(b), "-q")),
                Command(f"list_variables {count}", (python, "-c", LIST_VARIABLES, str(a))),
                Command(
                    f"list_variables x2 {count}",
                    (python, "-c", LIST_VARIABLES, str(a), str(b)),
                ),
            ]
            r = measure(commands, args.repeat, logs)
            rows.append(
                _row(
                    f"`inspect`, {count:,} variables vs `tf.train.list_variables`",
                    r[f"inspect {count}"],
                    r[f"list_variables {count}"],
                )
            )
            rows.append(
                _row(
                    f"`check A --target B`, {count:,} variables each vs `list_variables` on both",
                    r[f"check {count}"],
                    r[f"list_variables x2 {count}"],
                )
            )
        maps = work / "slice-pad.yaml"
        maps.write_text(
            "version: 1\nrules:\n  - match: '.*'\n    slice: '[:, :512]'\n"
            "  - match: '.*'\n    pad: {shape: [dim0, 1536], fill: zeros}\n"
        )
        for gib in args.gib:
            source = _big(work / f"big{gib:g}", gib)
            out = work / f"out{gib:g}"
            convert_argv = (cli, "convert", str(source), "--map", str(maps), "-o", str(out), "-q")
            commands = [
                Command(f"convert {gib:g}", convert_argv, output=out),
                Command(
                    f"convert --workers 1 {gib:g}",
                    (*convert_argv, "--workers", "1"),
                    output=out,
                ),
            ]
            r = measure(commands, 1 if gib > 4 else args.repeat, logs)
            ours, one = r[f"convert {gib:g}"], r[f"convert --workers 1 {gib:g}"]
            rate = gib * 1024 / ours.seconds
            rows.append(
                f"| `convert`, {gib:g} GiB ({int(gib * 64)} variables of 16 MiB) sliced and "
                f"padded, default workers vs `--workers 1` ({rate:,.0f} MiB/s) | "
                f"{fmt_seconds(ours.seconds)} | "
                f"{fmt_seconds(one.seconds)} | {ours.seconds / one.seconds:.2f} | "
                f"{fmt_rss(ours.rss_bytes)} | {fmt_rss(one.rss_bytes)} |"
            )
            for path in (source.parent, out):
                shutil.rmtree(path, ignore_errors=True)
    print("| measurement | ckptmigrate | baseline | ratio | peak RSS | peak RSS baseline |")
    print("|---|--:|--:|--:|--:|--:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
