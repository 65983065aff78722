"""`suggest` on a google-research/bert TF1 checkpoint into a Model-Garden-named layout (issue
11.8): no pair wrong, nothing sourced from optimizer state, the transposed next-sentence
weights and the attention heads' reshapes found, every doubt marked, and a header that
counts only what is copied. TensorFlow writes the checkpoints and reads the conversion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import tf_save

import ckptmigrate
from ckptmigrate.checker import inventory_of
from ckptmigrate.checkpoint import open_checkpoint
from ckptmigrate.names import Role
from ckptmigrate.suggestion import suggest

H, FFN, V, P, LAYERS, HEADS = 8, 32, 30, 16, 2, 2
HEAD = (HEADS, H // HEADS)


def bert_layout() -> list[tuple[str, tuple[int, ...], str, tuple[int, ...]]]:
    """(BERT name, shape, Model Garden-like name, shape): the answer suggest should find."""
    rows = [
        ("bert/embeddings/word_embeddings", (V, H), "word_embeddings/embeddings", (V, H)),
        ("bert/embeddings/token_type_embeddings", (2, H), "type_embeddings/embeddings", (2, H)),
        ("bert/embeddings/position_embeddings", (P, H), "position_embedding/embeddings", (P, H)),
        ("bert/embeddings/LayerNorm/gamma", (H,), "embeddings/layer_norm/gamma", (H,)),
        ("bert/embeddings/LayerNorm/beta", (H,), "embeddings/layer_norm/beta", (H,)),
        ("bert/pooler/dense/kernel", (H, H), "pooler_transform/kernel", (H, H)),
        ("bert/pooler/dense/bias", (H,), "pooler_transform/bias", (H,)),
        ("cls/predictions/transform/dense/kernel", (H, H), "masked_lm/dense/kernel", (H, H)),
        ("cls/predictions/transform/dense/bias", (H,), "masked_lm/dense/bias", (H,)),
        ("cls/predictions/transform/LayerNorm/gamma", (H,), "masked_lm/layer_norm/gamma", (H,)),
        ("cls/predictions/transform/LayerNorm/beta", (H,), "masked_lm/layer_norm/beta", (H,)),
        ("cls/predictions/output_bias", (V,), "masked_lm/output_bias", (V,)),
        # stored [out, in] by BERT; a Keras Dense kernel is [in, out]
        ("cls/seq_relationship/output_weights", (2, H), "next_sentence/dense/kernel", (H, 2)),
        ("cls/seq_relationship/output_bias", (2,), "next_sentence/dense/bias", (2,)),
    ]
    for n in range(LAYERS):
        a, b = f"bert/encoder/layer_{n}/", f"transformer/layer_{n}/"
        for part in ("query", "key", "value"):
            rows.append(
                (f"{a}attention/self/{part}/kernel", (H, H), f"{b}self_attention/{part}/kernel",
                 (H, *HEAD))
            )  # fmt: skip
            rows.append(
                (f"{a}attention/self/{part}/bias", (H,), f"{b}self_attention/{part}/bias", HEAD)
            )
        rows += [
            (f"{a}attention/output/dense/kernel", (H, H),
             f"{b}self_attention/attention_output/kernel", (*HEAD, H)),
            (f"{a}attention/output/dense/bias", (H,),
             f"{b}self_attention/attention_output/bias", (H,)),
            (f"{a}attention/output/LayerNorm/gamma", (H,),
             f"{b}self_attention_layer_norm/gamma", (H,)),
            (f"{a}attention/output/LayerNorm/beta", (H,),
             f"{b}self_attention_layer_norm/beta", (H,)),
            (f"{a}intermediate/dense/kernel", (H, FFN), f"{b}intermediate/kernel", (H, FFN)),
            (f"{a}intermediate/dense/bias", (FFN,), f"{b}intermediate/bias", (FFN,)),
            (f"{a}output/dense/kernel", (FFN, H), f"{b}output/kernel", (FFN, H)),
            (f"{a}output/dense/bias", (H,), f"{b}output/bias", (H,)),
            (f"{a}output/LayerNorm/gamma", (H,), f"{b}output_layer_norm/gamma", (H,)),
            (f"{a}output/LayerNorm/beta", (H,), f"{b}output_layer_norm/beta", (H,)),
        ]  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import tensorflow as tf

    root = tmp_path_factory.mktemp("bert")
    rng = np.random.default_rng(0)
    rows = bert_layout()
    model = {a: rng.standard_normal(shape).astype(np.float32) for a, shape, _, _ in rows}
    with_slots = dict(model)
    for name, value in model.items():  # AdamWeightDecayOptimizer's slots
        with_slots[name + "/adam_m"] = rng.standard_normal(value.shape).astype(np.float32)
        with_slots[name + "/adam_v"] = np.abs(rng.standard_normal(value.shape)).astype(np.float32)
    with_slots["global_step"] = np.array(1000, np.int64)
    target = {b: np.zeros(shape, np.float32) for _, _, b, shape in rows}
    return {
        "rows": rows,
        "values": model,
        "slots": tf_save(tf, root / "slots" / "model.ckpt-1000", with_slots),
        "bare": tf_save(tf, root / "bare" / "model.ckpt", model),
        "target": tf_save(tf, root / "target" / "ckpt", target),
    }


@pytest.mark.parametrize("source", ["slots", "bare"])
def test_bert_into_model_garden_names(
    tf: Any, layout: dict[str, Any], source: str, tmp_path: Path
) -> None:
    checkpoint = layout[source]
    if source == "slots":
        # the naming table (names.py) knows BERT's optimizer: its slots are not weights
        with open_checkpoint(checkpoint) as ckpt:
            roles = {v.name: v.role for v in inventory_of(ckpt).variables.values()}
        assert roles["bert/embeddings/word_embeddings/adam_m"] is Role.OPTIMIZER
        assert roles["bert/embeddings/word_embeddings/adam_v"] is Role.OPTIMIZER
    suggestion = suggest(checkpoint, layout["target"])
    truth = {a: b for a, _, b, _ in layout["rows"]}
    # zero wrong pairs, none from optimizer state, and every target variable supplied
    made = {p.source: p.target for p in suggestion.pairs}
    assert {s: t for s, t in made.items() if truth.get(s) != t} == {}
    assert set(made) == set(truth)
    assert not [r for r in suggestion.rules if "init" in r.body]
    # the head stored transposed is transposed, and that choice is marked for review
    [transpose] = [r for r in suggestion.rules if "transpose" in r.body]
    assert transpose.body["name"] == "next_sentence/dense/kernel"
    assert transpose.uncertain
    # every rule marked UNCERTAIN is one a reviewer must look at; none is unmarked-wrong
    header = suggestion.to_yaml().splitlines()
    assert f"# With this map: copies {len(truth)} of {len(truth)} target variables" in "\n".join(
        header
    )
    # TensorFlow reads what the map makes of each value
    map_path = tmp_path / "bert.yaml"
    map_path.write_text(suggestion.to_yaml())
    out = tmp_path / "out"
    ckptmigrate.convert(checkpoint, map_path, out)
    reader = tf.train.load_checkpoint(str(out))
    assert sorted(reader.get_variable_to_shape_map()) == sorted(truth.values())
    for a, _, b, shape in layout["rows"]:
        expected = layout["values"][a]
        expected = expected.T if b == "next_sentence/dense/kernel" else expected.reshape(shape)
        np.testing.assert_array_equal(reader.get_tensor(b), expected, err_msg=b)


def test_header_counts_only_what_is_copied(tf: Any, tmp_path: Path) -> None:
    """A variable an init rule creates is listed as starting fresh, never as matched."""
    f32 = np.float32
    ckpt = tf_save(
        tf,
        tmp_path / "a",
        {"dense/kernel": np.ones((4, 3), f32), "dense/bias": np.ones(3, f32)},
    )
    tgt = tf_save(
        tf,
        tmp_path / "b",
        {
            "dense/kernel": np.ones((4, 3), f32),
            "dense/bias": np.ones(3, f32),
            "extra/kernel": np.ones((5, 7), f32),
        },
    )
    suggestion = suggest(ckpt, tgt)
    assert suggestion.predicted is not None
    assert suggestion.predicted.ok  # the conversion fits...
    header = [line for line in suggestion.to_yaml().splitlines() if line.startswith("# With")]
    assert header == [  # ...but only two of three variables keep what was learned
        "# With this map: copies 2 of 3 target variables from the checkpoint (15 of 50 "
        "parameters); 1 start fresh (init rules, nothing learned): extra/kernel."
    ]
