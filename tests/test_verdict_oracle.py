"""The differential oracle: ``check``'s verdict against TensorFlow's real restore.

Model pairs are generated from a seeded RNG: a source model whose checkpoint is saved by
TensorFlow, and a target derived from it by random edits (a variable renamed, moved to
another scope, every variable moved under a new scope, missing from the checkpoint, extra
in it, resized, retyped). Families:

- graphs, TF1: graphs of ref (``use_resource=False``) and resource variables, some trained
  by a ``tf.compat.v1.train`` optimizer (slots, ``beta1_power``, a step counter), saved by
  ``tf.compat.v1.train.Saver``; the target is the ``.meta`` of the target graph (or the
  live graph), restored by ``Saver.restore`` in a session;
- graphs, TF2: trees of ``tf.Module``s saved by ``tf.train.Checkpoint`` (with or without
  a root attribute); the target is the live module, a live ``tf.train.Checkpoint``, or a
  checkpoint written from one, restored by ``tf.train.Checkpoint(...).read(...)`` with
  ``assert_existing_objects_matched()`` (``assert_consumed()`` with ``strict``), as the
  README's verdict contract says;
- optimizers: ``tf.train.Checkpoint`` of one or two module trees and Keras 3 / tf-keras /
  tf-keras legacy optimizers that took a step, under any attribute name
  (``critic_optimizer``, ``trainer``), with optimizers renamed, dropped, added, of another
  kind or without a step in the target; restored as the TF2 graphs are;
- keras: Sequential models of Dense / BatchNormalization / LayerNormalization / Dropout
  layers (random depth, widths, names), the checkpoint a tf-keras ``save_weights`` or a
  Keras 3 model (and its optimizer) through ``tf.train.Checkpoint``; the target a live
  tf-keras or Keras 3 model, a legacy ``.h5`` (whole model, or weights only into the model
  built in code) or a ``.keras`` file, with layers resized, inserted, removed, renamed,
  retyped, a weightless layer inserted, the optimizer changed, or a tf-keras checkpoint
  into Keras 3. Restored by ``tf.train.Checkpoint(<model>).read(...)`` (the contract's TF2
  row), a legacy ``.h5`` by tf-keras ``load_weights`` (README, ``--target`` table).

For every pair: the verdict (``report.ok``) equals whether the restore succeeded, every
variable ``check`` calls matched (optimizer state included) holds the checkpoint's value
after the restore, and inspect's role for every key of the checkpoints TensorFlow wrote
equals the role TensorFlow's own objects give it (``true_roles``: the object graph's slot
variables and optimizer nodes; for TF1 the optimizer's ``get_slot``/``variables()`` and the
step it increments), through the ``.meta`` and through the naming table.

``CKPTMIGRATE_ORACLE_PAIRS`` sets the number of graph pairs (``make soak`` runs 10,000;
the optimizer and Keras families run a half and a quarter of it),
``CKPTMIGRATE_ORACLE_FAMILIES`` which families run (``graphs,optimizers,keras``),
``CKPTMIGRATE_ORACLE_SEED`` the seed; a failure names the pair's seed and what it was.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits

from ckptmigrate import Role, check, inspect_checkpoint
from ckptmigrate.compare import Kind, Report

PAIRS = int(os.environ.get("CKPTMIGRATE_ORACLE_PAIRS", "200"))
SEED = int(os.environ.get("CKPTMIGRATE_ORACLE_SEED", "20261124"))
FAMILIES = os.environ.get("CKPTMIGRATE_ORACLE_FAMILIES", "graphs,optimizers,keras").split(",")
# Pairs per family: PAIRS for TF1/TF2 graphs; the optimizer and Keras pairs cost 3 and 8
# times as much (Keras builds models), so make test runs fewer of them.
SHARES = {"graphs": 1.0, "optimizers": 0.5, "keras": 0.25}
COUNTS = {f: int(PAIRS * SHARES[f]) if f in FAMILIES else 0 for f in SHARES}
CHUNK = 20  # pairs per test item, so pytest-xdist spreads them over its workers


def _chunks(family: str) -> range:
    return range(-(-COUNTS[family] // CHUNK))


SCOPES = ["encoder", "decoder", "dense", "dense_1", "layer_0", "layer_1", "head", "block"]
LEAVES = ["kernel", "bias", "gamma", "beta", "w", "embeddings"]
NEW_SCOPES = ["some_scope", "model", "bert", "net", "tower_0"]
DTYPES = ["float32", "float64", "int64"]


@dataclass(frozen=True)
class Var:
    path: tuple[str, ...]  # scopes then leaf
    shape: tuple[int, ...]
    dtype: str
    resource: bool = True  # TF1 only: a resource variable (else a ref variable)

    @property
    def name(self) -> str:
        return "/".join(self.path)


@dataclass
class Pair:
    seed: int
    family: str  # "tf1" | "tf2"
    source: list[Var]
    target: list[Var]
    edits: list[str] = field(default_factory=list)
    source_root: str | None = None  # TF2: tf.train.Checkpoint(<attr>=model) when set
    target_form: str = "module"  # TF2: module | checkpoint | saved; TF1: meta | graph
    target_root: str | None = None  # TF2 checkpoint/saved: its root attribute
    strict: bool = False
    optimizer: str | None = None  # TF1: the source graph trains its float32 variables
    step: str = "global_step"  # TF1: the name of the step the optimizer increments

    def describe(self) -> str:
        def show(vs: list[Var]) -> str:
            return ", ".join(
                f"{v.name}{list(v.shape)}:{v.dtype}{'' if v.resource else ':ref'}" for v in vs
            )

        return (
            f"pair seed={self.seed} family={self.family} edits={self.edits} "
            f"source_root={self.source_root} target={self.target_form}/{self.target_root} "
            f"strict={self.strict} optimizer={self.optimizer}/{self.step}\n"
            f"  source: {show(self.source)}\n  target: {show(self.target)}"
        )


# -- generating pairs ---------------------------------------------------------------------


def _prefix_free(vs: list[Var]) -> bool:
    """Unique names, and no variable's path is a scope of another's (a module attribute
    cannot be both a variable and a module)."""
    paths = {v.path for v in vs}
    if len(paths) != len(vs):
        return False
    return not any(v.path[:i] in paths for v in vs for i in range(1, len(v.path)))


def _random_var(rng: np.random.Generator, family: str) -> Var:
    depth = int(rng.integers(0, 4))
    scopes = tuple(str(rng.choice(SCOPES)) for _ in range(depth))
    rank = int(rng.integers(0, 3))
    shape = tuple(int(rng.integers(1, 5)) for _ in range(rank))
    dtype = str(rng.choice(DTYPES, p=[0.7, 0.15, 0.15]))
    resource = True if family == "tf2" else bool(rng.random() < 0.5)
    return Var((*scopes, str(rng.choice(LEAVES))), shape, dtype, resource)


def _edit(rng: np.random.Generator, family: str, target: list[Var]) -> tuple[str, list[Var]]:
    kind = str(
        rng.choice(
            ["rename", "move", "scope_all", "unscope_all", "missing", "extra", "resize", "dtype"]
        )
    )
    out = list(target)
    i = int(rng.integers(0, len(out)))
    v = out[i]
    if kind == "rename":
        out[i] = replace(v, path=(*v.path[:-1], v.path[-1] + "_renamed"))
    elif kind == "move":
        out[i] = replace(v, path=(str(rng.choice(NEW_SCOPES)), *v.path[1:]))
    elif kind == "scope_all":  # the target's names gain a leading scope
        scope = str(rng.choice(NEW_SCOPES))
        out = [replace(w, path=(scope, *w.path)) for w in out]
    elif kind == "unscope_all":  # the checkpoint's names carry a scope the target's lack
        if not all(len(w.path) > 1 for w in out) or len({w.path[0] for w in out}) != 1:
            return "unscope_all (not applicable)", target
        out = [replace(w, path=w.path[1:]) for w in out]
    elif kind == "missing":
        out.append(_random_var(rng, family))
    elif kind == "extra":
        if len(out) == 1:
            return "extra (not applicable)", target
        del out[i]
    elif kind == "resize":
        if v.shape and rng.random() < 0.7:
            axis = int(rng.integers(0, len(v.shape)))
            shape = list(v.shape)
            shape[axis] += 1
            out[i] = replace(v, shape=tuple(shape))
        else:
            out[i] = replace(v, shape=(*v.shape, 2))  # another rank
    elif kind == "dtype":
        out[i] = replace(v, dtype=str(rng.choice([d for d in DTYPES if d != v.dtype])))
    if family == "tf1" and rng.random() < 0.3:  # the target may declare another kind
        j = int(rng.integers(0, len(out)))
        out[j] = replace(out[j], resource=not out[j].resource)
    return f"{kind} {v.name}", out


def make_pair(seed: int) -> Pair:
    rng = np.random.default_rng(seed)
    family = "tf1" if rng.random() < 0.5 else "tf2"
    while True:
        width = int(rng.integers(1, 7))
        source = [_random_var(rng, family) for _ in range(width)]
        if _prefix_free(source):
            break
    target = list(source)
    edits: list[str] = []
    for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
        description, edited = _edit(rng, family, target)
        if _prefix_free(edited):
            target = edited
            edits.append(description)
    pair = Pair(seed, family, source, target, edits)
    if family == "tf1":
        pair.target_form = "meta" if rng.random() < 0.7 else "graph"
        if rng.random() < 0.4:
            pair.optimizer = str(rng.choice(TF1_OPTIMIZERS))
            pair.step = "global_step" if rng.random() < 0.7 else "step"
    else:
        pair.source_root = None if rng.random() < 0.5 else str(rng.choice(["model", "net"]))
        pair.target_form = str(rng.choice(["module", "checkpoint", "saved"]))
        if pair.target_form != "module" and rng.random() < 0.5:
            pair.target_root = str(rng.choice(["model", "net"]))
        pair.strict = bool(rng.random() < 0.3)
    return pair


def _values(vs: list[Var], rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for v in vs:
        if v.dtype == "int64":
            out[v.name] = rng.integers(-(10**9), 10**9, size=v.shape).astype(np.int64)
        else:
            out[v.name] = rng.standard_normal(v.shape).astype(v.dtype)
    return out


# -- TF1: Saver into a graph -----------------------------------------------------------


TF1_OPTIMIZERS = ["Adam", "Adagrad", "Momentum", "RMSProp", "Ftrl", "Adadelta", "SGD"]


def _tf1_optimizer(v1: Any, kind: str) -> Any:
    train = v1.train
    if kind == "Momentum":
        return train.MomentumOptimizer(0.01, 0.9)
    if kind == "SGD":
        return train.GradientDescentOptimizer(0.01)
    return getattr(train, f"{kind}Optimizer")(0.01)


def _tf1_graph(
    tf: Any,
    vs: list[Var],
    values: dict[str, np.ndarray],
    optimizer: str | None = None,
    step: str = "global_step",
) -> tuple[Any, Any]:
    """(graph, saver); with ``optimizer``, its training op over the float32 variables
    and ``graph.true_roles``: every variable's role by the optimizer's own account (its
    get_slot and variables(), the step it increments), never by names."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        variables = [
            v1.get_variable(v.name, initializer=values[v.name], use_resource=v.resource) for v in vs
        ]
        trained = [var for var, v in zip(variables, vs, strict=True) if v.dtype == "float32"]
        roles = dict.fromkeys((v.name for v in vs), Role.MODEL)
        if optimizer is not None and trained:
            if step == "global_step":
                counter = v1.train.get_or_create_global_step()
            else:
                counter = v1.Variable(0, dtype=tf.int32, name=step, trainable=False)
            loss = tf.add_n([tf.reduce_sum(var**2) for var in trained])
            opt = _tf1_optimizer(v1, optimizer)
            opt.minimize(loss, global_step=counter, var_list=trained)
            roles.update({var.op.name: Role.OPTIMIZER for var in opt.variables()})
            roles[counter.op.name] = Role.STEP
        graph.true_roles = roles
        saver = v1.train.Saver()
    return graph, saver


