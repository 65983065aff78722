"""The grammar of checkpoint keys: what a key says about the variable behind it.

TF1 Saver keys are variable names (``dnn/hiddenlayer_0/kernel``, slots append the
optimizer's name: ``.../kernel/Adagrad``). TF2 object-based keys are paths through the
object graph ending in ``/.ATTRIBUTES/VARIABLE_VALUE``; slots use ``/.OPTIMIZER_SLOT/``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from enum import Enum

from .formats.object_graph import OBJECT_GRAPH_KEY, OPTIMIZER_SLOT_MARKER, VARIABLE_SUFFIX

__all__ = [
    "ATTRIBUTES_MARKER",
    "OPTIMIZER_SLOT_MARKER",
    "VARIABLE_SUFFIX",
    "Role",
    "classify",
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

# Slot names TF1 optimizers append to a variable's name (tf.compat.v1.train.*Optimizer),
# with the "_1" second slots; plus moving-average shadows made by the same slot machinery.
_TF1_SLOT = re.compile(
    r"(Adam|Adagrad|AdagradDA|Adadelta|Adamax|Nadam|LazyAdam|Momentum|RMSProp|Ftrl|"
    r"ProximalAdagrad|ProximalGradientDescent|AdamW|ExponentialMovingAverage|"
    r"Adam_\d+|Adadelta_\d+|RMSProp_\d+|Ftrl_\d+|Adamax_\d+|Nadam_\d+|Momentum_\d+)"
)
_TF1_SLOT_INITIALS = frozenset("AEFLMNPR")  # every name _TF1_SLOT matches starts with one
_TF1_OPTIMIZER_STATE = re.compile(r"(beta1_power|beta2_power|beta_1_power|beta_2_power)(_\d+)?")
_STEP_NAMES = {"global_step", "iter", "iterations", "_iterations"}
_OPTIMIZER_SCOPES = {"optimizer", "training", "_optimizer"}
_METADATA_NAMES = {"save_counter"}


def variable_path(key: str) -> str:
    """The key without TF2's ``/.ATTRIBUTES/VARIABLE_VALUE`` suffix."""
    return key[: -len(VARIABLE_SUFFIX)] if key.endswith(VARIABLE_SUFFIX) else key


def classify(key: str, slot_keys: Collection[str] = ()) -> Role:
    """The role of a checkpoint key: model variable, optimizer state, step or metadata."""
    if key == OBJECT_GRAPH_KEY or "keras_api/metrics/" in key:
        return Role.METADATA
    if ATTRIBUTES_MARKER in key and not key.endswith(VARIABLE_SUFFIX):
        return Role.METADATA  # e.g. OBJECT_CONFIG_JSON, Python state
    if OPTIMIZER_SLOT_MARKER in key or key in slot_keys:
        return Role.OPTIMIZER
    # Inlined variable_path, set tests and first-character checks before the regexes:
    # every key of a checkpoint is classified, twice per check.
    path = key[: -len(VARIABLE_SUFFIX)] if key.endswith(VARIABLE_SUFFIX) else key
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
    if len(parts) > 1 and last[:1] in _TF1_SLOT_INITIALS and _TF1_SLOT.fullmatch(last):
        return Role.OPTIMIZER
    return Role.MODEL
