"""Realistic checkpoints made by TensorFlow itself, as users' training jobs make them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ckptmigrate.examples import build_estimator_dnn


def estimator_dnn_graph(
    tf: Any, *, steps: int = 2, **model: Any
) -> tuple[Any, Any, dict[str, np.ndarray]]:
    """build_estimator_dnn in a new graph and session, trained for ``steps``; returns
    (graph with a .session, saver, {variable name: value after training})."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        train = build_estimator_dnn(tf, **model)
        saver = v1.train.Saver()
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
        for _ in range(steps):
            session.run(train)
        values: dict[str, list[Any]] = {}
        for var in v1.global_variables():
            info = getattr(var, "_save_slice_info", None)
            values.setdefault(var.op.name if info is None else info.full_name, []).append(var)
        out: dict[str, np.ndarray] = {}
        for name, parts in values.items():
            arrays = session.run(parts)
            out[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        graph.session = session
    return graph, saver, out


def save_estimator_checkpoint(
    tf: Any, directory: Path, **kwargs: Any
) -> tuple[Path, dict[str, np.ndarray]]:
    graph, saver, values = estimator_dnn_graph(tf, **kwargs)
    with graph.as_default():
        prefix = saver.save(graph.session, str(directory / "model.ckpt"), global_step=2)
        graph.session.close()
    return Path(prefix), values


def save_sharded_checkpoint(tf: Any, directory: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A Saver(sharded=True) checkpoint over two CPU devices: two data shards."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    values = {}
    with graph.as_default():
        variables = []
        for device in (0, 1):
            with tf.device(f"/cpu:{device}"):
                for j in range(2):
                    init = np.full((3, 2), device * 10 + j, np.float32)
                    variables.append(v1.get_variable(f"dev{device}/w{j}", initializer=init))
                    values[f"dev{device}/w{j}"] = init
        saver = v1.train.Saver(sharded=True)
        config = v1.ConfigProto(device_count={"CPU": 2})
        with v1.Session(graph=graph, config=config) as session:
            session.run(v1.global_variables_initializer())
            prefix = saver.save(session, str(directory / "sharded.ckpt"))
    return Path(prefix), values


def keras3_model(seed: int = 0, units: Sequence[int] = (8, 3), train: bool = True) -> Any:
    """A Keras 3 Sequential of Dense layers (relu between them) on 4 inputs; trained for
    one epoch with Adam unless ``train`` is false."""
    import keras

    keras.backend.clear_session()  # fresh name counters: variable names are compared
    keras.utils.set_random_seed(seed)
    # Explicit names: Keras numbers layers per process, and tests compare names.
    layers = [
        keras.layers.Dense(
            u, activation="relu" if i < len(units) - 1 else None, name=_dense_name(i)
        )
        for i, u in enumerate(units)
    ]
    model = keras.Sequential([keras.Input((4,)), *layers], name="sequential")
    if not train:
        return model
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(seed)
    model.fit(
        rng.standard_normal((16, 4)), rng.standard_normal((16, units[-1])), epochs=1, verbose=0
    )
    return model


def tf_keras_model(seed: int = 0) -> Any:
    import tf_keras

    tf_keras.backend.clear_session()  # fresh name counters: variable names are compared
    tf_keras.utils.set_random_seed(seed)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Dense(8, activation="relu", input_shape=(4,)),
            tf_keras.layers.Dense(3),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(seed)
    model.fit(rng.standard_normal((16, 4)), rng.standard_normal((16, 3)), epochs=1, verbose=0)
    return model


def _dense_name(index: int) -> str:
    return "dense" if index == 0 else f"dense_{index}"