def _run_tf1(tf: Any, pair: Pair, tmp: Path) -> tuple[Report, str | None, dict[str, Any]]:
    """(check's report, the restore's failure or None, restored values by name)."""
    v1 = tf.compat.v1
    rng = np.random.default_rng(pair.seed + 1)
    saved = _values(pair.source, rng)
    graph, saver = _tf1_graph(tf, pair.source, saved, pair.optimizer, pair.step)
    with v1.Session(graph=graph) as session:
        session.run(v1.variables_initializer(graph.get_collection("variables")))
        prefix = saver.save(
            session, str(tmp / "source" / "model.ckpt"), write_meta_graph=bool(pair.optimizer)
        )
    if pair.optimizer:
        # inspect's roles: by the .meta graph's ops, and by the naming table (which cannot
        # know a step counter named otherwise: README, Roles)
        assert_roles(graph.true_roles, prefix + ".meta", pair.describe())
        if pair.step == "global_step":
            assert_roles(graph.true_roles, prefix, pair.describe())
    initial = _values(pair.target, rng)
    graph, saver = _tf1_graph(tf, pair.target, initial)
    if pair.target_form == "meta":
        meta = tmp / "target.meta"
        with graph.as_default():
            saver.export_meta_graph(str(meta))
        report = check(prefix, meta, strict=pair.strict)
    else:
        report = check(prefix, graph, strict=pair.strict)
    restored: dict[str, Any] = {}
    with v1.Session(graph=graph) as session:
        variables = graph.get_collection("variables")
        session.run(v1.variables_initializer(variables))
        try:
            saver.restore(session, prefix)
        except tf.errors.OpError as e:
            return report, f"{type(e).__name__}: {e.message}", restored
        for variable in variables:
            restored[variable.op.name] = session.run(variable)
        # TensorFlow's own inconsistency: a TF1 *resource* variable restored from a tensor
        # of another shape raises nothing; the variable silently takes the checkpoint's
        # shape while the graph still declares its own. check reports it as the shape
        # mismatch it is, so the oracle counts a restore that changed a declared shape as
        # failed (test_tf1_resource_variable_is_silently_reshaped pins TF's behaviour).
        for variable in variables:
            declared = tuple(variable.shape.as_list())
            actual = np.shape(restored[variable.op.name])
            if actual != declared:
                return (
                    report,
                    f"silent reshape: {variable.op.name} declared {declared}, now {actual}",
                    restored,
                )
    return report, None, restored


# -- TF2: tf.train.Checkpoint of tf.Module trees -----------------------------------------


def _module_tree(tf: Any, vs: list[Var], values: dict[str, np.ndarray]) -> tuple[Any, dict]:
    """The root module and {variable name: tf.Variable}."""
    root = tf.Module()
    variables = {}
    for v in vs:
        node = root
        for scope in v.path[:-1]:
            child = getattr(node, scope, None)
            if child is None:
                child = tf.Module()
                setattr(node, scope, child)
            node = child
        variable = tf.Variable(values[v.name], name=v.path[-1])
        setattr(node, v.path[-1], variable)
        variables[v.name] = variable
    return root, variables


def _wrap(tf: Any, module: Any, root: str | None) -> Any:
    return tf.train.Checkpoint(**{root: module}) if root else tf.train.Checkpoint(module)


