"""`ckptmigrate.restore`: check, migrate if needed, restore with TensorFlow itself.

Every object kind restores real TF/Keras checkpoints; values are compared bit for bit with
what was saved, and an incompatible checkpoint must leave every variable as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits
from models import keras3_model

import ckptmigrate
from ckptmigrate import IncompatibleCheckpointError, restore
from ckptmigrate.errors import CkptMigrateError


def _values(variables: Any) -> list[np.ndarray]:
    return [np.array(v.numpy()) for v in variables]


def _assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert same_bits(a, b)


def test_keras3_model_from_a_tf_checkpoint_and_from_weights_h5(tf: Any, tmp_path: Path) -> None:
    old = keras3_model(units=(8, 3), train=True)
    saved = _values(old.weights)
    source = tf.train.Checkpoint(model=old).write(str(tmp_path / "src" / "ckpt"))
    old.save_weights(str(tmp_path / "old.weights.h5"))

    new = keras3_model(units=(8, 3), train=False, seed=5)
    work = tmp_path / "work"
    report = restore(new, source, workdir=work)
    assert report.ok
    assert report.count(ckptmigrate.compare.Kind.MATCHED) == len(new.weights)
    _assert_same(_values(new.weights), saved)
    # TensorFlow restores it as it is (tf.train.Checkpoint(model=new)): nothing converted.
    assert not work.exists() or list(work.iterdir()) == []

    other = keras3_model(units=(8, 3), train=False, seed=6)
    assert restore(other, tmp_path / "old.weights.h5").ok
    _assert_same(_values(other.weights), saved)


def test_keras3_incompatible_raises_before_touching_the_model(tf: Any, tmp_path: Path) -> None:
    old = keras3_model(units=(8, 3), train=False)
    source = tf.train.Checkpoint(model=old).write(str(tmp_path / "src" / "ckpt"))
    bigger = keras3_model(units=(8, 8, 3), train=False, seed=2)
    before = _values(bigger.weights)
    with pytest.raises(IncompatibleCheckpointError) as caught:
        restore(bigger, source)
    assert not caught.value.report.ok
    assert caught.value.exit_code == 1
    _assert_same(_values(bigger.weights), before)


def test_tf_keras_model_load_weights(tf: Any, tmp_path: Path) -> None:
    pytest.importorskip("tf_keras")
    from models import tf_keras_model

    old = tf_keras_model(seed=0)
    old.save_weights(str(tmp_path / "old" / "x.ckpt"))
    saved = _values(old.weights)
    new = tf_keras_model(seed=1)
    assert not same_bits(new.weights[0].numpy(), saved[0])
    report = restore(new, tmp_path / "old")
    assert report.ok
    _assert_same(_values(new.weights), saved)


def test_tf_train_checkpoint_and_a_shape_mismatch(tf: Any, tmp_path: Path) -> None:
    saved = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.array([-0.0, 1.5], np.float32),
    }
    source = tf.train.Checkpoint(**{k: tf.Variable(v) for k, v in saved.items()})
    prefix = source.write(str(tmp_path / "src" / "ckpt"))

    target = tf.train.Checkpoint(w=tf.Variable(tf.zeros((2, 3))), b=tf.Variable([7.0, 7.0]))
    assert restore(target, prefix).ok
    assert same_bits(target.w.numpy(), saved["w"])
    assert same_bits(target.b.numpy(), saved["b"])  # -0.0 stays -0.0

    wrong = tf.train.Checkpoint(w=tf.Variable(tf.ones((2, 4))), b=tf.Variable([7.0, 7.0]))
    with pytest.raises(IncompatibleCheckpointError, match="shape mismatch: w"):
        restore(wrong, prefix)
    assert same_bits(wrong.w.numpy(), np.ones((2, 4), np.float32))
    assert same_bits(wrong.b.numpy(), np.array([7.0, 7.0], np.float32))


def test_a_module_from_a_checkpoint_rooted_elsewhere_is_read_through_the_root(
    tf: Any, tmp_path: Path
) -> None:
    old = tf.Module()
    old.kernel = tf.Variable(np.full((3, 2), 0.25, np.float32))
    prefix = tf.train.Checkpoint(model=old).write(str(tmp_path / "src" / "ckpt"))
    new = tf.Module()
    new.kernel = tf.Variable(tf.zeros((3, 2)))
    work = tmp_path / "work"
    report = restore(new, prefix, workdir=work)
    assert any("leading scope" in note for note in report.notes)
    assert same_bits(new.kernel.numpy(), np.full((3, 2), 0.25, np.float32))
    assert not work.exists() or list(work.iterdir()) == []  # read through 'model'


def _tf1_session(tf: Any, shapes: dict[str, tuple[int, ...]], fill: float) -> Any:
    """A session whose graph has float32 variables initialised to ``fill``."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        for name, shape in shapes.items():
            v1.get_variable(name, initializer=np.full(shape, fill, np.float32))
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    return session


