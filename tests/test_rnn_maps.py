"""The bundled TF1 RNN maps: a TF1 cell's checkpoint, converted, computes in a Keras 3 layer
what the TF1 graph computed, on the same inputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ckptmigrate import check, convert
from ckptmigrate.compare import Kind

BATCH, STEPS, FEATURES, UNITS = 4, 6, 3, 5  # input != units, so the kernel split matters
# float32 recurrences summed in another order; observed differences are around 1e-7.
TOLERANCE = 1e-5

legacy = pytest.importorskip("tf_keras.src.layers.rnn.legacy_cells")
pytestmark = pytest.mark.filterwarnings("ignore:`tf.nn.rnn_cell.*is deprecated:UserWarning")


def tf1_rnn_checkpoint(
    tf: Any, cell: Callable[[], Any], directory: Path, inputs: np.ndarray
) -> tuple[Path, np.ndarray]:
    """dynamic_rnn over ``cell()`` in a TF1 graph, one Adam step (so slots and global_step
    exist), then random values everywhere (so every gate block and bias matters); returns
    the Saver checkpoint and the TF1 outputs on ``inputs``."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    rng = np.random.default_rng(7)
    with graph.as_default(), v1.Session(graph=graph) as session:
        x = v1.placeholder(tf.float32, [None, STEPS, FEATURES])
        outputs, _ = v1.nn.dynamic_rnn(cell(), x, dtype=tf.float32)
        step = v1.train.get_or_create_global_step()
        train = v1.train.AdamOptimizer(0.1).minimize(
            tf.reduce_mean(tf.square(outputs)), global_step=step
        )
        session.run(v1.global_variables_initializer())
        session.run(train, {x: inputs})
        for variable in v1.trainable_variables():
            shape = variable.shape.as_list()
            variable.load(rng.normal(0.0, 0.5, shape).astype(np.float32), session)
        expected = session.run(outputs, {x: inputs})
        prefix = v1.train.Saver().save(session, str(directory / "model.ckpt"), global_step=1)
    return Path(prefix), expected


def load_into(model: Any, prefix: Path, tf: Any) -> set[str]:
    """Assign each model variable the converted tensor of its name (without the model's
    own scope, as convert --target pairs them); returns the checkpoint's names."""
    reader = tf.train.load_checkpoint(str(prefix))
    names = set(reader.get_variable_to_shape_map())
    for variable in model.weights:
        name = variable.path.split("/", 1)[1]  # sequential/lstm/lstm_cell/kernel
        variable.assign(reader.get_tensor(name))
    return names


def keras_rnn(layer: Any) -> Any:
    import keras

    keras.backend.clear_session()
    return keras.Sequential([keras.Input((STEPS, FEATURES)), layer], name="sequential")


CASES = {
    "BasicLSTMCell": (
        lambda: legacy.BasicLSTMCell(UNITS),
        "tf1-rnn-to-keras",
        "lstm",
        "rnn/basic_lstm_cell",
    ),
    "LSTMCell": (lambda: legacy.LSTMCell(UNITS), "tf1-rnn-to-keras", "lstm", "rnn/lstm_cell"),
    "GRUCell": (lambda: legacy.GRUCell(UNITS), "tf1-rnn-to-keras", "gru", "rnn/gru_cell"),
}


@pytest.mark.parametrize("cell_name", list(CASES))
def test_tf1_cell_into_a_keras_layer_computes_the_same(
    tf: Any, tmp_path: Path, cell_name: str
) -> None:
    import keras

    cell, map_name, layer_name, scope = CASES[cell_name]
    inputs = np.random.default_rng(3).normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)
    prefix, expected = tf1_rnn_checkpoint(tf, cell, tmp_path / "tf1", inputs)

    result = convert(prefix, map_name, tmp_path / "keras")
    assert not result.plan.warnings
    layer = (
        keras.layers.LSTM(UNITS, return_sequences=True, name="lstm")
        if layer_name == "lstm"
        else keras.layers.GRU(UNITS, return_sequences=True, reset_after=False, name="gru")
    )
    model = keras_rnn(layer)
    written = load_into(model, result.prefix, tf)
    cell_scope = f"{layer_name}/{layer_name}_cell"
    assert written == {f"{cell_scope}/{w}" for w in ("kernel", "recurrent_kernel", "bias")}
    assert not any(name.startswith(scope) for name in written)

    actual = np.asarray(model(inputs))
    difference = float(np.max(np.abs(actual - expected)))
    assert difference < TOLERANCE, (cell_name, difference)
    assert np.max(np.abs(expected)) > 0.1  # the comparison is not between two near-zeros

    # The same map into the model's own keys (convert --target): TensorFlow restores it.
    into = convert(prefix, map_name, tmp_path / "into", target=model)
    assert into.plan.left_out == ()
    fresh = keras_rnn(layer.__class__.from_config(layer.get_config()))
    tf.train.Checkpoint(model=fresh).restore(str(into.prefix)).assert_existing_objects_matched()
    assert np.array_equal(np.asarray(fresh(inputs)), actual)