def _run_tf2(tf: Any, pair: Pair, tmp: Path) -> tuple[Report, str | None, dict[str, Any]]:
    rng = np.random.default_rng(pair.seed + 1)
    saved = _values(pair.source, rng)
    source, _ = _module_tree(tf, pair.source, saved)
    prefix = _wrap(tf, source, pair.source_root).write(str(tmp / "source" / "ckpt"))
    initial = _values(pair.target, rng)
    module, variables = _module_tree(tf, pair.target, initial)
    # what check is given, and the object tf.train.Checkpoint restores through
    if pair.target_form == "module":
        report = check(prefix, module, strict=pair.strict)
        owner: Any = module  # check saves it as tf.train.Checkpoint(module)
    else:
        holder = _wrap(tf, module, pair.target_root)
        if pair.target_form == "checkpoint":
            report = check(prefix, holder, strict=pair.strict)
        else:
            written = holder.write(str(tmp / "target" / "ckpt"))
            report = check(prefix, written, strict=pair.strict)
        # tf.train.Checkpoint(module) saves the module as the root: the module is the
        # object a restore goes through (a positional-root Checkpoint nests as nothing)
        owner = holder if pair.target_root else module
    # The restore the verdict speaks for (README, the verdict contract): the target as
    # the root; through a root attribute when check says it aligned one.
    reached = set(variables)
    alignment = report.alignment
    if alignment is None:
        root = owner if isinstance(owner, tf.train.Checkpoint) else tf.train.Checkpoint(owner)
    elif alignment.side == "checkpoint":
        root = tf.train.Checkpoint(**{alignment.scope: owner})
    else:
        inner = getattr(owner, alignment.scope)
        root = tf.train.Checkpoint(inner)
        # variables outside that attribute are not restored: they keep their values (a
        # tf.train.Checkpoint(<scope>=module) holds every variable below it)
        if owner is module:
            reached = {v.name for v in pair.target if v.path[0] == alignment.scope}
    restored: dict[str, Any] = {}
    try:
        status = root.read(prefix)
    except (ValueError, tf.errors.OpError) as e:
        return report, f"read: {type(e).__name__}: {str(e).splitlines()[0]}", restored
    restored = {name: var.numpy() for name, var in variables.items()}
    try:
        if pair.strict:
            status.assert_consumed()
        else:
            status.assert_existing_objects_matched()
    except AssertionError as e:
        return report, f"assert: {str(e).splitlines()[0]}", restored
    if reached != set(variables):
        return (
            report,
            f"not reached through the root attribute: {set(variables) - reached}",
            restored,
        )
    # TensorFlow's assertion is weaker than its promise: a variable whose attribute name
    # the checkpoint uses for a module (no value there) counts as matched, and keeps its
    # initial value (test_tf2_variable_matched_to_a_module_node_keeps_its_value). check
    # calls it missing; the oracle counts a variable that got no value as a failed restore.
    kept = sorted(name for name in reached if np.array_equal(restored[name], initial[name]))
    if kept:
        return report, f"kept their initial values, the assertion passing: {kept}", restored
    return report, None, restored


# -- roles: the ground truth from TensorFlow's own objects ----------------------------


def _optimizer_types() -> tuple[type, ...]:
    import keras
    import tf_keras

    return (
        keras.optimizers.Optimizer,
        tf_keras.optimizers.Optimizer,
        tf_keras.optimizers.legacy.Optimizer,
    )


def _ids(obj: Any) -> set[int]:
    """An object and, for a Keras 3 variable, the tf.Variable it wraps: either may be the
    object graph's node."""
    inner = getattr(obj, "_value", None)
    return {id(obj)} if inner is None else {id(obj), id(inner)}


def true_roles(tf: Any, prefix: str | Path, root: Any, trained: list[Any]) -> dict[str, Role]:
    """Every key's role as TensorFlow wrote it, never from ckptmigrate's code: the
    checkpoint's object graph mapped onto the live objects that were saved (``root``), so
    a node is an optimizer when the object is a Keras optimizer; a slot is what a node's
    ``slot_variables`` names; the step is an optimizer's ``iterations``; a variable reached
    from the root only through an optimizer is its state, unless the optimizer trains it
    (``trained``: what gradients were applied to; Keras 3 lists them in the optimizer)."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(str(prefix))
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    objects: dict[int, Any] = {0: root}
    order = [0]
    for i in order:  # breadth first, each node's children by the names TF saved them under
        children = tf.train.TrackableView(objects[i]).children(objects[i])
        for ref in graph.nodes[i].children:
            if ref.node_id not in objects:
                objects[ref.node_id] = children[ref.local_name]
                order.append(ref.node_id)
    optimizers = {i for i, o in objects.items() if isinstance(o, _optimizer_types())}
    # ``_iterations``, not ``iterations``: a legacy optimizer creates its counter on access
    counters = [getattr(objects[i], "_iterations", None) for i in optimizers]
    steps = set().union(*(_ids(c) for c in counters if c is not None))
    trained_ids = set().union(*(_ids(v) for v in trained))
    slots = {s.slot_variable_node_id for node in graph.nodes for s in node.slot_variables}
    model_side, stack = {0}, [0]  # reached from the root without passing an optimizer
    while stack:
        for ref in graph.nodes[stack.pop()].children:
            if ref.node_id not in model_side and ref.node_id not in optimizers:
                model_side.add(ref.node_id)
                stack.append(ref.node_id)
    counter = None
    if isinstance(root, tf.train.Checkpoint):
        counter = next(
            (r.node_id for r in graph.nodes[0].children if r.local_name == "save_counter"), None
        )
    roles = {"_CHECKPOINTABLE_OBJECT_GRAPH": Role.METADATA}
    for i, node in enumerate(graph.nodes):
        for attribute in node.attributes:
            ids = _ids(objects[i]) if i in objects else set()
            if i == counter or attribute.name != "VARIABLE_VALUE":
                role = Role.METADATA
            elif i in slots:
                role = Role.OPTIMIZER
            elif ids & steps:
                role = Role.STEP
            elif i in model_side or ids & trained_ids:
                role = Role.MODEL
            else:
                role = Role.OPTIMIZER
            roles[attribute.checkpoint_key] = role
    return roles


def assert_roles(truth: dict[str, Role], prefix: str | Path, context: str) -> None:
    said = {r.key: r.role for r in inspect_checkpoint(prefix).rows}
    wrong = {k: f"inspect {said.get(k)}, TF {truth.get(k)}" for k in said.keys() | truth.keys()}
    wrong = {k: v for k, v in wrong.items() if said.get(k) is not truth.get(k)}
    assert not wrong, f"roles differ: {wrong}\n{context}"


def _step(tf: Any, optimizer: Any, variables: list[Any]) -> None:
    """One gradient step over ``variables``: the optimizer makes its slots."""
    with tf.GradientTape() as tape:
        loss = tf.add_n([tf.reduce_sum(tf.cast(v, tf.float32) ** 2) for v in variables])
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))


def _written(tf: Any, root: Any, directory: Path) -> dict[str, np.ndarray]:
    """Every value ``root`` holds, by the key TensorFlow saves it under."""
    prefix = root.write(str(directory / "ckpt"))
    reader = tf.train.load_checkpoint(prefix)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


# -- TF2: tf.train.Checkpoint of modules and optimizers under any attribute name --------

MODEL_ATTRS = ["actor", "critic", "policy", "encoder", "model"]
OPTIMIZER_ATTRS = ["actor_optimizer", "critic_optimizer", "opt", "policy_opt", "trainer"]
OPTIMIZER_KINDS = [
    "keras3_adam",
    "keras3_sgd",
    "keras3_rmsprop",
    "tf_keras_adam",
    "tf_keras_legacy_adam",
    "tf_keras_legacy_sgd",
]


@dataclass(frozen=True)
class Opt:
    attr: str  # the root attribute holding it
    kind: str  # OPTIMIZER_KINDS
    trains: str  # the root attribute whose float variables it trains
    stepped: bool = True  # it has taken a step (so its slots exist)


@dataclass
class OptimizerPair:
    """tf.train.Checkpoint(<model attrs>=modules, <optimizer attrs>=optimizers): variables'
    paths start with their model attribute."""

    seed: int
    source: list[Var]
    target: list[Var]
    source_opts: list[Opt]
    target_opts: list[Opt]
    edits: list[str] = field(default_factory=list)
    target_form: str = "checkpoint"  # checkpoint (the live holder) | saved
    strict: bool = False
    family: str = "optimizers"

    def describe(self) -> str:
        def show(vs: list[Var], opts: list[Opt]) -> str:
            names = ", ".join(f"{v.name}{list(v.shape)}:{v.dtype}" for v in vs)
            return f"{names}; " + ", ".join(
                f"{o.attr}={o.kind}({o.trains}{'' if o.stepped else ', no step'})" for o in opts
            )

        return (
            f"pair seed={self.seed} family=optimizers edits={self.edits} "
            f"target={self.target_form} strict={self.strict}\n"
            f"  source: {show(self.source, self.source_opts)}\n"
            f"  target: {show(self.target, self.target_opts)}"
        )


def _make_optimizer(kind: str) -> Any:
    import keras
    import tf_keras

    if kind == "keras3_adam":
        return keras.optimizers.Adam(0.01)
    if kind == "keras3_sgd":
        return keras.optimizers.SGD(0.01, momentum=0.9)
    if kind == "keras3_rmsprop":
        return keras.optimizers.RMSprop(0.01)
    if kind == "tf_keras_adam":
        return tf_keras.optimizers.Adam(0.01)
    if kind == "tf_keras_legacy_adam":
        return tf_keras.optimizers.legacy.Adam(0.01)
    return tf_keras.optimizers.legacy.SGD(0.01, momentum=0.9)


def _opt_edit(rng: np.random.Generator, pair: OptimizerPair) -> str:
    """An edit to the target's optimizers (in place); what it was, or '' if none applied."""
    opts = pair.target_opts
    kind = str(rng.choice(["opt_rename", "opt_drop", "opt_add", "opt_kind", "opt_no_step"]))
    used = {o.attr for o in opts}
    free = [a for a in OPTIMIZER_ATTRS if a not in used]
    attrs = sorted({v.path[0] for v in pair.target})
    if kind == "opt_add" or not opts:
        if not free:
            return ""
        o = Opt(str(rng.choice(free)), str(rng.choice(OPTIMIZER_KINDS)), str(rng.choice(attrs)))
        opts.append(replace(o, stepped=bool(rng.random() < 0.7)))
        return f"opt_add {o.attr}"
    i = int(rng.integers(0, len(opts)))
    o = opts[i]
    if kind == "opt_rename":
        if not free:
            return ""
        opts[i] = replace(o, attr=str(rng.choice(free)))
    elif kind == "opt_drop":
        del opts[i]
    elif kind == "opt_kind":
        opts[i] = replace(o, kind=str(rng.choice([k for k in OPTIMIZER_KINDS if k != o.kind])))
    else:
        opts[i] = replace(o, stepped=False)
    return f"{kind} {o.attr}"


