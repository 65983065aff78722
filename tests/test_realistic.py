"""Checkpoints shaped like users' real ones, made by TF: inspect agrees with TensorFlow and
an unchanged rewrite restores through the API that wrote it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits
from models import (
    estimator_dnn_graph,
    keras3_model,
    save_estimator_checkpoint,
    save_sharded_checkpoint,
    tf_keras_model,
)

from ckptmigrate import Role, inspect_checkpoint, open_checkpoint, rewrite_checkpoint


def assert_inspect_agrees_with_tf(tf: Any, path: Path) -> None:
    report = inspect_checkpoint(path)
    tf_reader = tf.train.load_checkpoint(str(path))
    tf_shapes = tf_reader.get_variable_to_shape_map()
    tf_dtypes = tf_reader.get_variable_to_dtype_map()
    ours = {row.key: (list(row.shape), row.dtype) for row in report.rows}
    theirs = {k: (list(tf_shapes[k]), tf_dtypes[k].name) for k in tf_shapes}
    theirs = {k: (s, {"half": "float16"}.get(d, d)) for k, (s, d) in theirs.items()}
    assert ours == theirs
    with open_checkpoint(path) as checkpoint:
        for key in tf_shapes:
            assert same_bits(checkpoint.reader.read(key), tf_reader.get_tensor(key)), key


def test_estimator_style_checkpoint(tf: Any, tmp_path: Path) -> None:
    prefix, values = save_estimator_checkpoint(tf, tmp_path / "run")
    assert_inspect_agrees_with_tf(tf, prefix)
    report = inspect_checkpoint(tmp_path / "run")  # the directory: follows the state file
    roles = {row.key: row.role for row in report.rows}
    assert roles["global_step"] is Role.STEP
    assert roles["dnn/hiddenlayer_0/kernel"] is Role.MODEL
    assert roles["dnn/hiddenlayer_0/kernel/Adagrad"] is Role.OPTIMIZER
    embedding = "dnn/input_from_feature_columns/input_layer/ids_embedding/embedding_weights"
    row = next(r for r in report.rows if r.key == embedding)
    assert row.shape == (10, 4)
    assert row.slices == ("0,4:0,4", "4,3:0,4", "7,3:0,4")
    with open_checkpoint(prefix) as checkpoint:
        assert same_bits(checkpoint.reader.read(embedding), values[embedding])


def test_estimator_rewrite_restores_with_saver(tf: Any, tmp_path: Path) -> None:
    prefix, values = save_estimator_checkpoint(tf, tmp_path / "run")
    result = rewrite_checkpoint(prefix, tmp_path / "copy")
    assert result.prefix == (tmp_path / "copy" / prefix.name).absolute()
    assert tf.train.latest_checkpoint(str(tmp_path / "copy")) == str(result.prefix)
    graph, saver, _ = estimator_dnn_graph(tf, steps=0)
    with graph.as_default():
        saver.restore(graph.session, str(result.prefix))
        for var in tf.compat.v1.global_variables():
            info = getattr(var, "_save_slice_info", None)
            if info is None:
                assert same_bits(graph.session.run(var), values[var.op.name]), var.op.name
            else:
                start = info.var_offset[0]
                expected = values[info.full_name][start : start + info.var_shape[0]]
                assert same_bits(graph.session.run(var), expected)
        graph.session.close()


def test_sharded_checkpoint(tf: Any, tmp_path: Path) -> None:
    prefix, values = save_sharded_checkpoint(tf, tmp_path)
    with open_checkpoint(prefix) as checkpoint:
        assert checkpoint.reader.header.num_shards == 2  # type: ignore[attr-defined]
        shards = {checkpoint.reader.info(k).shard for k in values}
        assert shards == {0, 1}
    assert_inspect_agrees_with_tf(tf, prefix)
    result = rewrite_checkpoint(prefix, tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").glob("*.data-*")) == [
        "sharded.ckpt.data-00000-of-00002",
        "sharded.ckpt.data-00001-of-00002",
    ]
    reader = tf.train.load_checkpoint(str(result.prefix))
    for name, value in values.items():
        assert same_bits(reader.get_tensor(name), value)


def test_keras3_model_through_tf_train_checkpoint(tf: Any, tmp_path: Path) -> None:
    model = keras3_model()
    step = tf.Variable(5, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, step=step)
    prefix = checkpoint.save(str(tmp_path / "k3" / "ckpt"))
    assert_inspect_agrees_with_tf(tf, Path(prefix))
    roles = {row.original_name: row.role for row in inspect_checkpoint(prefix).rows}

    def role_of(suffix: str) -> Role:  # Keras numbers model names per process
        (role,) = {r for name, r in roles.items() if name and name.endswith(suffix)}
        return role

    assert role_of("dense/kernel") is Role.MODEL
    assert role_of("dense_kernel_momentum") is Role.OPTIMIZER
    assert role_of("adam/iteration") is Role.STEP
    saved = [w.numpy().copy() for w in model.weights]

    result = rewrite_checkpoint(prefix, tmp_path / "copy")
    for weight in model.weights:
        weight.assign(np.zeros(weight.shape, weight.dtype))
    step.assign(0)
    checkpoint.restore(str(result.prefix)).assert_consumed()
    assert int(step.numpy()) == 5
    for weight, value in zip(model.weights, saved, strict=True):
        assert same_bits(weight.numpy(), value)


def test_tf_keras_save_weights_checkpoint(tf: Any, tmp_path: Path) -> None:
    pytest.importorskip("tf_keras")
    model = tf_keras_model()
    model.save_weights(str(tmp_path / "x.ckpt"))
    prefix = tmp_path / "x.ckpt"
    assert_inspect_agrees_with_tf(tf, prefix)
    report = inspect_checkpoint(prefix)
    originals = {row.key: row.original_name for row in report.rows}
    kernel_key = "layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    assert originals[kernel_key] is not None
    assert originals[kernel_key].endswith("kernel")
    assert report.object_based

    saved = [w.numpy().copy() for w in model.weights]
    result = rewrite_checkpoint(prefix, tmp_path / "copy")
    fresh = tf_keras_model(seed=1)
    fresh.load_weights(str(result.prefix)).assert_existing_objects_matched()
    for weight, value in zip(fresh.weights, saved, strict=True):
        assert same_bits(weight.numpy(), value)
