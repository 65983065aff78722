"""Roles from what the checkpoint says, proven by TensorFlow restoring the stripped result
(issue 10.5): the object graph's optimizer nodes (whatever attribute holds them), a ``.meta``
graph's ops, and the naming table otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits
from hypothesis import given, settings
from hypothesis import strategies as st

from ckptmigrate import Role, check, convert, inspect_checkpoint
from ckptmigrate.names import classify, classify_many, graph_roles

# -- the naming table: one case per row of README's Roles paragraph ----------------------

NAMING_TABLE = [
    # TF1 Adam: two slots and the beta powers
    ("dense/kernel/Adam", Role.OPTIMIZER),
    ("dense/kernel/Adam_1", Role.OPTIMIZER),
    ("beta1_power", Role.OPTIMIZER),
    ("beta2_power", Role.OPTIMIZER),
    ("dnn/hiddenlayer_0/kernel/Adagrad", Role.OPTIMIZER),
    ("linear/linear_model/age/weights/part_0/Ftrl", Role.OPTIMIZER),
    ("linear/linear_model/age/weights/Ftrl_1", Role.OPTIMIZER),
    ("conv1/weights/Momentum", Role.OPTIMIZER),
    ("dense/kernel/RMSProp", Role.OPTIMIZER),
    ("dense/kernel/RMSProp_1", Role.OPTIMIZER),
    ("dense/kernel/Adadelta", Role.OPTIMIZER),
    ("dense/kernel/Adadelta_1", Role.OPTIMIZER),
    ("dense/kernel/ProximalAdagrad", Role.OPTIMIZER),
    # google-research/bert AdamWeightDecayOptimizer
    ("bert/encoder/layer_0/attention/self/query/kernel/adam_m", Role.OPTIMIZER),
    ("bert/encoder/layer_0/attention/self/query/kernel/adam_v", Role.OPTIMIZER),
    # LAMB (google-research/albert, NVIDIA BERT)
    ("bert/embeddings/word_embeddings/lamb_m", Role.OPTIMIZER),
    ("bert/embeddings/word_embeddings/lamb_v", Role.OPTIMIZER),
    # Adafactor: Mesh TensorFlow / T5 suffixes, tensor2tensor slots
    ("encoder/block_000/layer_000/SelfAttention/q_slot_vc", Role.OPTIMIZER),
    ("encoder/block_000/layer_000/SelfAttention/q_slot_vr", Role.OPTIMIZER),
    ("shared/embedding_slot_v", Role.OPTIMIZER),
    ("body/dense/kernel/Adafactor", Role.OPTIMIZER),
    # LARS (its Momentum slot, or the optimizer's own name)
    ("resnet_model/conv2d/kernel/LARSOptimizer", Role.OPTIMIZER),
    ("resnet_model/conv2d/kernel/Momentum", Role.OPTIMIZER),
    ("layer1/weights/ExponentialMovingAverage", Role.OPTIMIZER),
    # tf-keras optimizers: TF2 keys, and TF1 names of a graph-mode Keras optimizer
    ("optimizer/beta_1/.ATTRIBUTES/VARIABLE_VALUE", Role.OPTIMIZER),
    ("optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE", Role.STEP),
    ("Adam/iter", Role.STEP),
    ("Adam/beta_1", Role.OPTIMIZER),
    ("training/Adam/Variable_3", Role.OPTIMIZER),
    ("model/layer-0/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE", Role.OPTIMIZER),
    # Keras 3 optimizer variables (and the model weights it lists)
    ("optimizer/_variables/3/.ATTRIBUTES/VARIABLE_VALUE", Role.OPTIMIZER),
    ("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE", Role.STEP),
    ("optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE", Role.MODEL),
    # Estimator: partitioned variables' slots
    ("dnn/hiddenlayer_0/kernel/t_0/Adagrad", Role.OPTIMIZER),
    ("global_step", Role.STEP),
    # and what is not optimizer state
    ("bert/encoder/layer_0/output/dense/kernel", Role.MODEL),
    ("dense/kernel", Role.MODEL),
    ("step", Role.MODEL),  # a counter by any other name: only a .meta graph knows
    ("Adam", Role.MODEL),  # a variable named like an optimizer is not its slot
    ("decoder/lamb_x", Role.MODEL),
]


@pytest.mark.parametrize(("key", "role"), NAMING_TABLE)
def test_naming_table(key: str, role: Role) -> None:
    assert classify(key) is role


# Names that steer the naming table, as whole parts or inside one.
_PARTS = [
    *{part for key, _ in NAMING_TABLE for part in key.split("/")},
    "",
    "optimizer",
    "training",
    "_optimizer",
    "_trainable_variables",
    "iter",
    "iterations",
    "_iterations",
    "learning_rate",
    "save_counter",
    "Adam_3",
    "SGD",
    "keras_api",
    "metrics",
    ".ATTRIBUTES",
    "VARIABLE_VALUE",
    "OBJECT_CONFIG_JSON",
    ".OPTIMIZER_SLOT",
    "_CHECKPOINTABLE_OBJECT_GRAPH",
]


@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(
        st.lists(
            st.sampled_from(_PARTS) | st.text("ab_/.", max_size=3), min_size=1, max_size=5
        ).map("/".join),
        max_size=40,
    ),
    data=st.data(),
)
def test_classify_many_equals_classify_of_each_key(keys: list[str], data: st.DataObject) -> None:
    """The batch classifier reuses what keys under one scope share; every key must still
    get exactly the role classify gives it alone, whatever the object graph adds."""
    slot_keys = set(data.draw(st.lists(st.sampled_from(keys))) if keys else [])
    owned = data.draw(st.lists(st.sampled_from(keys))) if keys else []
    state = {key: data.draw(st.sampled_from(["iter", "m", "learning_rate"])) for key in owned}
    expected = [classify(key, slot_keys, state) for key in keys]
    assert classify_many(keys, slot_keys, state) == expected
    assert classify_many(keys) == [classify(key) for key in keys]


def test_graph_roles_from_ops() -> None:
    # The nodes TF 2.21 builds for AdamOptimizer().minimize(loss, global_step=step) with
    # resource variables (names and inputs as tf.Graph.as_graph_def() lists them).
    nodes = [
        ("dense/kernel", "VarHandleOp", ()),
        ("dense/kernel/Adam", "VarHandleOp", ()),
        ("dense/kernel/Adam_1", "VarHandleOp", ()),
        ("beta1_power", "VarHandleOp", ()),
        ("step", "VarHandleOp", ()),
        ("moving_mean", "VarHandleOp", ()),
        ("x/ReadVariableOp", "ReadVariableOp", ("beta1_power",)),
        (
            "Adam/update_dense/kernel/ResourceApplyAdam",
            "ResourceApplyAdam",
            ("dense/kernel", "dense/kernel/Adam", "dense/kernel/Adam_1", "x/ReadVariableOp"),
        ),
        ("Adam/AssignVariableOp", "AssignVariableOp", ("beta1_power", "Adam/mul")),
        ("Adam", "AssignAddVariableOp", ("step", "Adam/Const")),
        ("moving_mean/Assign", "AssignVariableOp", ("moving_mean", "zeros")),
        ("save/AssignVariableOp", "AssignVariableOp", ("step", "save/Identity")),
    ]
    assert graph_roles(nodes) == {
        "dense/kernel": Role.MODEL,
        "dense/kernel/Adam": Role.OPTIMIZER,
        "dense/kernel/Adam_1": Role.OPTIMIZER,
        "beta1_power": Role.OPTIMIZER,
        "step": Role.STEP,
    }


# -- TF2: two optimizers under arbitrary attribute names --------------------------------


def _actor_critic(keras: Any) -> tuple[Any, Any]:
    actor = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    critic = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    return actor, critic


def _train_step(tf: Any, model: Any, optimizer: Any, width: int) -> None:
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.ones((2, width))))
    variables = model.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras", "tf_keras_legacy"])
def test_actor_critic_optimizers_are_stripped(tf: Any, tmp_path: Path, flavour: str) -> None:
    import keras as keras3
    import tf_keras

    keras = keras3 if flavour == "keras3" else tf_keras
    optimizers = keras.optimizers.legacy if flavour == "tf_keras_legacy" else keras.optimizers
    actor, critic = _actor_critic(keras)
    actor_optimizer, critic_optimizer = optimizers.Adam(1e-3), optimizers.Adam(1e-3)
    _train_step(tf, actor, actor_optimizer, 3)
    _train_step(tf, critic, critic_optimizer, 5)
    prefix = tf.train.Checkpoint(
        actor=actor,
        critic=critic,
        actor_optimizer=actor_optimizer,
        critic_optimizer=critic_optimizer,
    ).save(str(tmp_path / "run" / "ckpt"))

    rows = {
        r.key.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE"): r
        for r in inspect_checkpoint(prefix).rows
    }
    for key, row in rows.items():
        owner = key.split("/", 1)[0]
        if "/.OPTIMIZER_SLOT/" in key or (
            owner.endswith("_optimizer") and "/_trainable_variables/" not in key
        ):
            expected = (
                Role.STEP if key.rpartition("/")[2] in ("iter", "_iterations") else Role.OPTIMIZER
            )
        elif owner == "save_counter" or key == "_CHECKPOINTABLE_OBJECT_GRAPH":
            expected = Role.METADATA
        else:
            expected = Role.MODEL
        assert row.role is expected, key
    assert {r.role for r in rows.values()} == set(Role)
    models = [r for r in rows.values() if r.role is Role.MODEL]
    assert len(models) == 8  # the two networks' kernels and biases, nothing of the optimizers

    result = convert(prefix, "strip-optimizer", tmp_path / "slim")
    assert {r.role for r in inspect_checkpoint(result.prefix).rows} == {Role.MODEL, Role.METADATA}
    fresh_actor, fresh_critic = _actor_critic(keras)
    status = tf.train.Checkpoint(actor=fresh_actor, critic=fresh_critic).restore(str(result.prefix))
    status.assert_consumed()  # nothing of the optimizers is left behind
    for fresh, trained in ((fresh_actor, actor), (fresh_critic, critic)):
        for a, b in zip(fresh.weights, trained.weights, strict=True):
            assert same_bits(a.numpy(), b.numpy())


# -- TF1: BERT's AdamWeightDecayOptimizer slots; a step counter only the graph names ----

BERT_VARIABLES = {
    "bert/embeddings/word_embeddings": (30, 8),
    "bert/encoder/layer_0/attention/self/query/kernel": (8, 8),
    "bert/encoder/layer_0/attention/self/query/bias": (8,),
    "cls/predictions/output_bias": (30,),
}


def _bert_graph(tf: Any, slots: bool) -> tuple[Any, Any, list[Any]]:
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        model = [
            v1.get_variable(n, s, initializer=v1.random_normal_initializer())
            for n, s in BERT_VARIABLES.items()
        ]
        if slots:  # what bert/optimization.py creates: "<param>/adam_m", "<param>/adam_v"
            for name, shape in BERT_VARIABLES.items():
                for slot in ("adam_m", "adam_v"):
                    v1.get_variable(
                        f"{name}/{slot}",
                        shape,
                        trainable=False,
                        initializer=v1.random_uniform_initializer(),
                    )
            v1.train.get_or_create_global_step()
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    return graph, session, model


def test_bert_adam_m_adam_v_are_stripped(tf: Any, tmp_path: Path) -> None:
    v1 = tf.compat.v1
    graph, session, _ = _bert_graph(tf, slots=True)
    with graph.as_default():
        prefix = v1.train.Saver().save(session, str(tmp_path / "bert" / "model.ckpt"))
        values = {v.op.name: session.run(v) for v in v1.global_variables()}

    roles = {r.key: r.role for r in inspect_checkpoint(prefix).rows}
    assert roles == {
        **dict.fromkeys(BERT_VARIABLES, Role.MODEL),
        **{f"{n}/{s}": Role.OPTIMIZER for n in BERT_VARIABLES for s in ("adam_m", "adam_v")},
        "global_step": Role.STEP,
    }

    result = convert(prefix, "strip-optimizer", tmp_path / "slim")
    assert {r.key for r in inspect_checkpoint(result.prefix).rows} == set(BERT_VARIABLES)
    model_graph, model_session, model = _bert_graph(tf, slots=False)
    with model_graph.as_default():
        v1.train.Saver().restore(model_session, str(result.prefix))  # a model-only graph
        for variable in model:
            assert same_bits(model_session.run(variable), values[variable.op.name])


def _v1_step_graph(tf: Any, directory: Path) -> str:
    """A TF1 run whose step is an int32 Variable named "step", incremented by the optimizer."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        kernel = v1.get_variable("dense/kernel", [3, 2])
        step = v1.Variable(0, dtype=tf.int32, name="step", trainable=False)
        loss = tf.reduce_sum(tf.matmul(tf.ones([1, 3]), kernel))
        train = v1.train.AdamOptimizer().minimize(loss, global_step=step)
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            session.run(train)
            return str(v1.train.Saver().save(session, str(directory / "model.ckpt")))