def make_optimizer_pair(seed: int) -> OptimizerPair:
    rng = np.random.default_rng(seed)
    count = int(rng.choice([1, 1, 2]))
    attrs = [str(a) for a in rng.choice(MODEL_ATTRS, count, replace=False)]
    opt_attrs = [str(a) for a in rng.choice(OPTIMIZER_ATTRS, count, replace=False)]
    while True:
        source = [
            replace(v, path=(attr, *v.path))
            for attr in attrs
            for v in (_random_var(rng, "tf2") for _ in range(int(rng.integers(1, 4))))
        ]
        if _prefix_free(source):
            break
    opts = [
        Opt(o, str(rng.choice(OPTIMIZER_KINDS)), a)
        for a, o in zip(attrs, opt_attrs, strict=True)
        if rng.random() < 0.9
    ]
    pair = OptimizerPair(seed, source, list(source), opts, list(opts))
    for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
        if rng.random() < 0.5:
            description, edited = _edit(rng, "tf2", pair.target)
            if _prefix_free(edited) and all(
                v.path[0] not in OPTIMIZER_ATTRS and len(v.path) > 1 for v in edited
            ):
                pair.target = edited
                pair.edits.append(description)
        elif description := _opt_edit(rng, pair):
            pair.edits.append(description)
    pair.target_form = "checkpoint" if rng.random() < 0.5 else "saved"
    pair.strict = bool(rng.random() < 0.3)
    return pair


def _optimizer_holder(
    tf: Any, vs: list[Var], opts: list[Opt], values: dict[str, np.ndarray]
) -> tuple[Any, dict[str, Any], list[Any]]:
    """(the tf.Checkpoint, {variable name: tf.Variable}, the variables trained)."""
    root, variables = _module_tree(tf, vs, values)
    objects = {attr: getattr(root, attr) for attr in {v.path[0] for v in vs}}
    trained: list[Any] = []
    for o in opts:
        optimizer = _make_optimizer(o.kind)
        floats = [variables[v.name] for v in vs if v.path[0] == o.trains and v.dtype != "int64"]
        if o.stepped and floats:
            _step(tf, optimizer, floats)
            trained.extend(floats)
        objects[o.attr] = optimizer
    return tf.train.Checkpoint(**objects), variables, trained


def _run_optimizers(
    tf: Any, pair: OptimizerPair, tmp: Path
) -> tuple[Report, str | None, dict[str, Any], dict[str, np.ndarray]]:
    """(check's report, the restore's failure or None, the target's values by key after the
    restore, the checkpoint's values by key)."""
    rng = np.random.default_rng(pair.seed + 1)
    source, _, trained = _optimizer_holder(
        tf, pair.source, pair.source_opts, _values(pair.source, rng)
    )
    prefix = source.write(str(tmp / "source" / "ckpt"))
    context = pair.describe()
    assert_roles(true_roles(tf, prefix, source, trained), prefix, context)
    holder, variables, trained = _optimizer_holder(
        tf, pair.target, pair.target_opts, _values(pair.target, rng)
    )
    if pair.target_form == "checkpoint":
        report = check(prefix, holder, strict=pair.strict)
    else:
        written = holder.write(str(tmp / "target" / "ckpt"))
        assert_roles(true_roles(tf, written, holder, trained), written, context)
        report = check(prefix, written, strict=pair.strict)
    before = {name: var.numpy() for name, var in variables.items()}
    failure = _restore_tf2(tf, report, holder, pair.strict, prefix)
    if failure is None:
        kept = sorted(n for n, var in variables.items() if np.array_equal(var.numpy(), before[n]))
        if kept:
            failure = f"kept their values, the assertion passing: {kept}"
    after = _written(tf, holder, tmp / "after") if failure is None else {}
    saved = _checkpoint_values(tf, prefix)
    if failure is None and pair.strict:
        failure = _landed_nowhere(after, saved)
    return report, failure, after, saved


