"""Bundled maps, each applied to checkpoints TensorFlow made, restored by TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits
from models import estimator_dnn_graph, keras3_model, save_estimator_checkpoint, tf_keras_model
from typer.testing import CliRunner

from ckptmigrate import Role, convert, inspect_checkpoint
from ckptmigrate.cli import app


def test_maps_lists_every_bundled_map() -> None:
    result = CliRunner().invoke(app, ["maps"])
    assert result.exit_code == 0
    names = {line.split("\t")[0] for line in result.stdout.splitlines()}
    bundled = {p.stem for p in (Path(__file__).parents[1] / "mappings").glob("*.yaml")}
    assert names == bundled
    assert "strip-optimizer" in names


def test_strip_optimizer_on_an_estimator_checkpoint(tf: Any, tmp_path: Path) -> None:
    source, before = save_estimator_checkpoint(tf, tmp_path / "run")
    result = convert(source, "strip-optimizer", tmp_path / "slim")
    roles = {row.role for row in inspect_checkpoint(result.prefix).rows}
    assert roles == {Role.MODEL}
    assert not result.plan.warnings
    graph, _, _ = estimator_dnn_graph(tf, steps=0)
    with graph.as_default():
        model_vars = [
            v
            for v in tf.compat.v1.global_variables()
            if "Adagrad" not in v.op.name and "global_step" not in v.op.name
        ]
        tf.compat.v1.train.Saver(model_vars).restore(graph.session, str(result.prefix))
        kernel = next(v for v in model_vars if v.op.name == "dnn/hiddenlayer_1/kernel")
        assert same_bits(graph.session.run(kernel), before["dnn/hiddenlayer_1/kernel"])
        graph.session.close()


def test_strip_optimizer_on_a_tf_keras_checkpoint(tf: Any, tmp_path: Path) -> None:
    pytest.importorskip("tf_keras")
    model = tf_keras_model()
    model.save_weights(str(tmp_path / "x.ckpt"))
    saved = [w.numpy().copy() for w in model.weights]
    result = convert(tmp_path / "x.ckpt", "strip-optimizer", tmp_path / "slim")
    keys = {name for name, _ in tf.train.list_variables(str(result.prefix))}
    assert not any("optimizer" in key for key in keys)
    fresh = tf_keras_model(seed=3)
    fresh.load_weights(str(result.prefix)).assert_existing_objects_matched()
    for weight, value in zip(fresh.weights, saved, strict=True):
        assert same_bits(weight.numpy(), value)


def test_strip_optimizer_on_a_keras3_checkpoint(tf: Any, tmp_path: Path) -> None:
    model = keras3_model()
    prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / "k3" / "ckpt"))
    saved = [w.numpy().copy() for w in model.weights]
    result = convert(prefix, "strip-optimizer", tmp_path / "slim")
    assert {row.role for row in inspect_checkpoint(result.prefix).rows} <= {
        Role.MODEL,
        Role.METADATA,
    }
    fresh = keras3_model(seed=4, train=False)
    tf.train.Checkpoint(model=fresh).restore(str(result.prefix)).assert_existing_objects_matched()
    for weight, value in zip(fresh.weights, saved, strict=True):
        assert same_bits(weight.numpy(), value)
    assert not np.array_equal(saved[0], keras3_model(seed=4, train=False).weights[0].numpy())
