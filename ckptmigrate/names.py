"""The grammar of checkpoint keys: what a key says about the variable behind it.

TF1 Saver keys are variable names (``dnn/hiddenlayer_0/kernel``, slots append the
optimizer's name: ``.../kernel/Adagrad``). TF2 object-based keys are paths through the
object graph ending in ``/.ATTRIBUTES/VARIABLE_VALUE``; slots use ``/.OPTIMIZER_SLOT/``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from enum import Enum

from .formats.object_graph import OBJECT_GRAPH_KEY, OPTIMIZER_SLOT_MARKER, VARIABLE_SUFFIX

__all__ = [
    "ATTRIBUTES_MARKER",
    "OPTIMIZER_SLOT_MARKER",
    "VARIABLE_SUFFIX",
    "Role",
    "classify",
    "classify_many",
    "graph_roles",
    "variable_path",
]

ATTRIBUTES_MARKER = "/.ATTRIBUTES/"


class Role(str, Enum):
    MODEL = "model"
    OPTIMIZER = "optimizer"
    STEP = "step"
    METADATA = "metadata"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Role.MODEL: "model variable",
    Role.OPTIMIZER: "optimizer slot",
    Role.STEP: "step counter",
    Role.METADATA: "checkpoint metadata",
}

# The naming table: how optimizers name their state where nothing else says (no object
# graph, no .meta). One entry per optimizer family; README's inspect "Roles" lists it.
#
# Slot names TF1 optimizers append to a variable's name (tf.compat.v1.train.*Optimizer, slot
# `var/<OptimizerName>`, `_N` for the second slot), plus moving-average shadows, LARS and
# tensor2tensor's Adafactor, made by the same slot machinery.
_TF1_SLOT = re.compile(
    r"(Adam|Adagrad|AdagradDA|Adadelta|Adamax|Nadam|LazyAdam|Momentum|RMSProp|Ftrl|"
    r"ProximalAdagrad|ProximalGradientDescent|AdamW|ExponentialMovingAverage|"
    r"LARS|LARSOptimizer|Adafactor|"
    r"(Adam|Adadelta|RMSProp|Ftrl|Adamax|Nadam|Momentum|AdagradDA|LARSOptimizer|Adafactor)_\d+)"
)
_TF1_SLOT_INITIALS = frozenset("AEFLMNPR")  # every name _TF1_SLOT matches starts with one
# Slots that optimizers outside tf.compat.v1.train name themselves: google-research/bert's
# AdamWeightDecayOptimizer (adam_m, adam_v), LAMB (lamb_m, lamb_v), and Mesh TensorFlow's
# Adafactor in T5 (`<var>_slot_vc`, `_slot_vr`, `_slot_v`, `_slot_m`, a suffix, not a scope).
_NAMED_SLOT = re.compile(r"(adam|lamb)_[mv]|.+_slot_(vc|vr|v|m)")
_TF1_OPTIMIZER_STATE = re.compile(r"(beta1_power|beta2_power|beta_1_power|beta_2_power)(_\d+)?")
# tf-keras optimizers in a TF1 graph name their state `<Optimizer>/<hyper-parameter>`.
_KERAS_OPTIMIZER_SCOPE = re.compile(
    r"(Adam|Adagrad|Adadelta|Adamax|Nadam|Ftrl|RMSprop|SGD|AdamW|Lion|Lamb|LAMB)(_\d+)?"
)
_KERAS_HYPER = frozenset(
    {"learning_rate", "decay", "beta_1", "beta_2", "epsilon", "rho", "momentum", "lr"}
)
_STEP_NAMES = {"global_step", "iter", "iterations", "_iterations"}
_OPTIMIZER_SCOPES = {"optimizer", "training", "_optimizer"}
_METADATA_NAMES = {"save_counter"}


def variable_path(key: str) -> str:
    """The key without TF2's ``/.ATTRIBUTES/VARIABLE_VALUE`` suffix."""
    return key[: -len(VARIABLE_SUFFIX)] if key.endswith(VARIABLE_SUFFIX) else key