def _landed_nowhere(after: dict[str, Any], saved: dict[str, np.ndarray]) -> str | None:
    """TensorFlow's own inconsistency: assert_consumed() counts a checkpoint node as
    consumed when the restore bound it to an object that another node had already restored
    (an optimizer's _variables list of another layout), so its value lands nowhere
    (test_tf2_consumed_value_that_lands_nowhere). --strict promises nothing is left unused:
    a checkpoint value no target variable holds after the restore is counted as unused."""
    held = [np.asarray(v) for k, v in after.items() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    lost = sorted(
        key
        for key, value in saved.items()
        if key != "_CHECKPOINTABLE_OBJECT_GRAPH"
        and "save_counter" not in key
        and not any(h.dtype == np.asarray(value).dtype and same_bits(h, value) for h in held)
    )
    return f"consumed, yet held by no target variable: {lost}" if lost else None


def _restore_tf2(tf: Any, report: Report, owner: Any, strict: bool, prefix: str) -> str | None:
    """The restore the verdict speaks for (README, the verdict contract): the target as the
    root; through a root attribute when check says it aligned one. Its failure, or None."""
    alignment = report.alignment
    if alignment is None:
        root = owner if isinstance(owner, tf.train.Checkpoint) else tf.train.Checkpoint(owner)
    elif alignment.side == "checkpoint":
        root = tf.train.Checkpoint(**{alignment.scope: owner})
    else:
        root = tf.train.Checkpoint(getattr(owner, alignment.scope))
    try:
        status = root.read(prefix)
    except (ValueError, tf.errors.OpError) as e:
        return f"read: {type(e).__name__}: {e}"
    try:
        if strict:
            status.assert_consumed()
        else:
            status.assert_existing_objects_matched()
    except AssertionError as e:
        return f"assert: {e}"
    if alignment is not None and alignment.side == "target":
        outside = [a for a in _attributes(tf, owner) if a != alignment.scope]
        if outside:  # variables outside that attribute were not restored
            return f"not reached through the root attribute: {outside}"
    return None


def _load_weights(tf: Any, model: Any, strict: bool, prefix: str) -> str | None:
    """tf-keras ``model.load_weights(CKPT)`` and its status' assertion: its failure or
    None."""
    try:
        status = model.load_weights(prefix)
        status.assert_consumed() if strict else status.assert_existing_objects_matched()
    except (ValueError, tf.errors.OpError, AssertionError) as e:
        return f"load_weights: {type(e).__name__}: {str(e).splitlines()[0]}"
    return None


def _attributes(tf: Any, owner: Any) -> list[str]:
    """The root attributes that hold variables (an optimizer before its first step holds
    none)."""
    import keras

    variable = (tf.Variable, keras.Variable)
    out = []
    for name, child in tf.train.TrackableView(owner).children(owner).items():
        reached = [child, *tf.train.TrackableView(child).descendants()]
        if name != "save_counter" and any(isinstance(o, variable) for o in reached):
            out.append(name)
    return out


def _checkpoint_values(tf: Any, prefix: str) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(prefix)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


def assert_matched_values(
    report: Report, after: dict[str, Any], saved: dict[str, np.ndarray], context: str
) -> None:
    """Every variable check calls matched holds the checkpoint's value after the restore
    (``after``: the target's values by the keys check named them by)."""
    for f in report.findings:
        if f.kind is not Kind.MATCHED or f.checkpoint_name is None or f.name not in after:
            continue
        if f.role is Role.METADATA:
            continue
        np.testing.assert_array_equal(
            after[f.name], saved[f.checkpoint_name], err_msg=f"{f.name}\n{context}"
        )


# -- the oracle ------------------------------------------------------------------------


def _normalised(text: str) -> str:
    """Numbers (which TF prints in several notations) and spacing set aside."""
    return re.sub(r"\s+", " ", re.sub(r"-?\d+", "N", text)).strip()


def assert_error_quoted(report: Report, failure: str, context: str) -> None:
    """The error TensorFlow raised is the one check quotes for one of the variables it
    fails (TF stops at the first; check names them all): the quoted text, or the part of it
    in double quotes (what an assertion raises), is in TF's message, numbers aside. A
    failure TF does not raise (a silent reshape, values left where nothing reads them) is
    one check says TF raises nothing for."""
    quoted = [f.tensorflow_error for f in report.findings if f.tensorflow_error]
    raised_by_tf = (
        "read: InvalidArgumentError",
        "assert:",
        "NotFoundError",
        "InvalidArgumentError",
    )
    if not failure.startswith(raised_by_tf):
        # A failure the oracle detects itself (a silent reshape, a value landing nowhere),
        # or a ValueError from a variable created while being restored (a Keras layer
        # built during the read converts the stored value itself: "Tensor conversion
        # requested dtype int64 for Tensor with dtype float32"), whose words check does
        # not quote yet: the verdict is still compared above.
        return
    unresolved = re.match(r"assert: Unresolved object in checkpoint \(root\)\.(\S+?):", failure)
    if unresolved:
        # assert_consumed() (--strict) names the first checkpoint object left unused; check
        # has no quote for unused values but must list that one (or what holds it) unused.
        path = unresolved.group(1).replace(".", "/")
        unused = [
            f.checkpoint_name.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE")
            for f in report.findings
            if f.kind is Kind.UNUSED and f.checkpoint_name
        ]
        assert any(u == path or u.startswith(path + "/") for u in unused), (
            f"TensorFlow left {path} unused, which check does not say\n{context}"
        )
        return
    message = _normalised(failure)
    for text in quoted:
        cores = re.findall(r'raises "([^"]+)"', text) or [text]
        if any(_normalised(core) in message for core in cores):
            return
    raise AssertionError(
        f"TensorFlow raised what check quotes for no variable\n{context}\n  quoted: {quoted}"
    )


def assert_verdict(report: Report, failure: str | None, pair: Any) -> str:
    """check's verdict is the restore's outcome, and a refused restore raised what check
    quotes. Returns the pair's description for later assertions' messages."""
    findings = "\n  ".join(
        f"{f.kind.value}: {f.name} <- {f.checkpoint_name}" for f in report.findings
    )
    context = (
        f"{pair.describe()}\n  check: ok={report.ok} notes={report.notes}\n  {findings}\n"
        f"  restore: {failure or 'succeeded'}"
    )
    assert report.ok == (failure is None), context
    if failure is not None:
        assert_error_quoted(report, failure, context)
    return context


def run_pair(tf: Any, pair: Pair, tmp: Path) -> None:
    if pair.family == "tf1":
        report, failure, restored = _run_tf1(tf, pair, tmp)
    else:
        report, failure, restored = _run_tf2(tf, pair, tmp)
    context = assert_verdict(report, failure, pair)
    # every variable check calls matched holds the checkpoint's value after the restore
    rng = np.random.default_rng(pair.seed + 1)
    saved = _values(pair.source, rng)
    by_key = {_key(pair, v): v.name for v in pair.source}
    target_key = {_target_key(pair, v): v.name for v in pair.target}
    if not restored:
        return
    for f in report.findings:
        if f.kind is not Kind.MATCHED or f.checkpoint_name is None:
            continue
        source_name = by_key.get(f.checkpoint_name)
        target_name = target_key.get(f.name, f.name)
        if source_name is None or target_name not in restored:
            continue  # not a generated variable (TF2 bookkeeping)
        np.testing.assert_array_equal(
            restored[target_name], saved[source_name], err_msg=f"{target_name}\n{context}"
        )


# -- Keras: tf-keras and Keras 3 models, legacy .h5 and .keras targets -------------------

LAYER_KINDS = ["dense", "dense", "dense", "batchnorm", "layernorm", "dropout"]
KERAS_OPTIMIZERS = {"tf_keras": ["adam", "sgd", "legacy_adam"], "keras3": ["adam", "sgd"]}


@dataclass(frozen=True)
class Layer:
    kind: str  # LAYER_KINDS
    units: int = 0  # dense only
    name: str | None = None  # None: Keras names it
    dtype: str = "float32"

    @property
    def weighted(self) -> bool:
        return self.kind != "dropout"


@dataclass
class KerasPair:
    """A Sequential model's checkpoint (tf-keras ``save_weights``, or Keras 3 through
    tf.train.Checkpoint, with the optimizer under ``optimizer`` once it has taken a step)
    against a model of either Keras (live, or a legacy ``.h5``, weights-only ``.h5`` or
    ``.keras`` file)."""

    seed: int
    flavour: str  # the checkpoint's Keras: tf_keras | keras3
    target_flavour: str
    inputs: int
    source: list[Layer]
    target: list[Layer]
    optimizer: str | None  # the checkpoint's optimizer (it took a step)
    target_optimizer: str | None  # the target's (live targets; a step when stepped)
    target_stepped: bool = True
    edits: list[str] = field(default_factory=list)
    target_form: str = "model"  # model | h5 | weights_h5 | keras
    source_root: str | None = None  # Keras 3: tf.train.Checkpoint(model=...) when set
    strict: bool = False
    family: str = "keras"

    def describe(self) -> str:
        def show(layers: list[Layer]) -> str:
            return ", ".join(
                f"{la.kind}{la.units or ''}{'@' + la.name if la.name else ''}"
                f"{':' + la.dtype if la.dtype != 'float32' else ''}"
                for la in layers
            )

        return (
            f"pair seed={self.seed} family=keras {self.flavour} -> {self.target_flavour} "
            f"{self.target_form} edits={self.edits} root={self.source_root} "
            f"strict={self.strict} inputs={self.inputs}\n"
            f"  source: {show(self.source)}; optimizer={self.optimizer}\n"
            f"  target: {show(self.target)}; optimizer={self.target_optimizer}"
            f"{'' if self.target_stepped else ' (no step)'}"
        )


def _random_layer(rng: np.random.Generator) -> Layer:
    kind = str(rng.choice(LAYER_KINDS))
    return Layer(kind, int(rng.integers(1, 5)) if kind == "dense" else 0)


def _keras_edit(rng: np.random.Generator, pair: KerasPair) -> str:
    layers = pair.target
    kind = str(
        rng.choice(
            ["resize", "missing", "extra", "weightless", "rename", "dtype", "optimizer", "flavour"]
        )
    )
    weighted = [i for i, la in enumerate(layers) if la.weighted]
    i = int(rng.integers(0, len(layers)))
    if kind == "resize":
        dense = [j for j, la in enumerate(layers) if la.kind == "dense"]
        if not dense:
            return ""
        j = int(rng.choice(dense))
        layers[j] = replace(layers[j], units=layers[j].units + 1)
        return f"resize {j}"
    if kind == "missing":  # the target has a layer the checkpoint lacks
        layers.insert(i, Layer("dense", int(rng.integers(1, 5))))
        return f"missing {i}"
    if kind == "extra":  # the checkpoint has a layer the target lacks
        if len(weighted) < 2:
            return ""
        j = int(rng.choice(weighted))
        del layers[j]
        return f"extra {j}"
    if kind == "weightless":  # another layer without weights shifts Keras' operation indices
        layers.insert(i, Layer("dropout"))
        return f"weightless {i}"
    if kind == "rename":  # object paths do not use layer names: a restore ignores them
        layers[i] = replace(layers[i], name=f"renamed_{len(pair.edits)}_{i}")
        return f"rename {i}"
    if kind == "dtype":
        if not weighted:
            return ""
        j = int(rng.choice(weighted))
        layers[j] = replace(layers[j], dtype="float64")
        return f"dtype {j}"
    if kind == "optimizer":
        choice = int(rng.integers(0, 3))
        if choice == 0:
            pair.target_optimizer = None
        elif choice == 1:
            pair.target_optimizer = str(rng.choice(KERAS_OPTIMIZERS[pair.target_flavour]))
        else:
            pair.target_stepped = False
        return f"optimizer {pair.target_optimizer}{'' if pair.target_stepped else ' no step'}"
    if pair.flavour == "tf_keras" and pair.target_flavour == "tf_keras":
        pair.target_flavour = "keras3"  # a tf-keras checkpoint into a Keras 3 model
        if pair.target_optimizer is not None:
            pair.target_optimizer = "adam"
        return "flavour keras3"
    return ""


def make_keras_pair(seed: int) -> KerasPair:
    rng = np.random.default_rng(seed)
    flavour = "tf_keras" if rng.random() < 0.5 else "keras3"
    layers = [_random_layer(rng) for _ in range(int(rng.integers(1, 5)))]
    if not any(la.weighted for la in layers):
        layers.append(Layer("dense", int(rng.integers(1, 5))))
    if rng.random() < 0.3:
        layers = [replace(la, name=f"{la.kind}_layer_{i}") for i, la in enumerate(layers)]
    optimizer = str(rng.choice(KERAS_OPTIMIZERS[flavour])) if rng.random() < 0.6 else None
    pair = KerasPair(
        seed, flavour, flavour, int(rng.integers(2, 5)), layers, list(layers), optimizer, optimizer
    )
    for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
        if description := _keras_edit(rng, pair):
            pair.edits.append(description)
    if pair.flavour == "keras3":
        pair.source_root = None if rng.random() < 0.5 or optimizer else "model"
        if optimizer:
            pair.source_root = "model"  # tf.train.Checkpoint(model=..., optimizer=...)
    if pair.target_flavour == "tf_keras":
        pair.target_form = str(rng.choice(["model", "h5", "weights_h5"]))
    else:
        pair.target_form = str(rng.choice(["model", "keras"]))
    pair.strict = bool(rng.random() < 0.3)
    return pair


def _keras_module(flavour: str) -> Any:
    if flavour == "tf_keras":
        import tf_keras

        return tf_keras
    import keras

    return keras


def _keras_model(flavour: str, layers: list[Layer], inputs: int) -> Any:
    keras = _keras_module(flavour)
    built = []
    for la in layers:
        options: dict[str, Any] = {"name": la.name, "dtype": la.dtype}
        if la.kind == "dense":
            built.append(keras.layers.Dense(la.units, **options))
        elif la.kind == "batchnorm":
            built.append(keras.layers.BatchNormalization(**options))
        elif la.kind == "layernorm":
            built.append(keras.layers.LayerNormalization(**options))
        else:
            built.append(keras.layers.Dropout(0.5, **options))
    return keras.Sequential([keras.Input((inputs,)), *built])


def _keras_optimizer(flavour: str, kind: str) -> Any:
    keras = _keras_module(flavour)
    if kind == "legacy_adam":
        return keras.optimizers.legacy.Adam(0.01)
    if kind == "sgd":
        return keras.optimizers.SGD(0.01, momentum=0.9)
    return keras.optimizers.Adam(0.01)


def _randomise(model: Any, rng: np.random.Generator) -> None:
    """Random values in every weight: Keras' initial zeros and ones would make 'restored'
    and 'kept' look alike."""
    for weight in model.weights:
        shape = tuple(weight.shape)
        dtype = getattr(weight.dtype, "name", weight.dtype)  # Keras 3: a string
        # positive, so that a variance stays one and the step gives no NaN
        weight.assign((np.abs(rng.standard_normal(shape)) + 0.1).astype(np.dtype(dtype)))


def _keras_objects(
    tf: Any,
    flavour: str,
    layers: list[Layer],
    inputs: int,
    *,
    optimizer: str | None,
    stepped: bool,
    rng: np.random.Generator,
) -> tuple[Any, Any, list[Any]]:
    """(model, its optimizer or None, the variables it trained)."""
    model = _keras_model(flavour, layers, inputs)
    _randomise(model, rng)
    if optimizer is None:
        return model, None, []
    opt = _keras_optimizer(flavour, optimizer)
    if flavour == "tf_keras":
        model.compile(opt, "mse")  # save_weights saves model.optimizer too
    trained = list(model.trainable_variables)
    if stepped and trained:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(model(tf.ones((2, inputs))), tf.float32) ** 2)
        grads = tape.gradient(loss, trained)
        opt.apply_gradients(zip(grads, trained, strict=True))
    else:
        trained = []
    return model, opt, trained


