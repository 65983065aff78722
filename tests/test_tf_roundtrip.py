"""Bit-exact agreement with TensorFlow, both ways, over every dtype and odd shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits, tf_save
from hypothesis import HealthCheck, given, settings
from strategies import checkpoints

from ckptmigrate.formats.bundle_reader import BundleReader
from ckptmigrate.formats.bundle_writer import BundleWriter

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _fresh(tmp_path: Path) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(dir=tmp_path))


@PROPERTY
@given(contents=checkpoints)
def test_we_read_what_tensorflow_writes(
    tf: Any, tmp_path: Path, contents: dict[str, np.ndarray]
) -> None:
    prefix = tf_save(tf, _fresh(tmp_path) / "ckpt", contents)
    with BundleReader(prefix) as reader:
        assert sorted(reader.variable_keys()) == sorted(contents)
        for name, value in contents.items():
            info = reader.info(name)
            assert info.shape == value.shape
            assert same_bits(reader.read(name), value), name


@PROPERTY
@given(contents=checkpoints)
def test_tensorflow_reads_what_we_write(
    tf: Any, tmp_path: Path, contents: dict[str, np.ndarray]
) -> None:
    out = _fresh(tmp_path) / "out"
    with BundleWriter(out, "ckpt") as writer:
        for name, value in contents.items():
            writer.add_array(name, value)
        prefix = writer.commit()
    reader = tf.train.load_checkpoint(str(prefix))
    dtype_map = reader.get_variable_to_dtype_map()
    assert sorted(dtype_map) == sorted(contents)
    for name, value in contents.items():
        assert same_bits(reader.get_tensor(name), value), name
    # RestoreV2 is the kernel tf.compat.v1.train.Saver.restore runs.
    names = sorted(contents)
    restored = tf.raw_ops.RestoreV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        dtypes=[dtype_map[n] for n in names],
    )
    for name, tensor in zip(names, restored, strict=True):
        assert same_bits(tensor.numpy(), contents[name]), name


@pytest.mark.parametrize(
    "dtype",
    [
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "bool",
        "complex64",
        "complex128",
        "string",
    ],
)
def test_saver_restores_what_we_write(tf: Any, tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(7)
    if dtype == "string":
        value = np.array([b"alpha", b"", b"\x00\xff"], dtype=object)
    elif dtype == "bool":
        value = rng.integers(0, 2, size=(3, 5)).astype(bool)
    else:
        value = rng.standard_normal((3, 5)).astype(tf.as_dtype(dtype).as_numpy_dtype)
    with BundleWriter(tmp_path / "out", "model.ckpt") as writer:
        writer.add_array("scope/var", value)
        prefix = writer.commit()
    graph = tf.Graph()
    with graph.as_default():
        var = tf.compat.v1.get_variable(
            "scope/var",
            shape=value.shape,
            dtype=tf.as_dtype(dtype),
            initializer=tf.compat.v1.zeros_initializer() if dtype != "string" else None,
            use_resource=dtype != "string",
        )
        saver = tf.compat.v1.train.Saver([var])
        with tf.compat.v1.Session(graph=graph) as session:
            saver.restore(session, str(prefix))
            assert same_bits(session.run(var), value)