def test_v1_step_variable_is_a_step_by_the_meta_graph(tf: Any, tmp_path: Path) -> None:
    prefix = _v1_step_graph(tf, tmp_path / "run")
    by_name = {r.key: r.role for r in inspect_checkpoint(prefix).rows}
    assert by_name["step"] is Role.MODEL  # by its name alone it is a model variable
    by_graph = {r.key: r.role for r in inspect_checkpoint(prefix + ".meta").rows}
    assert by_graph == {
        "dense/kernel": Role.MODEL,
        "dense/kernel/Adam": Role.OPTIMIZER,
        "dense/kernel/Adam_1": Role.OPTIMIZER,
        "beta1_power": Role.OPTIMIZER,
        "beta2_power": Role.OPTIMIZER,
        "step": Role.STEP,
    }
    target = {f.name: f.role for f in check(prefix, prefix + ".meta").findings}
    assert target == by_graph  # the .meta as a target: the same roles

    result = convert(prefix + ".meta", "strip-optimizer", tmp_path / "slim")
    assert [r.key for r in inspect_checkpoint(result.prefix).rows] == ["dense/kernel"]
    graph = tf.Graph()
    with graph.as_default():
        kernel = tf.compat.v1.get_variable("dense/kernel", [3, 2])
        with tf.compat.v1.Session() as session:
            tf.compat.v1.train.Saver().restore(session, str(result.prefix))
            expected = tf.train.load_checkpoint(prefix).get_tensor("dense/kernel")
            assert np.array_equal(session.run(kernel), expected)