def _run_keras(
    tf: Any, pair: KerasPair, tmp: Path
) -> tuple[Report, str | None, dict[str, Any], dict[str, np.ndarray]]:
    rng = np.random.default_rng(pair.seed + 1)
    context = pair.describe()
    model, opt, trained = _keras_objects(
        tf, pair.flavour, pair.source, pair.inputs, optimizer=pair.optimizer, stepped=True, rng=rng
    )
    if pair.flavour == "tf_keras":
        prefix = str(tmp / "source" / "x.ckpt")
        model.save_weights(prefix)  # a TF2 checkpoint of the model (and model.optimizer)
        saved_root: Any = model
    else:
        objects = {"optimizer": opt} if opt is not None else {}
        saved_root = (
            tf.train.Checkpoint(model=model, **objects)
            if pair.source_root
            else tf.train.Checkpoint(model)
        )
        prefix = saved_root.write(str(tmp / "source" / "ckpt"))
        if not pair.source_root:
            saved_root = model  # tf.train.Checkpoint(model) saves the model as the root
    assert_roles(true_roles(tf, prefix, saved_root, trained), prefix, context)

    live = pair.target_form == "model"
    target, target_opt, _ = _keras_objects(
        tf,
        pair.target_flavour,
        pair.target,
        pair.inputs,
        optimizer=pair.target_optimizer if live else None,
        stepped=pair.target_stepped,
        rng=rng,
    )
    if pair.target_flavour == "keras3" and target_opt is not None:
        given: Any = tf.train.Checkpoint(model=target, optimizer=target_opt)
    else:
        given = target
    if pair.target_form == "h5":
        path = tmp / "target.h5"
        target.save(str(path))  # legacy HDF5, the whole model
        target = _keras_module("tf_keras").models.load_model(str(path))
        given = target
    elif pair.target_form == "weights_h5":
        path = tmp / "target.h5"
        target.save_weights(str(path))  # legacy HDF5, weights only
        target = _keras_model("tf_keras", pair.target, pair.inputs)
        target.load_weights(str(path))  # the model built in code, as the file is used
        given = target
    elif pair.target_form == "keras":
        path = tmp / "target.keras"
        target.save(str(path))
        given = target = _keras_module("keras3").models.load_model(str(path))
    report = check(prefix, path if pair.target_form != "model" else given, strict=pair.strict)
    before = [np.array(w.numpy()) for w in target.weights]
    if pair.target_form in ("h5", "weights_h5") and report.alignment is None:
        # the restore a legacy .h5 target speaks for (README): tf-keras load_weights
        failure = _load_weights(tf, target, pair.strict, prefix)
    else:
        failure = _restore_tf2(tf, report, given, pair.strict, prefix)
    if failure is None:
        kept = [
            w.path if hasattr(w, "path") else w.name
            for w, b in zip(target.weights, before, strict=True)
            if np.array_equal(w.numpy(), b)
        ]
        if kept:
            failure = f"kept their values, the assertion passing: {kept}"
    root = given if isinstance(given, tf.train.Checkpoint) else tf.train.Checkpoint(given)
    after = _written(tf, root, tmp / "after") if failure is None else {}
    saved = _checkpoint_values(tf, prefix)
    if failure is None and pair.strict:
        failure = _landed_nowhere(after, saved)
    return report, failure, after, saved


