"""Realistic checkpoints made by TensorFlow itself, as users' training jobs make them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def estimator_dnn_graph(
    tf: Any,
    *,
    hidden_units: Sequence[int] = (10, 10),
    n_classes: int = 3,
    n_features: int = 4,
    partitioned: bool = True,
    steps: int = 2,
) -> tuple[Any, Any, dict[str, np.ndarray]]:
    """A tf.estimator DNNClassifier-shaped graph (dnn/hiddenlayer_N, dnn/logits, Adagrad,
    global_step, a partitioned embedding), trained for ``steps``; returns
    (graph, saver, {variable name: value after training})."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(1)
        global_step = v1.train.get_or_create_global_step()
        rng = np.random.default_rng(0)
        features = tf.constant(rng.standard_normal((8, n_features)), tf.float32)
        labels = tf.constant(rng.integers(0, n_classes, 8), tf.int64)
        net = features
        with v1.variable_scope("dnn"):
            if partitioned:
                embedding = v1.get_variable(
                    "input_from_feature_columns/input_layer/ids_embedding/embedding_weights",
                    shape=[10, n_features],
                    partitioner=v1.fixed_size_partitioner(3),
                )
                net = net + tf.reduce_sum(embedding)
            for i, units in enumerate(hidden_units):
                with v1.variable_scope(f"hiddenlayer_{i}"):
                    kernel = v1.get_variable("kernel", [net.shape[-1], units])
                    bias = v1.get_variable("bias", [units], initializer=v1.zeros_initializer())
                    net = tf.nn.relu(tf.matmul(net, kernel) + bias)
            with v1.variable_scope("logits"):
                kernel = v1.get_variable("kernel", [net.shape[-1], n_classes])
                bias = v1.get_variable("bias", [n_classes], initializer=v1.zeros_initializer())
                logits = tf.matmul(net, kernel) + bias
        loss = v1.losses.sparse_softmax_cross_entropy(labels, logits)
        train = v1.train.AdagradOptimizer(0.1).minimize(loss, global_step=global_step)
        saver = v1.train.Saver()
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
        for _ in range(steps):
            session.run(train)
        values = {}
        for var in v1.global_variables():
            name = (
                var.op.name
                if not hasattr(var, "_save_slice_info") or var._save_slice_info is None
                else var._save_slice_info.full_name
            )
            values.setdefault(name, []).append(var)
        out: dict[str, np.ndarray] = {}
        for name, parts in values.items():
            arrays = session.run(parts)
            out[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        graph.session = session  # type: ignore[attr-defined]
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


def keras3_model(seed: int = 0, hidden: Sequence[int] = (8,), n_out: int = 3) -> Any:
    import keras

    keras.utils.set_random_seed(seed)
    layers = [keras.Input((4,))] + [keras.layers.Dense(u, activation="relu") for u in hidden]
    model = keras.Sequential([*layers, keras.layers.Dense(n_out)])
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(seed)
    model.fit(rng.standard_normal((16, 4)), rng.standard_normal((16, n_out)), epochs=1, verbose=0)
    return model


def tf_keras_model(seed: int = 0) -> Any:
    import tf_keras

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
