"""``assert_compatible(CKPT, obj)`` and ``restore(obj, CKPT)`` answer one question by one
rule (issue 10.6): the first raises exactly when the second would refuse, and what the
second restores is what TensorFlow holds afterwards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits
from models import keras3_model, tf_keras_model

from ckptmigrate import IncompatibleCheckpointError, assert_compatible, restore


def _auto_named_keras3(units: int = 8) -> Any:
    """A Keras 3 model whose layer names come from the process's counters (dense_7, ...):
    two instances never share them."""
    import keras

    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(units, activation="relu"), keras.layers.Dense(3)]
    )


def _renamed_keras3() -> Any:
    """The tf-keras model's architecture under other layer names: nothing pairs them."""
    import keras

    hidden = keras.layers.Dense(8, activation="relu", name="hidden")
    return keras.Sequential([keras.Input((4,)), hidden, keras.layers.Dense(3, name="out")])


def _outcomes(checkpoint: Path, build: Callable[[], Any]) -> tuple[Any, Any, Any]:
    """(assert_compatible's error or None, restore's error or None, the restored model)."""
    checked, restored = build(), build()
    try:
        assert_compatible(checkpoint, checked)
        compatible_error = None
    except IncompatibleCheckpointError as e:
        compatible_error = e
    before = [w.numpy().copy() for w in restored.weights]
    try:
        restore(restored, checkpoint)
        restore_error = None
    except IncompatibleCheckpointError as e:
        restore_error = e
        for weight, value in zip(restored.weights, before, strict=True):
            assert same_bits(weight.numpy(), value)  # refused before touching the model
    return compatible_error, restore_error, restored


def test_training_checkpoint_into_a_keras3_model_with_other_layer_names(
    tf: Any, tmp_path: Path
) -> None:
    trained = _auto_named_keras3()
    trained.compile("adam", "mse")
    trained.fit(np.ones((4, 4)), np.ones((4, 3)), verbose=0)
    prefix = tf.train.Checkpoint(model=trained, optimizer=trained.optimizer).save(
        str(tmp_path / "train" / "ckpt")
    )
    # TensorFlow: the object paths fit, through the root attribute 'model'.
    oracle = _auto_named_keras3()
    tf.train.Checkpoint(model=oracle).read(prefix).assert_existing_objects_matched()

    compatible_error, restore_error, restored = _outcomes(Path(prefix), _auto_named_keras3)
    assert compatible_error is None
    assert restore_error is None  # was: converted by the layer names, which differ
    for a, b, c in zip(restored.weights, trained.weights, oracle.weights, strict=True):
        assert same_bits(a.numpy(), b.numpy())
        assert same_bits(a.numpy(), c.numpy())


def test_tf_keras_checkpoint_into_keras3_converts_as_restore_does(tf: Any, tmp_path: Path) -> None:
    pytest.importorskip("tf_keras")
    source = tf_keras_model()  # layers dense, dense_1
    prefix = tmp_path / "tk" / "x.ckpt"
    source.save_weights(str(prefix))

    compatible_error, restore_error, restored = _outcomes(
        prefix,
        lambda: keras3_model(seed=1, train=False),  # also dense, dense_1
    )
    assert compatible_error is None  # was: "matched 0 of 4" while restore converted it
    assert restore_error is None
    for a, b in zip(restored.weights, source.weights, strict=True):
        assert same_bits(a.numpy(), b.numpy())


@pytest.mark.parametrize("case", ["names differ", "shape differs"])
def test_both_refuse_what_neither_way_restores(tf: Any, tmp_path: Path, case: str) -> None:
    pytest.importorskip("tf_keras")
    source = tf_keras_model()
    prefix = tmp_path / "tk" / "x.ckpt"
    source.save_weights(str(prefix))
    build = _renamed_keras3 if case == "names differ" else (lambda: keras3_model(units=(5, 3)))

    compatible_error, restore_error, _ = _outcomes(prefix, build)
    assert compatible_error is not None
    assert restore_error is not None
    assert compatible_error.report.headline == restore_error.report.headline
