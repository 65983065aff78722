"""Model families for the behaviour oracles (tests/test_behaviour_oracle.py), built the same
way in the test process and in a ``--verify`` child (a tf-keras target is a builder file
that imports this module): Dense stacks, a small CNN, an LSTM/GRU, each in Keras 3 or
tf-keras, and the Estimator-named DNN of ckptmigrate.examples in a TF1 graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# (kind, layer name, units): kinds dense, conv, pool (GlobalAveragePooling2D), lstm, gru.
Layer = tuple[str, str, int]

INPUTS = {"dense": (5,), "cnn": (6, 6, 2), "rnn": (4, 3), "estimator": (4,)}


@dataclass(frozen=True)
class Net:
    framework: str  # keras3, tf_keras, tf1 (TF1 nets are Estimator DNNs)
    family: str  # dense, cnn, rnn, estimator
    layers: tuple[Layer, ...]  # the head last
    activation: str = "relu"
    scope: str = ""  # tf1: a variable scope around the whole DNN
    optimizer: str = "adam"  # what the source trains with; a tf1 target keeps its slots

    @property
    def inputs(self) -> tuple[int, ...]:
        return INPUTS[self.family]

    @property
    def outputs(self) -> int:
        return self.layers[-1][2]


def keras_library(framework: str) -> Any:
    if framework == "keras3":
        import keras

        return keras
    import tf_keras

    return tf_keras


def build_keras(net: Net, seed: int) -> Any:
    """``net`` as a Sequential of Keras 3 or tf-keras (fresh name counters)."""
    lib = keras_library(net.framework)
    lib.backend.clear_session()
    lib.utils.set_random_seed(seed)
    layers = []
    last = len(net.layers) - 1
    for i, (kind, name, units) in enumerate(net.layers):
        activation = None if i == last else net.activation
        if kind == "dense":
            layers.append(lib.layers.Dense(units, activation=activation, name=name))
        elif kind == "conv":
            layers.append(lib.layers.Conv2D(units, 3, activation=activation, name=name))
        elif kind == "pool":
            layers.append(lib.layers.GlobalAveragePooling2D(name=name))
        elif kind == "lstm":
            layers.append(lib.layers.LSTM(units, name=name))
        else:
            layers.append(lib.layers.GRU(units, name=name))
    return lib.Sequential([lib.Input(net.inputs), *layers], name="net")


def keras_optimizer(framework: str, name: str) -> Any:
    lib = keras_library(framework)
    return {
        "adam": lambda: lib.optimizers.Adam(0.01),
        "adagrad": lambda: lib.optimizers.Adagrad(0.1),
        "ftrl": lambda: lib.optimizers.Ftrl(0.1),
        "sgd": lambda: lib.optimizers.SGD(0.1, momentum=0.9),
    }[name]()


def tf1_optimizer(tf: Any, name: str) -> Any:
    train = tf.compat.v1.train
    return {
        "adam": lambda: train.AdamOptimizer(0.01),
        "adagrad": lambda: train.AdagradOptimizer(0.1),
        "ftrl": lambda: train.FtrlOptimizer(0.1),
        "sgd": lambda: train.GradientDescentOptimizer(0.1),
    }[name]()


def build_tf1(tf: Any, net: Net) -> tuple[Any, Any, Any, Any]:
    """The Estimator-named DNN (examples.build_estimator_dnn) of ``net`` in a new graph,
    under ``net.scope``: (graph, training op, the features tensor to feed, the logits)."""
    from ckptmigrate.examples import build_estimator_dnn

    graph = tf.Graph()
    hidden = tuple(units for _, _, units in net.layers[:-1])
    with graph.as_default():
        with tf.compat.v1.variable_scope(net.scope or tf.compat.v1.get_variable_scope()):
            train = build_estimator_dnn(
                tf,
                hidden_units=hidden,
                n_classes=net.outputs,
                n_features=net.inputs[0],
                partitioned=False,
                optimizer=lambda: tf1_optimizer(tf, net.optimizer),
            )
        prefix = f"{net.scope}/" if net.scope else ""
        logits = graph.get_tensor_by_name(f"{prefix}dnn/logits/add:0")
        features = next(
            op.outputs[0]
            for op in graph.get_operations()
            if op.type == "Const" and op.outputs[0].shape.as_list() == [8, net.inputs[0]]
        )
    return graph, train, features, logits


def tf1_layer_names(net: Net) -> tuple[str, ...]:
    """The variable scopes of an Estimator DNN's layers, the head last."""
    prefix = f"{net.scope}/dnn/" if net.scope else "dnn/"
    hidden = [f"{prefix}hiddenlayer_{i}" for i in range(len(net.layers) - 1)]
    return (*hidden, f"{prefix}logits")
