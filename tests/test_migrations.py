"""Migrations judged by the model that comes out (issue 11): the converted weights land where
the map says, and one real training step of the target's optimizer on a suggested
migration leaves no NaN or Inf. TensorFlow and Keras are the oracles: every checkpoint is
made, loaded and trained by them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptmigrate import convert
from ckptmigrate.cli import app
from ckptmigrate.examples import build_estimator_dnn
from ckptmigrate.mapping.retarget import PairingConflictError

runner = CliRunner()

LAYERS = ("layer0", "layer1", "layer2", "head")

SWAP = """\
version: 1
description: the two hidden [8, 8] layers change places
rules:
  - match: 'layer_with_weights-1/(.*)'
    rename: 'layer2/{1}'
  - match: 'layer_with_weights-2/(.*)'
    rename: 'layer1/{1}'
  - name: save_counter
    drop: true
"""


def _tf_keras_stack(directory: Path) -> Any:
    """A tf-keras [4] -> 8 -> 8 -> 8 -> 3 Dense stack (two same-shape hidden layers),
    saved with save_weights into ``directory``; returns the model."""
    import tf_keras

    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(3)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Dense(8, activation="relu", input_shape=(4,), name="layer0"),
            tf_keras.layers.Dense(8, activation="relu", name="layer1"),
            tf_keras.layers.Dense(8, activation="relu", name="layer2"),
            tf_keras.layers.Dense(3, name="head"),
        ]
    )
    model.save_weights(str(directory / "x.ckpt"))
    return model


def _keras3_stack(seed: int) -> Any:
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((4,)),
            *(
                keras.layers.Dense(u, activation="relu" if n != "head" else None, name=n)
                for n, u in zip(LAYERS, (8, 8, 8, 3), strict=True)
            ),
        ],
        name="stack",
    )


def test_keras_format_follows_a_map_that_swaps_two_layers(tf: Any, tmp_path: Path) -> None:
    pytest.importorskip("tf_keras")
    old = _tf_keras_stack(tmp_path / "old")
    archive = tmp_path / "new.keras"
    _keras3_stack(seed=5).save(archive)
    swap = tmp_path / "swap.yaml"
    swap.write_text(SWAP)
    out = tmp_path / "swapped.weights.h5"
    done = runner.invoke(
        app,
        [
            "convert",
            str(tmp_path / "old"),
            "--map",
            str(swap),
            "--target",
            str(archive),
            "--format",
            "keras",
            "-o",
            str(out),
            "--verify",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "verify ok" in done.output
    model = _keras3_stack(seed=7)
    model.load_weights(out)
    landed = {"layer0": "layer0", "layer1": "layer2", "layer2": "layer1", "head": "head"}
    for new, source in landed.items():
        for got, want in zip(
            model.get_layer(new).get_weights(), old.get_layer(source).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(got, want, err_msg=f"{new} should hold {source}")
    # The checkpoint output of the same map follows it too, and TensorFlow restores it.
    result = convert(tmp_path / "old", swap, tmp_path / "ckpt", target=archive, verify=True)
    assert result.verification is not None
    assert result.verification.ok
    restored = _keras3_stack(seed=9)
    tf.train.Checkpoint(model=restored).read(str(result.prefix)).assert_existing_objects_matched()
    kernel = restored.get_layer("layer1").get_weights()[0]
    np.testing.assert_array_equal(kernel, old.get_layer("layer2").get_weights()[0])


def test_a_rename_the_pairing_by_original_name_contradicts_is_refused_naming_both(
    tf: Any, tmp_path: Path
) -> None:
    pytest.importorskip("tf_keras")
    _tf_keras_stack(tmp_path / "old")
    archive = tmp_path / "new.keras"
    _keras3_stack(seed=5).save(archive)
    # Only one half of the swap: layer2 is claimed by the rule and by layer2's own name.
    half = tmp_path / "half.yaml"
    half.write_text(
        SWAP.replace("  - match: 'layer_with_weights-2/(.*)'\n    rename: 'layer1/{1}'\n", "")
    )
    with pytest.raises(PairingConflictError) as caught:
        convert(tmp_path / "old", half, tmp_path / "h.weights.h5", target=archive, format="keras")
    message = str(caught.value)
    assert "the target's layers/dense_2/vars/0 (layer2/kernel) is claimed by rule 1" in message
    assert "renames layer_with_weights-1/kernel to layer2/kernel" in message
    assert "layer_with_weights-2/kernel, whose original name layer2/kernel" in message
    # A rename onto a name the target lacks is not quietly undone by the original name.
    typo = tmp_path / "typo.yaml"
    typo.write_text(SWAP.replace("rename: 'layer2/{1}'", "rename: 'layer9/{1}'"))
    with pytest.raises(
        PairingConflictError,
        match=r"renames layer_with_weights-1/kernel to "
        r"layer9/kernel, which is no variable of the target, while its original "
        r"name layer1/kernel pairs it with the target's layers/dense_1/vars/0",
    ):
        convert(tmp_path / "old", typo, tmp_path / "t.weights.h5", target=archive, format="keras")
    assert not (tmp_path / "h.weights.h5").exists()
    assert not (tmp_path / "t.weights.h5").exists()


# -- new optimizer state is what the optimizer would create -----------------------------


def _dnn(tf: Any, hidden: tuple[int, ...], n_classes: int, optimizer: Any) -> Any:
    """In the current graph, an Estimator-named DNN (dnn/hiddenlayer_N, dnn/logits) on fixed
    data, trained by ``optimizer()``; returns the training op."""
    return build_estimator_dnn(
        tf, hidden_units=hidden, n_classes=n_classes, partitioned=False, optimizer=optimizer
    )


def _save_dnn(
    tf: Any, prefix: Path, hidden: tuple[int, ...], n_classes: int, optimizer: Any, *, steps: int
) -> tuple[Path, Path]:
    """The DNN trained ``steps`` steps, saved by a Saver (with its .meta); returns
    (checkpoint prefix, .meta)."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        train = _dnn(tf, hidden, n_classes, optimizer)
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            for _ in range(steps):
                session.run(train)
            saved = saver.save(session, str(prefix), global_step=steps)
    return Path(saved), Path(saved + ".meta")