@pytest.mark.parametrize("cell_name", ["BasicLSTMCell", "GRUCell"])
def test_check_with_the_map_matches_every_keras_variable(
    tf: Any, tmp_path: Path, cell_name: str
) -> None:
    import keras

    cell, map_name, layer_name, _ = CASES[cell_name]
    inputs = np.zeros((1, STEPS, FEATURES), np.float32)
    prefix, _ = tf1_rnn_checkpoint(tf, cell, tmp_path / "tf1", inputs)
    layer = (
        keras.layers.LSTM(UNITS, name="lstm")
        if layer_name == "lstm"
        else keras.layers.GRU(UNITS, reset_after=False, name="gru")
    )
    model = keras_rnn(layer)

    without = check(prefix, model)
    assert without.count(Kind.MATCHED) == 0
    report = check(prefix, model, map=map_name)
    assert report.ok, report.findings
    assert report.count(Kind.MATCHED) == 3 == len(model.weights)
    assert report.count(Kind.UNUSED) == 0  # slots and global_step were dropped


def test_the_forget_bias_is_what_makes_the_lstm_outputs_agree(tf: Any, tmp_path: Path) -> None:
    """Without folding forget_bias into the Keras bias, the outputs differ: the rule is
    load-bearing, not a no-op the tolerance hides."""
    import keras

    inputs = np.random.default_rng(3).normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)
    prefix, expected = tf1_rnn_checkpoint(
        tf, lambda: legacy.BasicLSTMCell(UNITS), tmp_path / "tf1", inputs
    )
    result = convert(prefix, "tf1-rnn-to-keras", tmp_path / "keras")
    model = keras_rnn(keras.layers.LSTM(UNITS, return_sequences=True, name="lstm"))
    load_into(model, result.prefix, tf)
    bias = model.layers[0].cell.bias
    bias.assign(bias.numpy() - np.repeat([0.0, 1.0, 0.0, 0.0], UNITS).astype(np.float32))
    assert np.max(np.abs(np.asarray(model(inputs)) - expected)) > 1e-2


@pytest.mark.parametrize("cell_name", ["BasicLSTMCell", "GRUCell"])
def test_suggest_starts_from_the_bundled_map_and_the_result_restores(
    tf: Any, tmp_path: Path, cell_name: str
) -> None:
    """Story 5 with no hand-written map: suggest -> convert --target --verify; TensorFlow
    restores the result into a Keras layer that computes what the TF1 cell computed."""
    import keras

    from ckptmigrate import suggest

    cell, _, layer, _ = CASES[cell_name]
    inputs = np.random.default_rng(3).standard_normal((BATCH, STEPS, FEATURES), np.float32)
    prefix, expected = tf1_rnn_checkpoint(tf, cell, tmp_path / "tf1", inputs)

    def build() -> Any:
        if layer == "lstm":
            return keras_rnn(keras.layers.LSTM(UNITS))
        return keras_rnn(keras.layers.GRU(UNITS, reset_after=False))

    model = build()
    suggestion = suggest(prefix, model)
    assert any("tf1-rnn-to-keras" in note for note in suggestion.notes)
    assert suggestion.predicted is not None
    assert suggestion.predicted.ok, suggestion.to_yaml()
    map_path = tmp_path / "suggested.yaml"
    map_path.write_text(suggestion.to_yaml())
    result = convert(prefix, map_path, tmp_path / "out", target=model, verify=True)
    assert result.verification is not None
    assert result.verification.ok, result.verification.verdict
    assert check(result.prefix, model).ok
    restored = build()
    tf.train.Checkpoint(model=restored).restore(str(result.prefix)).assert_consumed()
    np.testing.assert_allclose(restored(inputs).numpy(), expected[:, -1], atol=TOLERANCE)
