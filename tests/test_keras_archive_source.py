"""A Keras 3 ``.keras`` archive as a source (issue 15, item 4): its ``model.weights.h5``
read in place from the zip, compared with what Keras itself loads from it, migrated into
another Keras 3 model and into a TensorFlow checkpoint that ``tf.train.Checkpoint``
restores; damaged archives are one-paragraph errors."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from helpers import same_bits

import ckptmigrate
from ckptmigrate.checkpoint import open_checkpoint
from ckptmigrate.cli import app


def _model(keras: Any, width: int, names: tuple[str, str]) -> Any:
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(width, name=names[0]),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(2, name=names[1]),
        ],
        name="net",
    )


@pytest.fixture
def archive(tf: Any, tmp_path: Path) -> Path:
    import keras

    model = _model(keras, 4, ("hidden", "head"))
    rng = np.random.default_rng(3)
    for weight in model.weights:
        weight.assign(rng.standard_normal(tuple(weight.shape)).astype(np.float32) + 2)
    path = tmp_path / "model.keras"
    model.save(str(path))
    return path


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if hasattr(o, "shape") else None)
    return out


def test_values_are_what_keras_loads(tf: Any, archive: Path, tmp_path: Path) -> None:
    import keras

    loaded = keras.saving.load_model(str(archive))
    loaded.save_weights(str(tmp_path / "loaded.weights.h5"))  # what Keras holds, by path
    held = _datasets(tmp_path / "loaded.weights.h5")
    with open_checkpoint(archive) as ckpt:
        keys = ckpt.keys()
        assert sorted(keys) == sorted(held)
        assert all(same_bits(ckpt.read(k), held[k]) for k in keys)
    # the reader read the member in place: the same values from a deflated copy
    deflated = tmp_path / "deflated.keras"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(deflated, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    with open_checkpoint(deflated) as ckpt:
        assert all(same_bits(ckpt.read(k), held[k]) for k in keys)
    report = ckptmigrate.inspect_checkpoint(archive, check_crc=True)
    assert len(report.rows) == len(held)


def test_into_another_keras_model_renamed_and_widened(
    tf: Any, archive: Path, tmp_path: Path
) -> None:
    """Renamed layers need nothing (a .weights.h5 goes by class-based paths); the widened
    Dense and the BatchNormalization after it need pads, and load_weights then holds the
    archive's values in the old rows."""
    import keras

    target = _model(keras, 6, ("encoder", "classifier"))
    assert not ckptmigrate.check(archive, target).ok
    mapping = tmp_path / "widen.yaml"
    mapping.write_text(
        "version: 1\nrules:\n"
        "  - {name: layers/dense/vars/0, pad: {shape: [3, 6], fill: zeros}}\n"
        "  - {name: layers/dense/vars/1, pad: {shape: [6], fill: zeros}}\n"
        "  - {match: 'layers/batch_normalization/vars/[0-3]', pad: {shape: [6], fill: ones}}\n"
        "  - {name: layers/dense_1/vars/0, pad: {shape: [6, 2], fill: zeros}}\n"
    )
    out = tmp_path / "wide.weights.h5"
    result = ckptmigrate.convert(archive, mapping, out, target=target, format="keras", verify=True)
    assert result.verification is not None
    assert result.verification.ok
    assert ckptmigrate.check(out, target).ok
    target.load_weights(str(out))
    source = keras.saving.load_model(str(archive))
    old, new = source.get_layer("hidden").kernel, target.get_layer("encoder").kernel
    np.testing.assert_array_equal(np.asarray(new)[:, :4], np.asarray(old))
    np.testing.assert_array_equal(np.asarray(new)[:, 4:], 0)
    head = np.asarray(target.get_layer("classifier").kernel)
    np.testing.assert_array_equal(head[:4], np.asarray(source.get_layer("head").kernel))


def test_into_a_tensorflow_checkpoint(tf: Any, archive: Path, tmp_path: Path) -> None:
    """Converted for the same Keras 3 model (its layers named otherwise): the output pairs
    by the archive's own layout, and tf.train.Checkpoint restores every value."""
    import keras

    target = _model(keras, 4, ("first", "second"))
    result = ckptmigrate.convert(archive, None, tmp_path / "out", target=target, verify=True)
    assert result.verification is not None
    assert result.verification.ok
    assert Path(str(result.prefix)).name == "model"  # named after the archive's stem
    fresh = _model(keras, 4, ("first", "second"))
    tf.train.Checkpoint(model=fresh).read(str(result.prefix)).assert_existing_objects_matched()
    source = keras.saving.load_model(str(archive))
    for a, b in zip(source.weights, fresh.weights, strict=True):
        assert same_bits(np.asarray(a), np.asarray(b)), a.path


def _run(*args: str) -> Any:
    from typer.testing import CliRunner

    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("damage", ["no_weights", "not_a_zip", "truncated"])
def test_a_damaged_archive_is_a_clear_error(damage: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.keras"
    if damage == "no_weights":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("config.json", "{}")
        said = "holds no model.weights.h5"
    elif damage == "not_a_zip":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
        said = "not a readable zip archive"
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 4000)
        path.write_bytes(path.read_bytes()[:2000])
        said = "bad.keras"
    result = _run("inspect", str(path))
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert "Traceback" not in result.output
