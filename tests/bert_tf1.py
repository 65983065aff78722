"""Tiny TF1 checkpoints named as google-research/bert's run_pretraining.py saves them.

Shared by tests/test_model_garden_map.py and tests/golden/make_model_garden_golden.py, which
runs in a separate virtualenv (tf-models-official with its own TensorFlow), so this module
imports nothing of ckptmigrate's and takes TensorFlow as an argument. Values come from
numpy's PCG64 generator, not from TensorFlow's initialisers, so both environments write the
same bits; ``fingerprint`` lets the test prove it is converting the checkpoint the golden
files were made from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BertSize:
    """What google-research/bert's bert_config.json says about a model's shapes."""

    name: str
    hidden: int
    heads: int
    layers: int
    intermediate: int
    vocab: int = 24
    max_positions: int = 16
    type_vocab: int = 2
    seed: int = 0

    def config(self) -> dict[str, Any]:
        """bert_config.json (Model Garden's BertConfig.from_json_file reads the same keys)."""
        return {
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "intermediate_size": self.intermediate,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": self.max_positions,
            "type_vocab_size": self.type_vocab,
            "initializer_range": 0.02,
        }


# Two sizes whose head size differs (4 and 4 with 2 and 3 heads; hidden 8 vs 12), so a map
# that hard-coded either would fail the other.
SMALL = BertSize("h8-a2", hidden=8, heads=2, layers=2, intermediate=16, seed=8)
WIDER = BertSize("h12-a3", hidden=12, heads=3, layers=2, intermediate=24, seed=12)
SIZES = (SMALL, WIDER)


def bert_shapes(size: BertSize) -> dict[str, tuple[int, ...]]:
    """Every model variable of BertForPreTraining, by its TF1 name, with its shape."""
    h, i = size.hidden, size.intermediate
    shapes: dict[str, tuple[int, ...]] = {
        "bert/embeddings/word_embeddings": (size.vocab, h),
        "bert/embeddings/token_type_embeddings": (size.type_vocab, h),
        "bert/embeddings/position_embeddings": (size.max_positions, h),
        "bert/embeddings/LayerNorm/beta": (h,),
        "bert/embeddings/LayerNorm/gamma": (h,),
    }
    for n in range(size.layers):
        layer = f"bert/encoder/layer_{n}"
        for part in ("query", "key", "value"):
            shapes[f"{layer}/attention/self/{part}/kernel"] = (h, h)
            shapes[f"{layer}/attention/self/{part}/bias"] = (h,)
        shapes[f"{layer}/attention/output/dense/kernel"] = (h, h)
        shapes[f"{layer}/attention/output/dense/bias"] = (h,)
        shapes[f"{layer}/attention/output/LayerNorm/beta"] = (h,)
        shapes[f"{layer}/attention/output/LayerNorm/gamma"] = (h,)
        shapes[f"{layer}/intermediate/dense/kernel"] = (h, i)
        shapes[f"{layer}/intermediate/dense/bias"] = (i,)
        shapes[f"{layer}/output/dense/kernel"] = (i, h)
        shapes[f"{layer}/output/dense/bias"] = (h,)
        shapes[f"{layer}/output/LayerNorm/beta"] = (h,)
        shapes[f"{layer}/output/LayerNorm/gamma"] = (h,)
    shapes.update(
        {
            "bert/pooler/dense/kernel": (h, h),
            "bert/pooler/dense/bias": (h,),
            # The pre-training heads: no part of the encoder, so Model Garden's encoder
            # converter leaves them behind.
            "cls/predictions/transform/dense/kernel": (h, h),
            "cls/predictions/transform/dense/bias": (h,),
            "cls/predictions/transform/LayerNorm/beta": (h,),
            "cls/predictions/transform/LayerNorm/gamma": (h,),
            "cls/predictions/output_bias": (size.vocab,),
            "cls/seq_relationship/output_weights": (2, h),
            "cls/seq_relationship/output_bias": (2,),
        }
    )
    return shapes


def bert_values(size: BertSize) -> dict[str, np.ndarray]:
    """The checkpoint's values: model variables, AdamWeightDecayOptimizer's ``adam_m`` and
    ``adam_v`` slots for each (as run_pretraining.py saves them) and ``global_step``."""
    rng = np.random.Generator(np.random.PCG64(size.seed))
    values: dict[str, np.ndarray] = {}
    for name, shape in bert_shapes(size).items():
        values[name] = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        values[f"{name}/adam_m"] = (rng.standard_normal(shape) * 1e-3).astype(np.float32)
        values[f"{name}/adam_v"] = np.abs(rng.standard_normal(shape) * 1e-6).astype(np.float32)
    values["global_step"] = np.array(1000, dtype=np.int64)
    return values


def fingerprint(values: dict[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(values):
        value = np.ascontiguousarray(values[name])
        digest.update(f"{name}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def save_bert_checkpoint(tf: Any, directory: Path, size: BertSize) -> Path:
    """Write ``directory/bert_model.ckpt`` (and ``bert_config.json``) with TensorFlow's own
    TF1 Saver, as google-research/bert's checkpoints were written; returns the prefix."""
    import json

    v1 = tf.compat.v1
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bert_config.json").write_text(json.dumps(size.config(), indent=2))
    values = bert_values(size)
    graph = tf.Graph()
    with graph.as_default():
        variables = [
            v1.get_variable(name, initializer=tf.constant(value), use_resource=False)
            for name, value in values.items()
        ]
        saver = v1.train.Saver(variables)
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            prefix = saver.save(session, str(directory / "bert_model.ckpt"), write_meta_graph=False)
    return Path(prefix)
