"""Keras weight files as a source (inspect, check, convert), read with h5py: legacy tf-keras
``.h5`` (a full model, or save_weights) and Keras 3 ``.weights.h5``.

Keras is the oracle: the values read must be what Keras loads from the file into the model,
and a legacy file's names must be the keys a TensorFlow checkpoint of that model has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits
from typer.testing import CliRunner

from ckptmigrate import check, convert, open_checkpoint
from ckptmigrate.cli import app
from ckptmigrate.errors import CkptMigrateError


def _tf_keras_model(tf_keras: Any, seed: int) -> Any:
    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(seed)
    inputs = tf_keras.Input((6, 6, 2))
    x = tf_keras.layers.Conv2D(3, 3, name="conv")(inputs)
    x = tf_keras.layers.BatchNormalization(name="bn")(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    x = tf_keras.layers.Dense(4, activation="relu", name="hidden")(x)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="head")(x))


def _keras3_model(keras: Any, seed: int) -> Any:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(4, activation="tanh", name="hidden"),
            keras.layers.LayerNormalization(name="norm"),
            keras.layers.Dense(3, name="head"),
        ]
    )


@pytest.mark.parametrize("how", ["save_weights", "full_model"])
def test_legacy_h5_reads_as_the_models_tensorflow_checkpoint(
    tf: Any, tmp_path: Path, how: str
) -> None:
    tf_keras = pytest.importorskip("tf_keras")
    model = _tf_keras_model(tf_keras, seed=0)
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 6, 6, 2)), np.ones((4, 2)), epochs=1, verbose=0)
    h5 = tmp_path / "model.h5"
    if how == "full_model":
        model.save(h5)
    else:
        model.save_weights(h5)
    # What Keras loads from the file, saved as a TensorFlow checkpoint of that model.
    fresh = _tf_keras_model(tf_keras, seed=1)
    fresh.load_weights(h5)
    prefix = tmp_path / "tf" / "ckpt"
    fresh.save_weights(str(prefix))
    reader = tf.train.load_checkpoint(str(prefix))
    with open_checkpoint(h5) as ours:
        keys = ours.keys()
        assert len(keys) == len(fresh.weights)
        for key in keys:
            assert reader.has_tensor(key), key
            assert same_bits(ours.read(key), reader.get_tensor(key)), key
            assert ours.dtypes()[key] == reader.get_variable_to_dtype_map()[key].name
    # ...so it converts into that model with no map, and restores there.
    out = tmp_path / "out"
    convert(h5, None, out, target=str(prefix), verify=True)
    restored = _tf_keras_model(tf_keras, seed=2)
    # The output prefix is named after the source (model.h5), which tf-keras' load_weights
    # would take for an HDF5 file: restore as it does, rooted at the model.
    found = tf.train.latest_checkpoint(str(out))
    tf.train.Checkpoint(restored).read(found).assert_existing_objects_matched()
    for got, want in zip(restored.weights, fresh.weights, strict=True):
        assert same_bits(np.asarray(got), np.asarray(want)), got.name


def test_keras3_weights_h5_reads_what_keras_loads(tf: Any, tmp_path: Path) -> None:
    import keras

    from ckptmigrate.targets.keras_layout import keras_layout

    model = _keras3_model(keras, seed=0)
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 5)), np.ones((4, 3)), epochs=1, verbose=0)
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    fresh = _keras3_model(keras, seed=1)
    fresh.compile(optimizer="adam", loss="mse")
    fresh.optimizer.build(fresh.trainable_variables)  # so Keras loads its state too
    fresh.load_weights(path)
    loaded = {v.path: np.asarray(v) for v in [*fresh.weights, *fresh.optimizer.variables]}
    layout = keras_layout(fresh)  # Keras says which dataset holds which variable
    try:
        with open_checkpoint(path) as ours:
            assert ours.keys() == sorted(e.h5_path for e in layout.entries)
            for entry in layout.entries:
                value = ours.read(entry.h5_path)
                assert same_bits(value, loaded[entry.variable_path]), entry.h5_path
            names = ours.original_names
        # the file names layers by class (dense, dense_1), their weights by position
        assert names["layers/dense/vars/0"] == "dense/kernel"
        assert names["layers/dense_1/vars/1"] == "dense_1/bias"
        assert "optimizer/vars/1" not in names
    finally:
        layout.close()
    # As a source of check (against another weights file of the model) and of a conversion
    # into the model's own weights file (--format keras: the same positions).
    other = tmp_path / "other.weights.h5"
    _keras3_model(keras, seed=2).save_weights(other)
    assert check(path, other).ok
    target = tmp_path / "target.keras"
    _keras3_model(keras, seed=2).save(target)
    out = tmp_path / "out.weights.h5"
    convert(path, None, out, target=target, format="keras", verify=True)
    again = _keras3_model(keras, seed=3)
    again.load_weights(out)
    for got, want in zip(again.weights, fresh.weights, strict=True):
        assert same_bits(np.asarray(got), np.asarray(want)), want.path


def test_external_links_in_a_source_are_refused(tmp_path: Path) -> None:
    import h5py

    elsewhere = tmp_path / "elsewhere.h5"
    with h5py.File(elsewhere, "w") as f:
        f["secret"] = np.arange(4, dtype=np.float32)
    path = tmp_path / "linked.weights.h5"
    with h5py.File(path, "w") as f:
        f["layers/dense/vars/0"] = np.ones((2, 2), np.float32)
        f["layers/dense/vars/1"] = h5py.ExternalLink(str(elsewhere), "secret")
    with pytest.raises(CkptMigrateError, match="external link") as caught:
        open_checkpoint(path)
    assert str(path) in str(caught.value)


def _write_h5(path: Path, datasets: dict[str, Any], attrs: dict[str, Any] | None = None) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value
        f.attrs.update(attrs or {})
    return path


def test_inspect_a_weights_file_without_tensorflow(tmp_path: Path) -> None:
    kernel = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = _write_h5(
        tmp_path / "m.weights.h5",
        {"layers/dense/vars/0": kernel, "layers/dense/vars/1": np.zeros(3, np.float32)},
    )
    with open_checkpoint(path) as ours:
        assert same_bits(ours.read("layers/dense/vars/0"), kernel)
    result = CliRunner().invoke(app, ["inspect", "--check-crc", str(path)])
    assert result.exit_code == 0, result.output
    assert "dense/kernel" in result.stdout  # the inferred original name
    # HDF5 weight files carry no checksums: only that every tensor reads is claimed
    assert "reads in full (the format has no checksums)" in result.stdout
    assert "CRC32C" not in result.stdout


@pytest.mark.parametrize(
    ("datasets", "attrs", "said"),
    [
        ({"x": np.ones(3)}, {}, "no weights found in this HDF5 file"),
        ({"layers/d/vars/0": np.array([b"a", b"b"])}, {}, "which no checkpoint variable"),
        ({}, {"layer_names": [b"dense"]}, "its layer_names list names 'dense'"),
    ],
)
def test_files_that_are_no_keras_weights_are_clean_errors(
    tmp_path: Path, datasets: dict[str, Any], attrs: dict[str, Any], said: str
) -> None:
    path = _write_h5(tmp_path / "bad.h5", datasets, attrs)
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert message.startswith(f"error: {path}")
    assert said in message
    assert "Traceback" not in message


def test_a_truncated_weights_file_is_a_clean_error(tmp_path: Path) -> None:
    path = _write_h5(tmp_path / "m.weights.h5", {"layers/dense/vars/0": np.ones((64, 64))})
    path.write_bytes(path.read_bytes()[:900])
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert message.startswith(f"error: {path}: h5py cannot read this HDF5 file")
    assert "is the copy complete?" in message
