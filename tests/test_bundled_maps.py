"""Bundled maps, each applied to checkpoints TensorFlow made, restored by TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits
from models import estimator_dnn_graph, keras3_model, save_estimator_checkpoint, tf_keras_model
from typer.testing import CliRunner

from ckptmigrate import Role, check, convert, inspect_checkpoint
from ckptmigrate.cli import app
from ckptmigrate.compare import Kind
from ckptmigrate.mapping.schema import bundled_maps

MAPPINGS = Path(__file__).parents[1] / "mappings"


def test_maps_lists_every_bundled_map() -> None:
    result = CliRunner().invoke(app, ["maps"])
    assert result.exit_code == 0
    names = {line.split("\t")[0] for line in result.stdout.splitlines()}
    bundled = {p.stem for p in (Path(__file__).parents[1] / "mappings").glob("*.yaml")}
    assert names == bundled
    assert "strip-optimizer" in names


def test_every_bundled_map_is_described_documented_and_tested() -> None:
    readme = (MAPPINGS / "README.md").read_text()
    tests = "".join(
        (Path(__file__).parent / name).read_text()
        for name in (
            "test_bundled_maps.py",
            "test_rnn_maps.py",
            "test_model_garden_map.py",
            "test_hf_bert_map.py",
            "test_keras_torch_map.py",
        )
    )
    maps = dict(bundled_maps())
    assert len(maps) >= 4
    for name, description in maps.items():
        assert description, name
        assert "\n" not in description.strip(), name  # `maps` shows it on one line
        assert f"| `{name}` |" in readme, name
        assert f'"{name}"' in tests, f"no test applies the bundled map {name}"


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


def load_by_name(model: Any, prefix: Path, tf: Any) -> set[str]:
    """Assign each Keras variable the converted tensor named like it without the model's
    own scope (sequential/dense/kernel <- dense/kernel), as convert --target pairs them."""
    reader = tf.train.load_checkpoint(str(prefix))
    for variable in model.weights:
        variable.assign(reader.get_tensor(variable.path.split("/", 1)[1]))
    return set(reader.get_variable_to_shape_map())


def keras_dense_stack(hidden: tuple[int, ...], outputs: int) -> Any:
    import keras

    keras.backend.clear_session()  # default layer names dense, dense_1, ... from zero
    layers = [keras.layers.Dense(units, activation="relu") for units in hidden]
    return keras.Sequential(
        [keras.Input((4,)), *layers, keras.layers.Dense(outputs, name="logits")],
        name="sequential",
    )


def test_estimator_dnn_into_keras_dense_layers_predicts_the_same(tf: Any, tmp_path: Path) -> None:
    hidden = (10, 7, 5)
    graph, saver, _ = estimator_dnn_graph(tf, hidden_units=hidden, partitioned=False)
    inputs = np.random.default_rng(5).normal(size=(8, 4)).astype(np.float32)
    with graph.as_default():
        prefix = saver.save(graph.session, str(tmp_path / "run" / "model.ckpt"), global_step=2)
        # Feed our inputs in place of the graph's constant features.
        features = graph.get_operation_by_name("dnn/hiddenlayer_0/MatMul").inputs[0]
        logits = graph.get_operation_by_name("dnn/logits/add").outputs[0]
        expected = graph.session.run(logits, {features: inputs})
        graph.session.close()

    result = convert(prefix, "estimator-dnn-to-keras", tmp_path / "keras")
    assert not result.plan.warnings
    model = keras_dense_stack(hidden, 3)
    written = load_by_name(model, result.prefix, tf)
    layers = ("dense", "dense_1", "dense_2", "logits")
    assert written == {f"{layer}/{w}" for layer in layers for w in ("kernel", "bias")}
    predicted = np.asarray(model(inputs))
    difference = float(np.max(np.abs(predicted - expected)))
    assert difference < 1e-5, difference
    assert np.max(np.abs(expected)) > 0.1

    # The same map into the model's own keys (convert --target): TensorFlow restores it.
    into = convert(prefix, "estimator-dnn-to-keras", tmp_path / "into", target=model)
    assert into.plan.left_out == ()
    fresh = keras_dense_stack(hidden, 3)
    tf.train.Checkpoint(model=fresh).restore(str(into.prefix)).assert_existing_objects_matched()
    assert np.array_equal(np.asarray(fresh(inputs)), predicted)


def test_estimator_dnn_map_checked_against_keras(tf: Any, tmp_path: Path) -> None:
    source, _ = save_estimator_checkpoint(tf, tmp_path / "run")  # Adagrad, partitioned embedding
    model = keras_dense_stack((10, 10), 3)
    assert check(source, model).count(Kind.MATCHED) == 0
    report = check(source, model, map="estimator-dnn-to-keras")
    assert report.ok, report.findings
    assert report.count(Kind.MATCHED) == 6 == len(model.weights)
    unused = [f.name for f in report.findings if f.kind is Kind.UNUSED]
    assert unused == ["dnn/input_from_feature_columns/input_layer/ids_embedding/embedding_weights"]


def tf_keras_checkpoints(tf: Any, directory: Path) -> tuple[dict[str, Path], list[np.ndarray]]:
    """One tf-keras model, compiled with metrics and trained a step, saved the ways
    users save it: save_weights, tf.train.Checkpoint(model=...), and a SavedModel; returns
    them and the model's weights."""
    model = tf_keras_model()
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    rng = np.random.default_rng(1)
    model.fit(rng.standard_normal((8, 4)), rng.standard_normal((8, 3)), epochs=1, verbose=0)
    model.save_weights(str(directory / "weights" / "x.ckpt"))
    checkpoint = tf.train.Checkpoint(model=model).save(str(directory / "object" / "ckpt"))
    model.save(str(directory / "savedmodel"), save_format="tf")
    paths = {
        "save_weights": directory / "weights" / "x.ckpt",
        "checkpoint": Path(checkpoint),
        "savedmodel": directory / "savedmodel",
    }
    return paths, [w.numpy().copy() for w in model.weights]