def classify(
    key: str, slot_keys: Collection[str] = (), optimizer_state: Mapping[str, str] | None = None
) -> Role:
    """The role of a checkpoint key: model variable, optimizer state, step or metadata.

    Args:
        key: the checkpoint key (or a TF1 variable name).
        slot_keys: keys the object graph records as slot variables.
        optimizer_state: key -> its name under the optimizer that owns it, for keys the
            object graph places under an optimizer node (``ObjectGraph.optimizer_state``);
            they are optimizer state whatever the optimizer's attribute is called.

    Returns:
        The role: from the object graph where it says, otherwise from the naming table.
    """
    if key == OBJECT_GRAPH_KEY or "keras_api/metrics/" in key:
        return Role.METADATA
    if ATTRIBUTES_MARKER in key and not key.endswith(VARIABLE_SUFFIX):
        return Role.METADATA  # e.g. OBJECT_CONFIG_JSON, Python state
    if OPTIMIZER_SLOT_MARKER in key or key in slot_keys:
        return Role.OPTIMIZER
    if optimizer_state:
        owned = optimizer_state.get(key)
        if owned is not None:
            return Role.STEP if owned in _STEP_NAMES else Role.OPTIMIZER
    return _role_of_path(key[: -len(VARIABLE_SUFFIX)] if key.endswith(VARIABLE_SUFFIX) else key)


def classify_many(
    keys: Iterable[str],
    slot_keys: Collection[str] = (),
    optimizer_state: Mapping[str, str] | None = None,
) -> list[Role]:
    """:func:`classify` of each key, at a fraction of the cost for a whole checkpoint.

    Past the checks of the whole key, a role depends only on the last name and on a few
    facts about the scope above it (is it under an optimizer? under
    ``_trainable_variables``? is it a lone Keras optimizer scope?). Variables share both
    (``.../kernel``, ``.../bias``, each slot under each layer), so each is worked out once
    per call; nothing is kept between calls.
    """
    roles: list[Role] = []
    scopes: dict[str, tuple[bool, bool, bool]] = {}
    decided: dict[tuple[bool, tuple[bool, bool, bool], str], Role] = {}
    for key in keys:
        if (
            key == OBJECT_GRAPH_KEY
            or OPTIMIZER_SLOT_MARKER in key
            or "keras_api/metrics/" in key
            or (ATTRIBUTES_MARKER in key and not key.endswith(VARIABLE_SUFFIX))
            or key in slot_keys
            or (optimizer_state and key in optimizer_state)
        ):
            roles.append(classify(key, slot_keys, optimizer_state))
            continue
        path = key[: -len(VARIABLE_SUFFIX)] if key.endswith(VARIABLE_SUFFIX) else key
        head, sep, last = path.rpartition("/")
        facts = scopes.get(head)
        if facts is None:
            # Most scopes name none of these words: no need to split them into parts.
            if "optimizer" in head or "training" in head or "_trainable_variables" in head:
                above = head.split("/")
                under = ("_trainable_variables" in above, not _OPTIMIZER_SCOPES.isdisjoint(above))
            else:
                under = (False, False)
            lone = "/" not in head and _KERAS_OPTIMIZER_SCOPE.fullmatch(head) is not None
            facts = scopes[head] = (*under, lone)
        case = (bool(sep), facts, last)
        role = decided.get(case)
        if role is None:
            role = decided[case] = _role_of_path(path)
        roles.append(role)
    return roles


def _role_of_path(path: str) -> Role:
    """The naming table's role for a variable path (a key without the TF2 suffix) that
    nothing else classified."""
    # Set tests and first-character checks before the regexes: every key of a checkpoint
    # is classified, once per side of a check.
    parts = path.split("/")
    last = parts[-1]
    if len(parts) == 1:
        if last in _METADATA_NAMES:
            return Role.METADATA
        in_optimizer = False
    else:
        if "_trainable_variables" in parts:
            return Role.MODEL  # Keras 3 models reach their weights through the optimizer's list
        in_optimizer = not _OPTIMIZER_SCOPES.isdisjoint(parts[:-1])
    if last == "global_step" or (last in _STEP_NAMES and (in_optimizer or len(parts) == 1)):
        return Role.STEP
    if in_optimizer or (last[:4] == "beta" and _TF1_OPTIMIZER_STATE.fullmatch(last)):
        return Role.OPTIMIZER
    if len(parts) > 1:
        if last[:1] in _TF1_SLOT_INITIALS and _TF1_SLOT.fullmatch(last):
            return Role.OPTIMIZER
        if _NAMED_SLOT.fullmatch(last):
            return Role.OPTIMIZER
        if len(parts) == 2 and _KERAS_OPTIMIZER_SCOPE.fullmatch(parts[0]):
            if last == "iter":
                return Role.STEP
            if last in _KERAS_HYPER:
                return Role.OPTIMIZER
    return Role.MODEL