def _tf1_values(tf: Any, session: Any) -> dict[str, np.ndarray]:
    with session.graph.as_default():
        variables = tf.compat.v1.global_variables()
        return {v.op.name: session.run(v) for v in variables}


def _tf1_checkpoint(tf: Any, directory: Path) -> tuple[Path, dict[str, np.ndarray]]:
    session = _tf1_session(tf, {"dense/kernel": (2, 3), "dense/bias": (3,)}, 0.0)
    values = {
        "dense/kernel": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "dense/bias": np.array([1.0, -2.0, 3.0], np.float32),
    }
    with session.graph.as_default():
        for v in tf.compat.v1.global_variables():
            v.load(values[v.op.name], session)
        prefix = tf.compat.v1.train.Saver().save(session, str(directory / "model.ckpt"))
    session.close()
    return Path(prefix), values


def test_tf1_session_and_graph(tf: Any, tmp_path: Path) -> None:
    prefix, saved = _tf1_checkpoint(tf, tmp_path / "src")
    session = _tf1_session(tf, {"dense/kernel": (2, 3), "dense/bias": (3,)}, 9.0)
    assert restore(session, tmp_path / "src").ok
    restored = _tf1_values(tf, session)
    assert all(same_bits(restored[k], saved[k]) for k in saved)

    session2 = _tf1_session(tf, {"dense/kernel": (2, 3), "dense/bias": (3,)}, 9.0)
    with pytest.raises(CkptMigrateError, match="pass the session"):
        restore(session2.graph, prefix)
    restore(session2.graph, prefix, session=session2)
    assert same_bits(_tf1_values(tf, session2)["dense/bias"], saved["dense/bias"])


def test_tf1_widened_by_a_pad_map_and_refused_without(tf: Any, tmp_path: Path) -> None:
    prefix, saved = _tf1_checkpoint(tf, tmp_path / "src")
    session = _tf1_session(tf, {"dense/kernel": (2, 5), "dense/bias": (5,)}, 9.0)
    with pytest.raises(IncompatibleCheckpointError) as caught:
        restore(session, prefix)
    assert caught.value.report.count(ckptmigrate.compare.Kind.SHAPE_MISMATCH) == 2
    assert all(np.all(v == 9.0) for v in _tf1_values(tf, session).values())  # untouched

    widen = tmp_path / "widen.yaml"
    widen.write_text(
        "version: 1\nrules:\n"
        "  - name: dense/kernel\n    pad: {shape: [2, 5], fill: zeros}\n"
        "  - name: dense/bias\n    pad: {shape: [5], fill: zeros}\n"
    )
    work = tmp_path / "work"
    report = restore(session, prefix, map=widen, workdir=work)
    assert report.ok
    restored = _tf1_values(tf, session)
    assert same_bits(restored["dense/kernel"][:, :3], saved["dense/kernel"])
    assert same_bits(restored["dense/kernel"][:, 3:], np.zeros((2, 2), np.float32))
    assert same_bits(restored["dense/bias"][:3], saved["dense/bias"])
    assert list(work.iterdir()) == []


def test_non_strict_leaves_missing_variables_alone(tf: Any, tmp_path: Path) -> None:
    prefix, saved = _tf1_checkpoint(tf, tmp_path / "src")
    shapes = {"dense/kernel": (2, 3), "dense/bias": (3,), "head/kernel": (3, 1)}
    session = _tf1_session(tf, shapes, 9.0)
    with pytest.raises(IncompatibleCheckpointError, match="head/kernel"):
        restore(session, prefix)
    report = restore(session, prefix, strict=False)
    assert report.count(ckptmigrate.compare.Kind.MISSING) == 1
    restored = _tf1_values(tf, session)
    assert same_bits(restored["dense/kernel"], saved["dense/kernel"])
    assert np.all(restored["head/kernel"] == 9.0)
    with pytest.raises(IncompatibleCheckpointError, match="below min_match"):
        restore(session, prefix, strict=False, min_match=0.9)


def test_strip_optimizer_map_into_a_keras3_model(tf: Any, tmp_path: Path) -> None:
    old = keras3_model(units=(8, 3), train=True)
    saved = _values(old.weights)
    source = tf.train.Checkpoint(model=old).write(str(tmp_path / "src" / "ckpt"))
    new = keras3_model(units=(8, 3), train=False, seed=4)
    work = tmp_path / "work"
    report = restore(new, source, map="strip-optimizer", workdir=work)
    assert report.ok
    assert any("temporary location" in note for note in report.notes)
    _assert_same(_values(new.weights), saved)
    assert list(work.iterdir()) == []


def test_refuses_what_it_cannot_restore_into(tf: Any, tmp_path: Path) -> None:
    with pytest.raises(CkptMigrateError, match=r"cannot restore into a builtins\.dict"):
        restore({}, tmp_path)
