"""Example models built with TensorFlow, shared by the demo and the tests: the shapes and
names real training jobs produce. Importing this module does not import TensorFlow; the
caller passes it in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def build_estimator_dnn(
    tf: Any,
    *,
    hidden_units: Sequence[int] = (10, 10),
    n_classes: int = 3,
    n_features: int = 4,
    partitioned: bool = True,
    optimizer: bool | Callable[[], Any] = True,
) -> Any:
    """Build, in the current default graph, a tf.estimator DNNClassifier-shaped model
    (dnn/hiddenlayer_N, dnn/logits, global_step, optionally a partitioned embedding, and
    with ``optimizer`` its slots: Adagrad's for True, else those of the optimizer the
    callable makes); returns the training op, or None without one."""
    import numpy as np

    v1 = tf.compat.v1
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
    if not optimizer:
        return None
    loss = v1.losses.sparse_softmax_cross_entropy(labels, logits)
    train = v1.train.AdagradOptimizer(0.1) if optimizer is True else optimizer()
    return train.minimize(loss, global_step=global_step)
