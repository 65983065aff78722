"""Function-preserving widening (issue 11, item 5): a layer that ``suggest`` grows keeps what
the model computes. The new units' own weights start random (they learn), their biases at
zero, and the rows of the next layer fed by them at zero, so the migrated model's outputs
equal the trained source's until training moves them. TensorFlow and Keras compute the
outputs; nothing here recomputes a layer in numpy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptmigrate.cli import app
from ckptmigrate.examples import build_estimator_dnn
from ckptmigrate.suggestion.fixes import fan_in_axis, shape_ops

runner = CliRunner()


def test_a_grown_kernel_pads_its_new_units_randomly_and_its_new_inputs_with_zeros() -> None:
    glorot = {"fill": "glorot_uniform"}
    ops, doubt = shape_ops((10, 8), (20, 12), glorot, fan_in=0)
    assert doubt is None
    assert [op["pad"] for op in ops] == [
        {"shape": [10, 12], "fill": "glorot_uniform"},
        {"shape": [20, 12], "fill": "zeros"},
    ]
    assert "function-preserving" in ops[1]["note"]
    # Only the inputs grow (the head after a widened layer): one zero pad.
    ops, _ = shape_ops((10, 3), (20, 3), glorot, fan_in=0)
    assert [op["pad"] for op in ops] == [{"shape": [20, 3], "fill": "zeros"}]
    # Only the units grow (the first layer): random, nothing to preserve.
    ops, _ = shape_ops((4, 10), (4, 20), glorot, fan_in=0)
    assert [op["pad"] for op in ops] == [{"shape": [4, 20], "fill": "glorot_uniform"}]
    # Opted out, or no fan-in axis known: one random pad, as before.
    ops, _ = shape_ops((10, 8), (20, 12), glorot)
    assert [op["pad"] for op in ops] == [{"shape": [20, 12], "fill": "glorot_uniform"}]


def test_only_weight_matrices_of_a_known_layout_have_a_fan_in_axis() -> None:
    assert fan_in_axis("dnn/hiddenlayer_1/kernel", (10, 8), "float32") == 0
    assert fan_in_axis("model/_operations/1/_kernel", (3, 3, 4, 8), "float32") == 2
    assert fan_in_axis("cls/seq_relationship/output_weights", (2, 8), "float32") is None
    assert fan_in_axis("embeddings/word_embeddings", (100, 8), "float32") is None
    assert fan_in_axis("lstm/cell/recurrent_kernel", (8, 32), "float32") is None
    assert fan_in_axis("dense/bias", (8,), "float32") is None


def _suggest_convert(source: Path, target: Path, directory: Path, *flags: str) -> tuple[Path, str]:
    map_path = directory / "widen.yaml"
    done = runner.invoke(
        app, ["suggest", str(source), "-t", str(target), "-o", str(map_path), *flags]
    )
    assert done.exit_code == 0, done.output
    out = directory / "out"
    convert = ["convert", str(source), "-m", str(map_path), "-t", str(target), "-o", str(out)]
    done = runner.invoke(app, [*convert, "--verify"])
    assert done.exit_code == 0, done.output
    assert "verify ok" in done.output
    return out, map_path.read_text()


def _keras3_stack(units: tuple[int, ...], activation: str, seed: int, train: bool) -> Any:
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    layers = [
        keras.layers.Dense(u, activation=activation if i < len(units) - 1 else None)
        for i, u in enumerate(units)
    ]
    model = keras.Sequential([keras.Input((5,)), *layers], name="stack")
    if train:
        model.compile(optimizer="adam", loss="mse")
        rng = np.random.default_rng(seed)
        x, y = rng.standard_normal((32, 5)), rng.standard_normal((32, units[-1]))
        model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    return model


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_a_widened_keras3_stack_predicts_what_the_trained_one_did(
    tf: Any, tmp_path: Path, activation: str
) -> None:
    old = _keras3_stack((8, 6, 3), activation, seed=0, train=True)
    source = tf.train.Checkpoint(model=old).write(str(tmp_path / "old" / "ckpt"))
    archive = tmp_path / "wide.keras"
    _keras3_stack((16, 11, 3), activation, seed=1, train=False).save(archive)
    x = np.random.default_rng(7).standard_normal((64, 5)).astype(np.float32)
    expected = old.predict(x, verbose=0)

    def widened(*flags: str) -> np.ndarray:
        directory = tmp_path / ("random" if flags else "preserving")
        directory.mkdir()
        out, text = _suggest_convert(Path(source), archive, directory, *flags)
        assert ("function-preserving" in text) is not bool(flags)
        model = _keras3_stack((16, 11, 3), activation, seed=2, train=False)
        found = tf.train.latest_checkpoint(str(out))
        tf.train.Checkpoint(model=model).read(found).assert_existing_objects_matched()
        # the trained cells are the source's, the new units' inputs are not all zero
        kernel = model.layers[1].kernel.numpy()
        np.testing.assert_array_equal(kernel[:8, :6], old.layers[1].kernel.numpy())
        assert np.abs(kernel[:8, 6:]).min() > 0
        return np.asarray(model.predict(x, verbose=0))

    np.testing.assert_allclose(widened(), expected, rtol=0, atol=1e-6)
    # --random-growth: the new rows are random, and the outputs move.
    assert np.abs(widened("--random-growth") - expected).max() > 1e-3


def _dnn_graph(tf: Any, hidden: tuple[int, ...]) -> tuple[Any, Any, Any, Any]:
    """The Estimator-named DNN (Adagrad) in a new graph: (graph, train op, features, logits)."""
    graph = tf.Graph()
    with graph.as_default():
        train = build_estimator_dnn(tf, hidden_units=hidden, partitioned=False)
        logits = graph.get_tensor_by_name("dnn/logits/add:0")
        features = next(  # the fixed [8, 4] batch: fed other values below
            op.outputs[0]
            for op in graph.get_operations()
            if op.type == "Const" and op.outputs[0].shape.as_list() == [8, 4]
        )
    return graph, train, features, logits


def _logits_after(tf: Any, hidden: tuple[int, ...], prefix: str, x: np.ndarray) -> np.ndarray:
    v1 = tf.compat.v1
    graph, train, features, logits = _dnn_graph(tf, hidden)
    with graph.as_default(), v1.Session(graph=graph) as session:
        v1.train.Saver().restore(session, prefix)
        out = session.run(logits, {features: x})
        session.run(train)  # one Adagrad step on the restored accumulators
        for v in v1.global_variables():
            assert np.isfinite(session.run(v)).all(), v.op.name
    return np.asarray(out)


def test_a_widened_estimator_dnn_computes_what_the_trained_one_did(tf: Any, tmp_path: Path) -> None:
    v1 = tf.compat.v1
    graph, train, _, _ = _dnn_graph(tf, (10, 10))
    with graph.as_default(), v1.Session(graph=graph) as session:
        session.run(v1.global_variables_initializer())
        for _ in range(5):
            session.run(train)
        source = v1.train.Saver().save(session, str(tmp_path / "old" / "model.ckpt"))
    graph, _, _, _ = _dnn_graph(tf, (20, 15))
    with graph.as_default():
        meta = tmp_path / "new.meta"
        v1.train.export_meta_graph(str(meta))
    out, text = _suggest_convert(Path(source), meta, tmp_path)
    assert "function-preserving" in text
    x = np.random.default_rng(3).standard_normal((8, 4)).astype(np.float32)
    expected = _logits_after(tf, (10, 10), source, x)
    found = tf.train.latest_checkpoint(str(out))
    np.testing.assert_allclose(_logits_after(tf, (20, 15), found, x), expected, rtol=0, atol=1e-6)