def run_object_pair(tf: Any, pair: Any, tmp: Path) -> None:
    """An optimizer or Keras pair: the verdict is the restore's outcome, and every variable
    check calls matched (optimizer state included) holds the checkpoint's value."""
    runner = _run_optimizers if isinstance(pair, OptimizerPair) else _run_keras
    report, failure, after, saved = runner(tf, pair, tmp)
    context = assert_verdict(report, failure, pair)
    assert_matched_values(report, after, saved, context)


def _key(pair: Pair, v: Var) -> str:
    if pair.family == "tf1":
        return v.name
    scope = f"{pair.source_root}/" if pair.source_root else ""
    return f"{scope}{v.name}/.ATTRIBUTES/VARIABLE_VALUE"


def _target_key(pair: Pair, v: Var) -> str:
    if pair.family == "tf1":
        return v.name
    scope = f"{pair.target_root}/" if pair.target_form != "module" and pair.target_root else ""
    return f"{scope}{v.name}/.ATTRIBUTES/VARIABLE_VALUE"


FAMILIES: dict[str, tuple[Callable[[int], Any], Callable[[Any, Any, Path], None]]] = {
    "graphs": (make_pair, run_pair),
    "optimizers": (make_optimizer_pair, run_object_pair),
    "keras": (make_keras_pair, run_object_pair),
}


@pytest.mark.parametrize(
    ("family", "chunk"), [(family, chunk) for family in FAMILIES for chunk in _chunks(family)]
)
def test_verdict_equals_the_real_restore(tf: Any, family: str, chunk: int) -> None:
    make, run = FAMILIES[family]
    count = min(CHUNK, COUNTS[family] - chunk * CHUNK)
    for index in range(chunk * CHUNK, chunk * CHUNK + count):
        pair = make(SEED + index)
        with tempfile.TemporaryDirectory(prefix="ckptmigrate-oracle-") as tmp:
            run(tf, pair, Path(tmp))


def test_the_generator_makes_every_edit_and_both_outcomes() -> None:
    """The default run covers what it claims: every edit, both families and target forms."""
    pairs = [make_pair(SEED + i) for i in range(PAIRS)]
    edits = {e.split()[0] for p in pairs for e in p.edits if "not applicable" not in e}
    assert edits >= {
        "rename",
        "move",
        "scope_all",
        "unscope_all",
        "missing",
        "extra",
        "resize",
        "dtype",
    }
    forms = {(p.family, p.target_form) for p in pairs}
    assert forms >= {
        ("tf1", "meta"),
        ("tf1", "graph"),
        ("tf2", "module"),
        ("tf2", "checkpoint"),
        ("tf2", "saved"),
    }
    assert any(not v.resource for p in pairs for v in p.source)
    assert any(not p.edits for p in pairs)
    assert {p.optimizer for p in pairs if p.family == "tf1"} >= {None, *TF1_OPTIMIZERS}
    assert {p.step for p in pairs if p.optimizer} == {"global_step", "step"}

    # the optimizer family: every edit to a variable or an optimizer, every optimizer kind
    optimizer_pairs = [make_optimizer_pair(SEED + i) for i in range(max(COUNTS["optimizers"], 100))]
    edits = {e.split()[0] for p in optimizer_pairs for e in p.edits if "not applicable" not in e}
    assert edits >= {
        "rename", "move", "scope_all", "unscope_all", "missing", "extra", "resize", "dtype",
        "opt_rename", "opt_drop", "opt_add", "opt_kind", "opt_no_step",
    }  # fmt: skip
    assert {o.kind for p in optimizer_pairs for o in p.source_opts} == set(OPTIMIZER_KINDS)
    assert {len({v.path[0] for v in p.source}) for p in optimizer_pairs} == {1, 2}
    assert {(p.target_form, p.strict) for p in optimizer_pairs} == {
        (form, strict) for form in ("checkpoint", "saved") for strict in (False, True)
    }

    # the Keras family: every edit, both Keras, every target form, with and without training
    keras_pairs = [make_keras_pair(SEED + i) for i in range(max(COUNTS["keras"], 50))]
    edits = {e.split()[0] for p in keras_pairs for e in p.edits}
    assert edits >= {
        "resize", "missing", "extra", "weightless", "rename", "dtype", "optimizer", "flavour",
    }  # fmt: skip
    assert {(p.flavour, p.target_flavour, p.target_form) for p in keras_pairs} == {
        ("tf_keras", "tf_keras", "model"),
        ("tf_keras", "tf_keras", "h5"),
        ("tf_keras", "tf_keras", "weights_h5"),
        ("tf_keras", "keras3", "model"),
        ("tf_keras", "keras3", "keras"),
        ("keras3", "keras3", "model"),
        ("keras3", "keras3", "keras"),
    }
    assert {la.kind for p in keras_pairs for la in p.source} == set(LAYER_KINDS)
    assert {(p.flavour, p.optimizer) for p in keras_pairs} >= {
        (flavour, kind) for flavour, kinds in KERAS_OPTIMIZERS.items() for kind in (None, *kinds)
    }
    assert {p.source_root for p in keras_pairs if p.flavour == "keras3"} == {None, "model"}