# -- roles from a TF1 graph: which ops update each variable ------------------------------

_VARIABLE_OPS = frozenset({"VariableV2", "Variable", "VarHandleOp"})
_READ_OPS = frozenset({"Identity", "ReadVariableOp"})
_INCREMENT_OPS = frozenset({"AssignAdd", "AssignAddVariableOp"})
_ASSIGN_OPS = frozenset({"Assign", "AssignVariableOp"})
_PART = re.compile(r"/part_\d+(?=/|$)")


def _is_apply(op: str) -> bool:
    # ApplyAdam, ResourceApplyAdagrad, SparseApplyFtrl, ResourceSparseApplyMomentum, ...
    return op.startswith(("Apply", "ResourceApply", "SparseApply", "ResourceSparseApply"))


def graph_roles(
    nodes: Iterable[tuple[str, str, Sequence[str]]], global_steps: Collection[str] = ()
) -> dict[str, Role]:
    """Roles of a TF1 graph's variables from what its ops do to them.

    The variable an optimizer's ``Apply*`` op trains (its first input) is a model variable;
    every other variable it reads (slots: ``m``, ``v``, accumulators; ``beta1_power``
    through its read) is optimizer state, and so is a variable the optimizer's own name
    scope assigns. A variable the optimizer's scope increments (``minimize(global_step=
    step)``), or one in the ``global_step`` collection, is the step counter.

    Args:
        nodes: (name, op type, inputs) of every node of the GraphDef.
        global_steps: the names in the graph's ``global_step`` collection.

    Returns:
        variable name as the Saver stores it (a partitioned variable's ``/part_N`` left
        out) -> role, for the variables the graph says something about.
    """
    ops: dict[str, tuple[str, Sequence[str]]] = {}
    for name, op, inputs in nodes:
        ops[name] = (op, inputs)

    def variable_of(tensor: str, depth: int = 0) -> str | None:
        name = tensor.lstrip("^").split(":", 1)[0]
        op, inputs = ops.get(name, ("", ()))
        if op in _VARIABLE_OPS:
            return name
        if op in _READ_OPS and inputs and depth < 2:
            return variable_of(inputs[0], depth + 1)
        return None

    roles: dict[str, Role] = {}
    scopes: set[str] = set()
    for name, (op, inputs) in ops.items():
        if not _is_apply(op) or not inputs:
            continue
        # "<optimizer scope>/update_<variable>/ApplyAdam": the scope also holds the
        # optimizer's own updates (beta1_power's Assign, the step's AssignAdd, "Adam").
        scope = name.split("/update_", 1)[0] if "/update_" in name else name.rpartition("/")[0]
        if scope:
            scopes.add(scope)
        trained = variable_of(inputs[0])
        if trained is not None:
            roles[trained] = Role.MODEL
        for tensor in inputs[1:]:
            state = variable_of(tensor)
            if state is not None and state != trained:
                roles.setdefault(state, Role.OPTIMIZER)
    for name, (op, inputs) in ops.items():
        if not inputs or not any(name == s or name.startswith(s + "/") for s in scopes):
            continue
        variable = variable_of(inputs[0])
        if variable is None or roles.get(variable) is Role.MODEL:
            continue
        if op in _INCREMENT_OPS:
            roles[variable] = Role.STEP
        elif op in _ASSIGN_OPS:
            roles.setdefault(variable, Role.OPTIMIZER)
    for name in global_steps:
        roles[name.split(":", 1)[0]] = Role.STEP
    # A partitioned variable's parts (and their slots) are saved under the full name.
    return {_PART.sub("", name): role for name, role in roles.items()}