def test_tf_keras_to_keras3_keeps_only_the_model_weights(tf: Any, tmp_path: Path) -> None:
    pytest.importorskip("tf_keras")
    sources, weights = tf_keras_checkpoints(tf, tmp_path)
    keras3 = keras3_model(train=False, seed=5)
    keras3.save_weights(tmp_path / "keras3.weights.h5")  # paired by the variables' names
    for how, source in sources.items():
        before = {row.role for row in inspect_checkpoint(source).rows}
        assert Role.OPTIMIZER in before, how  # there was training state to drop
        result = convert(source, "tf-keras-to-keras3", tmp_path / f"out-{how}")
        rows = inspect_checkpoint(result.prefix).rows
        kept = [row for row in rows if row.key != "_CHECKPOINTABLE_OBJECT_GRAPH"]
        assert {row.role for row in kept} == {Role.MODEL}, how
        assert {row.original_name for row in kept} == {
            f"dense{suffix}/{w}" for suffix in ("", "_1") for w in ("kernel", "bias")
        }, how

        report = check(source, tmp_path / "keras3.weights.h5", map="tf-keras-to-keras3")
        assert report.ok, (how, report.findings)
        assert report.count(Kind.MATCHED) == 4, how
        assert report.count(Kind.UNUSED) == 0, how  # nothing tf-keras-only is left over
        assert check(source, tmp_path / "keras3.weights.h5").count(Kind.UNUSED) > 0, how

        # Into the live Keras 3 model's own keys: nothing left out, and TF restores it.
        into = convert(source, "tf-keras-to-keras3", tmp_path / f"k3-{how}", target=keras3)
        assert into.plan.left_out == (), how
        fresh = keras3_model(train=False, seed=6)
        tf.train.Checkpoint(model=fresh).restore(str(into.prefix)).assert_existing_objects_matched()
        for variable, value in zip(fresh.weights, weights, strict=True):
            assert same_bits(variable.numpy(), value), (how, variable.path)


def test_tf_keras_to_keras3_drops_stateful_rnn_states_and_metrics(tf: Any, tmp_path: Path) -> None:
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.backend.clear_session()
    model = tf_keras.Sequential(
        [
            tf_keras.layers.LSTM(4, stateful=True, batch_input_shape=(2, 5, 3)),
            tf_keras.layers.Dense(3),
        ]
    )
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.fit(np.ones((4, 5, 3)), np.ones((4, 3)), batch_size=2, epochs=1, verbose=0)
    model.save(str(tmp_path / "savedmodel"), save_format="tf")
    before = {row.key for row in inspect_checkpoint(tmp_path / "savedmodel").rows}
    assert any("keras_api/states/" in key for key in before)
    assert any(key.startswith("keras_api/metrics/") for key in before)

    result = convert(tmp_path / "savedmodel", "tf-keras-to-keras3", tmp_path / "out")
    rows = inspect_checkpoint(result.prefix).rows
    kept = {row.original_name for row in rows if row.key != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    cell = "lstm/lstm_cell"
    assert kept == {
        f"{cell}/kernel",
        f"{cell}/recurrent_kernel",
        f"{cell}/bias",
        "dense/kernel",
        "dense/bias",
    }
    reader = tf.train.load_checkpoint(str(result.prefix))
    assert reader.get_variable_to_shape_map()  # TensorFlow reads the rewritten checkpoint