def test_tf1_resource_variable_is_silently_reshaped(tf: Any, tmp_path: Path) -> None:
    """TensorFlow's own inconsistency, pinned: Saver.restore of a differently shaped tensor
    raises for a ref variable but silently reshapes a resource variable; check fails both."""
    v1 = tf.compat.v1
    values = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    graph, saver = _tf1_graph(tf, [Var(("w",), (2, 3), "float32")], values)
    with v1.Session(graph=graph) as session:
        session.run(v1.global_variables_initializer())
        prefix = saver.save(session, str(tmp_path / "model.ckpt"), write_meta_graph=False)
    for resource in (False, True):
        target = [Var(("w",), (3, 2), "float32", resource)]
        graph, saver = _tf1_graph(tf, target, {"w": np.zeros((3, 2), np.float32)})
        assert not check(prefix, graph).ok
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            variable = graph.get_collection("variables")[0]
            if not resource:
                with pytest.raises(tf.errors.InvalidArgumentError, match="Assign requires shapes"):
                    saver.restore(session, prefix)
                continue
            saver.restore(session, prefix)  # no error...
            assert variable.shape.as_list() == [3, 2]  # ...the graph still says [3, 2]
            np.testing.assert_array_equal(session.run(variable), values["w"])  # holds [2, 3]


def test_tf2_variable_matched_to_a_module_node_keeps_its_value(tf: Any, tmp_path: Path) -> None:
    """TensorFlow's own inconsistency, pinned: the checkpoint's 'net' is a module holding
    'bias'; the target's 'net' is a variable. The restore matches the variable to that node
    and restores nothing into it, yet assert_existing_objects_matched() passes. check says
    the variable is missing, which is what happens to it."""
    old = tf.Module()
    old.net = tf.Module()
    old.net.bias = tf.Variable(1.5)
    prefix = tf.train.Checkpoint(old).write(str(tmp_path / "ckpt"))
    new = tf.Module()
    new.net = tf.Variable(-2.0)
    tf.train.Checkpoint(new).read(prefix).assert_existing_objects_matched()  # passes...
    assert new.net.numpy() == -2.0  # ...but the variable got no value
    report = check(prefix, new)
    assert not report.ok
    assert [f.name for f in report.findings if f.kind is Kind.MISSING] == [
        "net/.ATTRIBUTES/VARIABLE_VALUE"
    ]


def _adam_checkpoint(tf: Any, optimizer: Any, tmp_path: Path) -> tuple[str, Any]:
    module = tf.Module()
    module.gamma = tf.Variable(np.ones((3, 4), np.float32))
    module.beta = tf.Variable(np.ones(4, np.float32))
    _step(tf, optimizer, [module.gamma, module.beta])
    holder = tf.train.Checkpoint(critic=module, critic_optimizer=optimizer)
    return holder.write(str(tmp_path / f"{type(optimizer).__module__}" / "ckpt")), holder


def test_tf2_optimizer_of_another_layout_is_refused(tf: Any, tmp_path: Path) -> None:
    """Found by the oracle (optimizers family), a false OK before compare paired TF2 paths
    as TensorFlow's walk binds them: a Keras 3 Adam's state restored into a tf-keras Adam
    at the same attribute. Both list their slots in ``_variables`` (Keras 3:
    iterations, learning rate, then m and v per variable; tf-keras: iterations, then m and v
    per variable), and both also reach them as ``_momentums/N``, ``_velocities/N``."""
    import keras
    import tf_keras

    prefix, _ = _adam_checkpoint(tf, keras.optimizers.Adam(0.01), tmp_path)
    _, holder = _adam_checkpoint(tf, tf_keras.optimizers.Adam(0.01), tmp_path)
    with pytest.raises(ValueError, match="incompatible tensor with shape"):
        holder.read(prefix)  # TensorFlow: v of gamma [3, 4] into m of beta [4]
    assert not check(prefix, holder).ok


def test_tf2_consumed_value_that_lands_nowhere(tf: Any, tmp_path: Path) -> None:
    """TensorFlow's own inconsistency, pinned: a tf-keras Adam's checkpoint read into a
    Keras 3 RMSprop at the same attribute. The checkpoint's ``_variables/1`` (Adam's m)
    is bound to the RMSprop's ``_variables[1]``, its learning rate, which the
    ``_learning_rate`` node already restored; TensorFlow skips it and still counts it
    consumed, so assert_consumed() passes while m's value is in no variable. check --strict
    calls it unused, which is what it is."""
    import keras
    import tf_keras

    module = tf.Module()
    module.bias = tf.Variable(np.ones(3, np.float32))
    optimizer = tf_keras.optimizers.Adam(0.01)
    _step(tf, optimizer, [module.bias])
    prefix = tf.train.Checkpoint(encoder=module, opt=optimizer).write(str(tmp_path / "ckpt"))
    m = tf.train.load_checkpoint(prefix).get_tensor("opt/_variables/1/.ATTRIBUTES/VARIABLE_VALUE")

    target = tf.Module()
    target.bias = tf.Variable(np.zeros(3, np.float32))
    rmsprop = keras.optimizers.RMSprop(0.01)
    _step(tf, rmsprop, [target.bias])
    holder = tf.train.Checkpoint(encoder=target, opt=rmsprop)
    holder.read(prefix).assert_consumed()  # passes...
    held = _written(tf, holder, tmp_path / "after")
    assert not any(same_bits(value, m) for value in held.values())  # ...m is nowhere
    report = check(prefix, holder, strict=True)
    assert not report.ok
    assert "opt/_variables/1/.ATTRIBUTES/VARIABLE_VALUE" in [
        f.name for f in report.findings if f.kind is Kind.UNUSED
    ]


def test_tf_keras_slots_follow_a_layer_found_by_its_other_path(tf: Any, tmp_path: Path) -> None:
    """Found by the oracle (keras family): a tf-keras Sequential reaches each layer as
    ``layer-N`` and as ``layer_with_weights-N``. Without the checkpoint's BatchNormalization
    and with a Dropout first, the last Dense is ``layer-2`` on both sides but
    ``layer_with_weights-2`` / ``-1``: TensorFlow restores it through ``layer-2``, and its
    optimizer slots with it (a slot follows its variable, whatever path found it). check
    found the weights but called the slots missing: their other paths were cut off after
    the optimizer's own looping ones (``root/optimizer``, ``root/root/optimizer``, ...)."""
    import tf_keras

    layers = tf_keras.layers

    def trained(*stack: Any) -> Any:
        model = tf_keras.Sequential([tf_keras.Input((2,)), *stack])
        model.compile(tf_keras.optimizers.legacy.Adam(0.01), "mse")
        _step(tf, model.optimizer, model.trainable_variables)
        return model

    source = trained(layers.Dense(3), layers.BatchNormalization(), layers.Dense(4))
    prefix = str(tmp_path / "x.ckpt")
    source.save_weights(prefix)
    target = trained(layers.Dropout(0.5), layers.Dense(3), layers.Dense(4))
    tf.train.Checkpoint(target).read(prefix).assert_existing_objects_matched()
    slot = target.optimizer.get_slot(target.layers[-1].kernel, "m").numpy()
    assert same_bits(slot, source.optimizer.get_slot(source.layers[-1].kernel, "m").numpy())
    report = check(prefix, target)
    assert report.ok, [(f.kind.value, f.name) for f in report.findings if f.kind is Kind.MISSING]
