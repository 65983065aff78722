"""Inventories: the variables one side of a comparison holds or needs, without values.

Every target loader and every checkpoint produce the same shape of data, so comparing is
one pure function whatever the sources were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from .names import Role


class Scheme(str, Enum):
    """How variables are named: what a restore will look the values up by."""

    TF1 = "tf1-names"  # tf.compat.v1.train.Saver: variable names (dnn/hiddenlayer_0/kernel)
    TF2 = "tf2-object"  # tf.train.Checkpoint: object-graph paths (.../.ATTRIBUTES/...)
    KERAS3 = "keras3-h5"  # Keras 3 .weights.h5 / .keras: layers/<name>/vars/<i>
    KERAS2 = "keras2-h5"  # legacy tf-keras .h5: <layer>/<weight>:0

    @property
    def label(self) -> str:
        return _SCHEME_LABELS[self]


_SCHEME_LABELS = {
    Scheme.TF1: "TF1 variable names (tf.compat.v1.train.Saver)",
    Scheme.TF2: "TF2 object-based keys (tf.train.Checkpoint)",
    Scheme.KERAS3: "Keras 3 weight paths (.weights.h5)",
    Scheme.KERAS2: "legacy Keras H5 weight names",
}
_FOREIGN_NAMING = {
    "safetensors": "safetensors tensor names",
    "torch": "PyTorch state_dict keys",
}


class Rename(NamedTuple):
    """How a map rule named a planned output: the rule, the checkpoint variable the output
    comes from, and that variable's original name (never used to pair the output, but kept
    to tell a rule that contradicts it)."""

    rule: str
    source: str
    source_original: str | None


class VariableSpec(NamedTuple):
    """One variable: the key a restore uses, its shape, dtype, role, and original name.

    A tuple: every check builds one per variable on each side, and a frozen dataclass
    cost twice as much to build (change one with ``spec._replace(...)``)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    role: Role = Role.MODEL
    original_name: str | None = None
    # TF2 only: other object-graph paths (key-shaped) that reach the same value.
    aliases: tuple[str, ...] = ()
    # TF1 graph variables only: how the variable is stored, which decides what a Saver
    # restore of a differently shaped value does ("ref": Assign refuses it, "resource": it
    # silently takes the stored shape, "partitioned": RestoreV2 refuses the slice spec).
    storage: str | None = None
    # A convert plan's output that a map rule named (else None): it pairs by that name only.
    renamed: Rename | None = None

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Inventory:
    """What one side holds (a checkpoint) or needs (a target model)."""

    kind: str  # "checkpoint", "metagraph", "saved_model", "keras", "builder", "spec", ...
    source: str  # what the user passed, for messages
    scheme: Scheme
    variables: dict[str, VariableSpec]
    notes: tuple[str, ...] = field(default_factory=tuple)
    # A Keras 3 model's variables carry no TF1 names: a name-based checkpoint restores
    # nothing into it, whatever the object graph records.
    restores_by_name: bool = True
    # Checkpoints only: "v1" (single file, TF <= 1.1) or "v2" (TensorBundle); TensorFlow
    # words its restore errors differently for each.
    checkpoint_format: str | None = None

    @property
    def naming(self) -> str:
        """How this side names its variables, in words for reports: the scheme's label, or,
        for a safetensors or PyTorch file (looked up by key, as TF1 names are), the file's."""
        foreign = _FOREIGN_NAMING.get(self.checkpoint_format or "")
        return foreign if foreign is not None and self.scheme is Scheme.TF1 else self.scheme.label

    @property
    def parameters(self) -> int:
        return sum(v.num_elements for v in self.variables.values())
