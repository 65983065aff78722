"""A legacy tf-keras ``.h5`` as a check target (issue 10.3): the verdict is what tf-keras'
own restore of a ``save_weights`` checkpoint into that model does, which goes by object
path, not by the layer names stored in the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits

from ckptmigrate import check
from ckptmigrate.compare import Kind

tf_keras = pytest.importorskip("tf_keras")


def _build(width: int = 8) -> Any:
    layers = tf_keras.layers
    model = tf_keras.Sequential(
        [
            tf_keras.Input((6, 6, 2)),
            layers.Conv2D(3, 3),
            layers.BatchNormalization(),
            layers.Flatten(),
            layers.Dense(width, activation="relu"),
            layers.Dense(2),
        ]
    )
    model.compile("adam", "mse")
    return model


def _trained(tmp_path: Path) -> tuple[Any, Path]:
    model = _build()
    rng = np.random.default_rng(0)
    model.fit(rng.standard_normal((8, 6, 6, 2)), rng.standard_normal((8, 2)), verbose=0)
    prefix = tmp_path / "run" / "x.ckpt"
    model.save_weights(str(prefix))  # tf-keras save_weights: a TF2 checkpoint
    return model, prefix


def _restore(target: Path, prefix: Path, width: int = 8) -> Any:
    """What the .h5 target means: its model (the weights-only file loaded into the model
    built in code), then tf-keras' restore of the checkpoint into it."""
    if target.name == "weights.h5":
        model = _build(width)
        model.load_weights(str(target))
    else:
        model = tf_keras.models.load_model(str(target))
    model.load_weights(str(prefix)).assert_existing_objects_matched()
    return model


@pytest.mark.parametrize("saved_as", ["full.h5", "weights.h5"])
def test_legacy_h5_target_agrees_with_tf_keras_restore(
    tf: Any, tmp_path: Path, saved_as: str
) -> None:
    trained, prefix = _trained(tmp_path)
    other = _build()  # another instance: its layers are named conv2d_1, dense_2, ...
    assert other.layers[0].name != trained.layers[0].name
    target = tmp_path / saved_as
    if saved_as == "full.h5":
        other.save(str(target))  # legacy HDF5, the whole model
    else:
        other.save_weights(str(target))  # legacy HDF5, weights only

    restored = _restore(target, prefix)  # TensorFlow: it fits
    for a, b in zip(restored.weights, trained.weights, strict=True):
        assert same_bits(a.numpy(), b.numpy())

    report = check(prefix, target)
    assert report.ok, report.headline
    assert report.count(Kind.MATCHED) == len(trained.weights) == 10
    assert not any(f.tensorflow_error for f in report.findings)


@pytest.mark.parametrize("saved_as", ["full.h5", "weights.h5"])
def test_legacy_h5_target_that_does_not_fit(tf: Any, tmp_path: Path, saved_as: str) -> None:
    _, prefix = _trained(tmp_path)
    wider = _build(width=16)
    target = tmp_path / saved_as
    if saved_as == "full.h5":
        wider.save(str(target))
    else:
        wider.save_weights(str(target))

    with pytest.raises(Exception, match=r"shape"):
        _restore(target, prefix, width=16)

    report = check(prefix, target)
    assert not report.ok
    mismatched = {f.name: f for f in report.findings if f.kind is Kind.SHAPE_MISMATCH}
    assert report.count(Kind.MISSING) == 0
    # The wider Dense (kernel [48, 16], bias [16]) and the next kernel [16, 2]: each paired
    # with the same layer's tensor in the checkpoint, whose shape is the checkpoint's own.
    shapes = {
        f.checkpoint.name.split("/.ATTRIBUTES")[0]: (f.target.shape, f.checkpoint.shape)
        for f in mismatched.values()
        if f.checkpoint is not None and f.target is not None
    }
    assert shapes == {
        "layer_with_weights-2/kernel": ((48, 16), (48, 8)),
        "layer_with_weights-2/bias": ((16,), (8,)),
        "layer_with_weights-3/kernel": ((16, 2), (8, 2)),
    }
    reader = tf.train.load_checkpoint(str(prefix))
    for finding in mismatched.values():
        assert finding.checkpoint is not None
        assert tuple(reader.get_tensor(finding.checkpoint.name).shape) == finding.checkpoint.shape
