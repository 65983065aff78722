"""A tf-keras ``save_weights`` checkpoint into a Keras 3 model whose layers got other
auto-generated names (issue 11.7): ``dense_11``/``dense_12`` against ``dense``/``dense_1``
pair by layer order and shape, and the conversion says so; TensorFlow and Keras check the
values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ckptmigrate
from ckptmigrate.suggestion import suggest


def _tf_keras_checkpoint(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    """Trained tf-keras Sequential whose Dense layers are dense_11 and dense_12."""
    import tf_keras

    tf_keras.backend.clear_session()
    for _ in range(11):  # other layers made earlier in the process take dense .. dense_10
        tf_keras.layers.Dense(1)
    model = tf_keras.Sequential(
        [tf_keras.layers.Dense(8, input_shape=(4,)), tf_keras.layers.Dense(3)]
    )
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((16, 4)), rng.standard_normal((16, 3)), epochs=1, verbose=0)
    assert next(w.name for w in model.weights) == "dense_11/kernel:0"
    prefix = tmp_path / "tfk" / "ckpt"
    model.save_weights(str(prefix))
    return prefix, [w.numpy() for w in model.weights]


def _keras3_model() -> Any:
    import keras

    keras.backend.clear_session()  # layers named dense, dense_1
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(3)])


@pytest.mark.parametrize("mapping", [None, "tf-keras-to-keras3"])
def test_convert_pairs_auto_named_layers_by_order(
    tf: Any, tmp_path: Path, mapping: str | None
) -> None:
    prefix, values = _tf_keras_checkpoint(tmp_path)
    model = _keras3_model()
    out = tmp_path / "out.weights.h5"
    result = ckptmigrate.convert(prefix, mapping, out, target=model, format="keras", verify=True)
    assert result.verification is not None
    assert result.verification.ok
    assert any("by layer order and shape" in w for w in result.plan.warnings), result.plan.warnings
    model.load_weights(str(out))
    for got, want in zip(model.weights, values, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)


def test_suggest_pairs_auto_named_layers(tf: Any, tmp_path: Path) -> None:
    prefix, _ = _tf_keras_checkpoint(tmp_path)
    model = _keras3_model()
    suggestion = suggest(prefix, model)
    made = {p.source: p.target for p in suggestion.pairs}
    assert made == {
        "layer_with_weights-0/kernel": "model/_functional/_operations/1/_kernel",
        "layer_with_weights-0/bias": "model/_functional/_operations/1/bias",
        "layer_with_weights-1/kernel": "model/_functional/_operations/2/_kernel",
        "layer_with_weights-1/bias": "model/_functional/_operations/2/bias",
    }
    assert not [r for r in suggestion.rules if "init" in r.body]
    notes = [r.body.get("note", "") for r in suggestion.rules if "rename" in r.body]
    assert notes
    assert all("by layer order and shape" in n for n in notes), notes
    assert "(dense_11 -> dense)" in notes[0] or "(dense_12 -> dense_1)" in notes[0]
