"""Time ``ckptmigrate.suggest`` at 100, 1,000 and 10,000 variables a side (issue 11.9).

The checkpoint is named as google-research/bert names its TF1 checkpoints
(``bert/encoder/layer_N/attention/self/query/kernel``, ``cls/seq_relationship/output_weights``
stored [2, hidden]) and the target as Model Garden names a BERT encoder
(``transformer/layer_N/self_attention/query/kernel`` as [hidden, heads, head_size], the
next-sentence kernel [hidden, 2]): no name pairs by lookup, so every variable goes through
scoring and assignment, and the map needs renames, head reshapes and a transpose. Both are
written with ckptmigrate's own bundle writer (tiny tensors: suggest reads names, shapes and
dtypes only), as many layers as give the size asked for. The table gives the wall time of
``suggest()`` in this process, the pairs it made, how many are wrong against the known
answer (the goal: none), the pairs left out, and the rules of the map and how many are
marked UNCERTAIN.

    .venv/bin/python benchmarks/suggest.py [--sizes 100 1000 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HIDDEN, INTERMEDIATE, VOCAB, POSITIONS, HEADS = 8, 32, 30, 16, 2
PER_LAYER = 16  # variables of one encoder layer
OUTSIDE = 14  # embeddings, pooler and the two pre-training heads

Row = tuple[str, tuple[int, ...], str, tuple[int, ...]]


def bert_pairs(layers: int) -> list[Row]:
    """(checkpoint name, its shape, target name, its shape) for every variable."""
    h, i, v, p = HIDDEN, INTERMEDIATE, VOCAB, POSITIONS
    heads = (HEADS, h // HEADS)
    rows: list[Row] = [
        ("bert/embeddings/word_embeddings", (v, h), "word_embeddings/embeddings", (v, h)),
        ("bert/embeddings/token_type_embeddings", (2, h), "type_embeddings/embeddings", (2, h)),
        ("bert/embeddings/position_embeddings", (p, h), "position_embedding/embeddings", (p, h)),
        ("bert/embeddings/LayerNorm/gamma", (h,), "embeddings/layer_norm/gamma", (h,)),
        ("bert/embeddings/LayerNorm/beta", (h,), "embeddings/layer_norm/beta", (h,)),
        ("bert/pooler/dense/kernel", (h, h), "pooler_transform/kernel", (h, h)),
        ("bert/pooler/dense/bias", (h,), "pooler_transform/bias", (h,)),
        ("cls/predictions/transform/dense/kernel", (h, h), "masked_lm/dense/kernel", (h, h)),
        ("cls/predictions/transform/dense/bias", (h,), "masked_lm/dense/bias", (h,)),
        ("cls/predictions/transform/LayerNorm/gamma", (h,), "masked_lm/layer_norm/gamma", (h,)),
        ("cls/predictions/transform/LayerNorm/beta", (h,), "masked_lm/layer_norm/beta", (h,)),
        ("cls/predictions/output_bias", (v,), "masked_lm/output_bias", (v,)),
        ("cls/seq_relationship/output_weights", (2, h), "next_sentence/dense/kernel", (h, 2)),
        ("cls/seq_relationship/output_bias", (2,), "next_sentence/dense/bias", (2,)),
    ]
    for n in range(layers):
        a, b = f"bert/encoder/layer_{n}/", f"transformer/layer_{n}/"
        for part in ("query", "key", "value"):
            rows.append(
                (
                    f"{a}attention/self/{part}/kernel",
                    (h, h),
                    f"{b}self_attention/{part}/kernel",
                    (h, *heads),
                )
            )
            rows.append(
                (f"{a}attention/self/{part}/bias", (h,), f"{b}self_attention/{part}/bias", heads)
            )
        rows += [
            (
                f"{a}attention/output/dense/kernel",
                (h, h),
                f"{b}self_attention/attention_output/kernel",
                (*heads, h),
            ),
            (
                f"{a}attention/output/dense/bias",
                (h,),
                f"{b}self_attention/attention_output/bias",
                (h,),
            ),
            (
                f"{a}attention/output/LayerNorm/gamma",
                (h,),
                f"{b}self_attention_layer_norm/gamma",
                (h,),
            ),
            (
                f"{a}attention/output/LayerNorm/beta",
                (h,),
                f"{b}self_attention_layer_norm/beta",
                (h,),
            ),
            (f"{a}intermediate/dense/kernel", (h, i), f"{b}intermediate/kernel", (h, i)),
            (f"{a}intermediate/dense/bias", (i,), f"{b}intermediate/bias", (i,)),
            (f"{a}output/dense/kernel", (i, h), f"{b}output/kernel", (i, h)),
            (f"{a}output/dense/bias", (h,), f"{b}output/bias", (h,)),
            (f"{a}output/LayerNorm/gamma", (h,), f"{b}output_layer_norm/gamma", (h,)),
            (f"{a}output/LayerNorm/beta", (h,), f"{b}output_layer_norm/beta", (h,)),
        ]
    return rows


def write(directory: Path, rows: list[Row]) -> tuple[Path, Path]:
    from ckptmigrate.formats.bundle_writer import BundleWriter

    out = []
    for side, column in (("checkpoint", 0), ("target", 2)):
        with BundleWriter(directory / side, "ckpt") as writer:
            for row in rows:
                writer.add_array(row[column], np.zeros(row[column + 1], np.float32))
            writer.commit()
        out.append(directory / side / "ckpt")
    return out[0], out[1]


def measure(size: int, workdir: Path) -> str:
    from ckptmigrate import suggest

    layers = max(1, round((size - OUTSIDE) / PER_LAYER))
    rows = bert_pairs(layers)
    checkpoint, target = write(workdir / str(size), rows)
    start = time.perf_counter()
    suggestion = suggest(checkpoint, target)
    seconds = time.perf_counter() - start
    truth = {row[0]: row[2] for row in rows}
    wrong = sum(1 for p in suggestion.pairs if truth.get(p.source) != p.target)
    missed = len(rows) - len(suggestion.pairs)
    return (
        f"| {len(rows):,} | {seconds:.2f} | {len(suggestion.pairs):,} | {wrong} | {missed} | "
        f"{len(suggestion.rules)} | {len(suggestion.uncertain)} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    args = parser.parse_args(argv)
    print("| variables a side | suggest (s) | pairs | wrong | left out | rules | uncertain |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="ckptmigrate-suggest-bench-") as tmp:
        for size in args.sizes:
            print(measure(size, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
