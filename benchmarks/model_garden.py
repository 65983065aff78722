"""ckptmigrate's bundled map bert-to-model-garden against TensorFlow Model Garden's own BERT
converter (issue 11, peer equivalence): wall time and peak RSS on a synthetic
google-research/bert checkpoint larger than the tests' (default: 12 layers, hidden 256,
4 heads, intermediate 1024, vocab 30522, 512 positions, with Adam slots). Prints a Markdown
table; asserts nothing about speed.

    .venv/bin/python benchmarks/model_garden.py --model-garden-python /tmp/mg-venv/bin/python

tf-models-official pins its own TensorFlow, so it lives in a virtualenv of its own
(``python3 -m venv /tmp/mg-venv && /tmp/mg-venv/bin/pip install tf-models-official``);
``--model-garden-python`` (or MODEL_GARDEN_PYTHON) names that venv's interpreter.

Rows, each a fresh process (benchmarks/run.py's runner: one warm-up, then interleaved runs,
median wall time, highest peak RSS):

- Model Garden: ``python -m official.nlp.tools.tf2_bert_encoder_checkpoint_converter``
  (renames and reshapes into a name-based temporary checkpoint, builds a BertEncoder,
  restores it from that and saves it object-based);
- ckptmigrate, name-based: ``convert SRC --map bert-to-model-garden --set heads=N``, the
  converter's first step (what ``BertEncoder.load_weights`` restores);
- ckptmigrate into the BertEncoder: the same with ``--target`` Model Garden's output, which
  writes the converter's full result, object graph included. Its output is checked equal,
  key for key and bit for bit, to Model Garden's before anything is timed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ckptmigrate import BundleWriter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from bert_tf1 import BertSize, bert_values  # noqa: E402
from run import Command, Result, fmt_rss, fmt_seconds, measure, run_once  # noqa: E402

CONVERTER = "official.nlp.tools.tf2_bert_encoder_checkpoint_converter"


def _source(directory: Path, size: BertSize) -> Path:
    """The google-research/bert checkpoint (model, adam_m, adam_v, global_step) and its
    bert_config.json. Written with ckptmigrate's BundleWriter, not TensorFlow, to build it
    fast; both converters read it through TensorFlow's own reader or the same format."""
    import json

    with BundleWriter(directory, "bert_model.ckpt") as writer:
        for name, value in sorted(bert_values(size).items()):
            writer.add_array(name, value)
        prefix = Path(writer.commit())
    (directory / "bert_config.json").write_text(json.dumps(size.config()))
    return prefix


def _in_child(*argv: str) -> None:
    """Run this script's ``argv`` step in a child process. The measuring process must stay
    small: a forked child starts with its parent's pages, and ``ru_maxrss`` counts them, so
    a parent holding TensorFlow or the source's arrays would inflate every row."""
    subprocess.run([sys.executable, __file__, *argv], check=True)


def _assert_equal(ours: Path, theirs: Path) -> None:
    """ckptmigrate's output holds Model Garden's keys with the same bits (TensorFlow reads
    both)."""
    import tensorflow as tf

    a, b = tf.train.load_checkpoint(str(ours)), tf.train.load_checkpoint(str(theirs))
    keys = set(b.get_variable_to_shape_map()) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}
    if set(a.get_variable_to_shape_map()) - {"_CHECKPOINTABLE_OBJECT_GRAPH"} != keys:
        raise SystemExit("ckptmigrate's output and Model Garden's hold different keys")
    for key in sorted(keys):
        x, y = np.asarray(a.get_tensor(key)), np.asarray(b.get_tensor(key))
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            raise SystemExit(f"{key} differs between ckptmigrate's output and Model Garden's")


def _row(label: str, ours: Result, base: Result) -> str:
    return (
        f"| {label} | {fmt_seconds(ours.seconds)} | {fmt_seconds(base.seconds)} | "
        f"{ours.seconds / base.seconds:.2f} | {fmt_rss(ours.rss_bytes)} | "
        f"{fmt_rss(base.rss_bytes)} |"
    )


def main() -> None:
    if sys.argv[1:2] == ["--compare"]:
        _assert_equal(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-garden-python", default=os.environ.get("MODEL_GARDEN_PYTHON"), required=False
    )
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=30522)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)  # internal: _in_child
    args = parser.parse_args()
    if not args.model_garden_python:
        raise SystemExit("needs --model-garden-python: an interpreter with tf-models-official")
    # Model Garden is written against tf.keras as Keras 2; TF >= 2.16 needs this for it.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    size = BertSize(
        "bench",
        hidden=args.hidden,
        heads=args.heads,
        layers=args.layers,
        intermediate=4 * args.hidden,
        vocab=args.vocab,
        max_positions=512,
        seed=1,
    )
    if args.build:
        _source(args.build, size)
        return
    cli = str(Path(sys.executable).with_name("ckptmigrate"))
    with tempfile.TemporaryDirectory(prefix="ckptmigrate-mg-") as tmp:
        work = Path(tmp)
        logs = work / "logs"
        logs.mkdir()
        sizes = [f"--{k}={getattr(args, k)}" for k in ("layers", "hidden", "heads", "vocab")]
        _in_child(*sizes, f"--build={work / 'src'}", "--model-garden-python=-")
        source = work / "src" / "bert_model.ckpt"
        config = source.parent / "bert_config.json"
        mg_out, named_out, into_out = work / "mg", work / "named", work / "into"
        model_garden = Command(
            "model garden",
            (
                args.model_garden_python,
                "-m",
                CONVERTER,
                f"--bert_config_file={config}",
                f"--checkpoint_to_convert={source}",
                f"--converted_checkpoint_path={mg_out / 'ckpt'}",
            ),
            output=mg_out,
        )
        # Model Garden's output, kept as the target of the third row (and the reference).
        run_once(model_garden, logs)
        reference = work / "reference"
        shutil.copytree(mg_out, reference)
        heads = ("--set", f"heads={size.heads}")
        named = Command(
            "ckptmigrate named",
            (
                cli,
                "convert",
                str(source),
                "--map",
                "bert-to-model-garden",
                *heads,
                "-o",
                str(named_out),
                "-q",
            ),
            output=named_out,
        )
        into = Command(
            "ckptmigrate into",
            (
                cli,
                "convert",
                str(source),
                "--map",
                "bert-to-model-garden",
                *heads,
                "--target",
                str(reference / "ckpt-1"),
                "-o",
                str(into_out),
                "-q",
            ),
            output=into_out,
        )
        run_once(into, logs)
        _in_child("--compare", str(into_out / "bert_model.ckpt"), str(reference / "ckpt-1"))
        r = measure([model_garden, named, into], args.repeat, logs)
        source_mib = sum(p.stat().st_size for p in source.parent.iterdir()) / 2**20
    what = (
        f"{size.layers} layers, hidden {size.hidden}, {size.heads} heads, vocab {size.vocab:,}"
        f" ({source_mib:,.0f} MiB with Adam slots)"
    )
    print(f"BERT {what}")
    print()
    print("| measurement | ckptmigrate | Model Garden | ratio | peak RSS | peak RSS Model Garden |")
    print("|---|--:|--:|--:|--:|--:|")
    base = r["model garden"]
    print(_row("`convert --map bert-to-model-garden` (name-based)", r["ckptmigrate named"], base))
    print(
        _row(
            "`convert --map bert-to-model-garden --target` (object-based, = its output)",
            r["ckptmigrate into"],
            base,
        )
    )


if __name__ == "__main__":
    main()