def _initial_values(tf: Any, meta: Path) -> dict[str, np.ndarray]:
    """What the target graph's own initialisers give every variable."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        v1.train.import_meta_graph(str(meta))
        session.run(v1.global_variables_initializer())
        return {v.op.name: session.run(v) for v in v1.global_variables()}


def _one_step(
    tf: Any, build: Any, prefix: Path, fresh: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Build the target graph with ``build`` (returns its training op), restore ``prefix``
    with a Saver, run one step of the target's own optimizer; every variable after it.
    ``fresh``: values assigned after the restore (the reference run: new cells as the
    optimizer's own initialisers make them)."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        train = build()
        saver = v1.train.Saver()
        variables = {v.op.name: v for v in v1.global_variables()}
        with v1.Session(graph=graph) as session:
            saver.restore(session, str(prefix))
            for name, value in (fresh or {}).items():
                variables[name].load(value, session)
            session.run(train)
            return {name: session.run(v) for name, v in variables.items()}


def _suggest_and_convert(source: Path, meta: Path, directory: Path) -> tuple[Path, str]:
    """`ckptmigrate suggest` then `convert --target --verify`, as a user runs them; returns
    (the converted prefix, the map's text)."""
    map_path = directory / "suggested.yaml"
    done = runner.invoke(app, ["suggest", str(source), "-t", str(meta), "-o", str(map_path)])
    assert done.exit_code == 0, done.output
    out = directory / "converted"
    done = runner.invoke(
        app,
        ["convert", str(source), "-m", str(map_path), "-t", str(meta), "-o", str(out), "--verify"],
    )
    assert done.exit_code == 0, done.output
    assert "verify ok" in done.output
    return out, map_path.read_text()


def _assert_finite(values: dict[str, np.ndarray]) -> None:
    bad = {
        name: int(np.size(v) - np.isfinite(v).sum())
        for name, v in values.items()
        if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all()
    }
    assert not bad, f"NaN or Inf after one training step: {bad}"


def _latest(tf: Any, directory: Path) -> Path:
    found = tf.train.latest_checkpoint(str(directory))
    assert found is not None
    return Path(found)


@pytest.mark.parametrize("hidden", [(10, 10, 10), (20, 20, 20)], ids=["deeper", "wider"])
def test_suggested_estimator_migration_trains_a_step_of_adagrad_without_nan(
    tf: Any, tmp_path: Path, hidden: tuple[int, ...]
) -> None:
    from models import save_estimator_checkpoint

    source, _ = save_estimator_checkpoint(tf, tmp_path / "old", partitioned=False)
    target, _ = save_estimator_checkpoint(
        tf, tmp_path / "new", hidden_units=hidden, partitioned=False, steps=0
    )
    meta = Path(str(target) + ".meta")
    out, text = _suggest_and_convert(source, meta, tmp_path)
    assert "Adagrad" in text
    assert "fill: mean" not in text
    converted = tf.train.load_checkpoint(str(_latest(tf, out)))
    fresh = _initial_values(tf, meta)
    # The new layer's accumulators are what the target's AdagradOptimizer creates (0.1).
    for name in ("dnn/hiddenlayer_2/kernel/Adagrad", "dnn/hiddenlayer_2/bias/Adagrad"):
        np.testing.assert_array_equal(converted.get_tensor(name), fresh[name])
    if hidden[0] == 20:  # and the new cells of the widened ones too
        np.testing.assert_array_equal(
            converted.get_tensor("dnn/hiddenlayer_1/kernel/Adagrad")[10:, 10:],
            fresh["dnn/hiddenlayer_1/kernel/Adagrad"][10:, 10:],
        )
    after = _one_step(
        tf,
        lambda: build_estimator_dnn(tf, hidden_units=hidden, partitioned=False),
        _latest(tf, out),
    )
    _assert_finite(after)


def test_new_accumulators_start_where_the_target_graph_starts_them(tf: Any, tmp_path: Path) -> None:
    def adagrad() -> Any:
        return tf.compat.v1.train.AdagradOptimizer(0.1, initial_accumulator_value=0.3)

    source, _ = _save_dnn(tf, tmp_path / "old" / "m", (6,), 3, adagrad, steps=3)
    _, meta = _save_dnn(tf, tmp_path / "new" / "m", (6, 6), 3, adagrad, steps=0)
    out, text = _suggest_and_convert(source, meta, tmp_path)
    assert "initial_accumulator_value 0.3, the target" in text
    converted = tf.train.load_checkpoint(str(_latest(tf, out)))
    assert (converted.get_tensor("dnn/hiddenlayer_1/kernel/Adagrad") == np.float32(0.3)).all()
    _assert_finite(_one_step(tf, lambda: _dnn(tf, (6, 6), 3, adagrad), _latest(tf, out)))


def _ftrl() -> Any:
    import tensorflow as tf

    return tf.compat.v1.train.FtrlOptimizer(0.5)


def test_ftrl_slots_grow_as_ftrl_creates_them_and_new_classes_step_as_fresh_ones(
    tf: Any, tmp_path: Path
) -> None:
    source, _ = _save_dnn(tf, tmp_path / "old" / "m", (8,), 3, _ftrl, steps=5)
    linear = tf.train.load_checkpoint(str(source)).get_tensor("dnn/logits/kernel/Ftrl_1")
    assert (linear > 0).any()
    assert (linear < 0).any()
    _, meta = _save_dnn(tf, tmp_path / "new" / "m", (8,), 5, _ftrl, steps=0)
    out, _ = _suggest_and_convert(source, meta, tmp_path)
    converted = tf.train.load_checkpoint(str(_latest(tf, out)))
    fresh = _initial_values(tf, meta)
    for slot in ("Ftrl", "Ftrl_1"):  # accumulator 0.1, linear 0: what FtrlOptimizer creates
        for name in (f"dnn/logits/kernel/{slot}", f"dnn/logits/bias/{slot}"):
            new_cells = converted.get_tensor(name)[..., 3:]
            np.testing.assert_array_equal(new_cells, fresh[name][..., 3:], err_msg=name)
    np.testing.assert_array_equal(
        converted.get_tensor("dnn/logits/kernel/Ftrl_1")[:, :3], linear
    )  # the trained cells are kept
    _assert_steps_as_a_fresh_optimizer(tf, _latest(tf, out), fresh)


def test_a_map_padding_a_variable_gives_its_slots_the_optimizers_start(
    tf: Any, tmp_path: Path
) -> None:
    """A hand-written map: the slots follow the variable's pad with what the optimizer
    creates for their kind, whatever their trained values look like."""
    source, _ = _save_dnn(tf, tmp_path / "old" / "m", (8,), 3, _ftrl, steps=5)
    _, meta = _save_dnn(tf, tmp_path / "new" / "m", (8,), 5, _ftrl, steps=0)
    widen = tmp_path / "widen.yaml"
    widen.write_text(
        "version: 1\nrules:\n"
        "  - name: dnn/logits/kernel\n    pad: {shape: [8, 5], fill: glorot_uniform, seed: 1}\n"
        "  - name: dnn/logits/bias\n    pad: {shape: [5], fill: zeros}\n"
    )
    result = convert(source, widen, tmp_path / "out", target=str(meta), verify=True)
    assert result.verification is not None
    assert result.verification.ok
    converted = tf.train.load_checkpoint(str(result.prefix))
    fresh = _initial_values(tf, meta)
    for name in ("dnn/logits/kernel/Ftrl", "dnn/logits/kernel/Ftrl_1", "dnn/logits/bias/Ftrl"):
        np.testing.assert_array_equal(
            converted.get_tensor(name)[..., 3:], fresh[name][..., 3:], err_msg=name
        )
    _assert_steps_as_a_fresh_optimizer(tf, Path(str(result.prefix)), fresh)


def _assert_steps_as_a_fresh_optimizer(tf: Any, prefix: Path, fresh: dict[str, np.ndarray]) -> None:
    """One real FTRL step on the widened [8, 5] head: finite, and FTRL, which recomputes
    each weight from its linear and accumulator slots, moves the new class columns exactly
    as it does when their slot cells hold what FtrlOptimizer itself creates."""
    reader = tf.train.load_checkpoint(str(prefix))
    reference_state = {}
    for name in ("dnn/logits/kernel", "dnn/logits/bias"):
        for slot in ("Ftrl", "Ftrl_1"):
            value = reader.get_tensor(f"{name}/{slot}")
            value[..., 3:] = fresh[f"{name}/{slot}"][..., 3:]
            reference_state[f"{name}/{slot}"] = value
    after = _one_step(tf, lambda: _dnn(tf, (8,), 5, _ftrl), prefix)
    _assert_finite(after)
    reference = _one_step(tf, lambda: _dnn(tf, (8,), 5, _ftrl), prefix, reference_state)
    for name in ("dnn/logits/kernel", "dnn/logits/bias"):
        np.testing.assert_array_equal(after[name][..., 3:], reference[name][..., 3:], name)


# -- suggest keeps layer order and role ---------------------------------------------------


@pytest.mark.parametrize("output", ["checkpoint", "keras"])
def test_a_deeper_keras_stack_keeps_its_trained_head_as_the_head(
    tf: Any, tmp_path: Path, output: str
) -> None:
    """Depth 2 into depth 3: the [32, 10] head goes to the new head, the inserted hidden
    layer starts fresh (Keras' positional object paths pair the head with the new hidden
    layer at its index, which a pad would have made fit)."""
    from models import keras3_model

    from ckptmigrate import suggest

    old = keras3_model(units=(32, 10), train=True)
    source = tf.train.Checkpoint(model=old).write(str(tmp_path / "two" / "ckpt"))
    trained = [w.numpy() for w in old.weights[:4]]
    target = keras3_model(units=(32, 32, 10), train=False, seed=1)
    archive = tmp_path / "three.keras"
    target.save(archive)
    suggestion = suggest(source, archive, format=output)
    assert not [r for r in suggestion.rules if "pad" in r.body or "slice" in r.body]
    inits = sorted(r.body["init"]["shape"] for r in suggestion.rules if "init" in r.body)
    assert inits == [[32], [32, 32]]  # only the inserted hidden layer is new
    map_path = tmp_path / "deeper.yaml"
    map_path.write_text(suggestion.to_yaml())
    out = tmp_path / ("out.weights.h5" if output == "keras" else "out")
    result = convert(source, map_path, out, target=archive, format=output, verify=True)
    assert result.verification is not None
    assert result.verification.ok, result.verification.verdict
    model = keras3_model(units=(32, 32, 10), train=False, seed=2)
    if output == "keras":
        model.load_weights(out)
    else:
        tf.train.Checkpoint(model=model).read(str(result.prefix)).assert_existing_objects_matched()
    first, head = model.get_layer("dense"), model.get_layer("dense_2")
    np.testing.assert_array_equal(first.kernel.numpy(), trained[0])
    np.testing.assert_array_equal(first.bias.numpy(), trained[1])
    np.testing.assert_array_equal(head.kernel.numpy(), trained[2])
    np.testing.assert_array_equal(head.bias.numpy(), trained[3])
