"""Making a paired variable fit: slices and pads for shapes, and what new cells start at
(initialisers for weights, what the optimizer starts a slot at)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..inventory import Inventory
from ..mapping.fills import slot_kind
from ..names import variable_path
from .scoring import leaf_of, regroups, shape_text, target_keys

if TYPE_CHECKING:
    import numpy as np


_ACCUMULATOR = re.compile(r"(Adagrad|Ftrl|RMSProp|Adadelta|accumulator)", re.IGNORECASE)

_ONES_LEAVES = {"gamma", "moving_variance", "variance", "scale"}

_MATRIX_LEAVES = {"kernel", "weights", "embeddings", "embedding_weights", "w"}


def fill_for(name: str, shape: tuple[int, ...], dtype: str) -> dict[str, Any]:
    """A fill that starts a new cell the way a fresh layer would."""
    leaf = leaf_of(name)
    if not dtype.startswith(("float", "bfloat", "half")):
        return {"fill": "zeros"}
    if leaf in _ONES_LEAVES:
        return {"fill": "ones"}
    if len(shape) >= 2 or leaf in _MATRIX_LEAVES:
        return {"fill": "glorot_uniform"}
    return {"fill": "zeros"}


def _constant_fill(value: float) -> dict[str, Any]:
    if value == 0.0:
        return {"fill": "zeros"}
    if value == 1.0:
        return {"fill": "ones"}
    return {"fill": "constant", "value": value}


def _constant_of(value: np.ndarray | None) -> float | None:
    """The one value every cell of a float tensor holds (what a constant initialiser
    gives), written as briefly as it round-trips in its dtype; None otherwise."""
    import numpy as np

    if value is None or value.size == 0 or value.dtype.kind not in "fV":
        return None
    if value.dtype.kind == "V":  # bfloat16, float8 (ml_dtypes): compared as float32
        try:
            value = value.astype(np.float32)
        except (TypeError, ValueError):
            return None
    first = value.reshape(-1)[0]
    if not np.isfinite(first) or not np.all(value == first):
        return None
    return float(np.format_float_positional(first, unique=True, trim="-"))


class SlotStarts:
    """What new optimizer state starts at: the target's own start where it has one (a
    ``.meta`` graph's initialiser, a built model's optimizer: one constant for the whole
    slot), else what the optimizer creates for the slot's kind (Adagrad and Ftrl
    accumulators ``initial_accumulator_value`` 0.1, Ftrl's linear and Adam's moments 0,
    TF1 RMSProp's rms 1); never the variable's random initialiser."""

    def __init__(self, target: Inventory, initial_value: Callable[[str], Any]) -> None:
        self._keys: dict[str, str] = {}
        for spec in target.variables.values():
            for key in target_keys(spec):
                self._keys.setdefault(key, spec.name)
        self._initial_value = initial_value

    def fill(self, name: str) -> tuple[dict[str, Any] | None, str]:
        """(fill, why) for the slot named ``name`` (a target key or its display name);
        fill None: nothing is known about it."""
        kind = slot_kind(name)
        what = f"{kind.optimizer}'s {kind.slot} " if kind is not None else ""
        key = self._keys.get(variable_path(name), name)
        own = _constant_of(self._initial_value(key))
        if own is not None and not (kind is not None and kind.positive and own <= 0.0):
            return _constant_fill(own), f"at {what}{own:g}, the target's own start"
        if kind is not None:
            return _constant_fill(kind.start), (
                f"at {what}{kind.start:g}, the optimizer's default (the target holds no "
                "single start value)"
            )
        return None, (
            "an optimizer slot of no known kind, which the target gives no single start "
            "value: check that the optimizer starts it at zero"
        )

    def pad_fill(self, name: str) -> dict[str, Any]:
        fill, _ = self.fill(name)
        if fill is not None:
            return fill
        # Unknown kind: an accumulator divides by its square root, so its new cells get
        # the mean of the old ones (positive); anything else zeros.
        leaf = name.rsplit("/", 1)[-1]
        return {"fill": "mean"} if _ACCUMULATOR.search(leaf) else {"fill": "zeros"}


def _index(source: tuple[int, ...], target: tuple[int, ...]) -> str | None:
    if all(a <= b for a, b in zip(source, target, strict=True)):
        return None
    parts = [f":{b}" if a > b else ":" for a, b in zip(source, target, strict=True)]
    while parts and parts[-1] == ":":  # `[:, :2]` but `[:2]`, as people write them
        parts.pop()
    return "[" + ", ".join(parts) + "]"


# Weight matrices whose second-to-last axis is their layer's inputs: Dense [in, out], conv
# [h, w, in, out], a TF1 linear model's [features, 1]. (Not BERT's output_weights, which
# is [out, in]; not embeddings, whose rows are ids; not recurrent kernels, whose gates
# interleave.)
_FAN_IN_LEAVES = {"kernel", "weights", "w"}

PRESERVING_ROWS = (
    "function-preserving: rows for new inputs (new units of the layer before, new "
    "features) start at zero, so the model computes what it did; training moves them from "
    "the first step (suggest --random-growth: glorot_uniform instead)"
)
NEW_UNITS = "new columns (new units) first: random, so they learn; the new rows follow"


def fan_in_axis(name: str, shape: tuple[int, ...], dtype: str) -> int | None:
    """The axis of ``name`` indexed by its layer's inputs, for a float weight matrix of a
    known layout; None otherwise."""
    if len(shape) < 2 or not dtype.startswith(("float", "bfloat", "half")):
        return None
    return len(shape) - 2 if leaf_of(name) in _FAN_IN_LEAVES else None


def shape_ops(
    source: tuple[int, ...],
    target: tuple[int, ...],
    fill: dict[str, Any],
    fan_in: int | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Operations (as map bodies) turning ``source`` into ``target``, and a doubt.

    ``fan_in``: the axis indexed by the layer's inputs; new cells along it start at zero
    (function-preserving growth, Net2Net-style): new inputs, such as the units a widened
    layer before adds, then contribute nothing until training moves them, while the new
    units' own weights (the other axes) get ``fill``."""
    if source == target:
        return [], None
    if len(source) == len(target):
        if len(source) == 2 and source == target[::-1] and source[0] != source[1]:
            return [{"transpose": [1, 0]}], "transposed shape: a transpose is a guess"
        ops: list[dict[str, Any]] = []
        index = _index(source, target)
        if index is not None:
            ops.append({"slice": index})
        if not any(a < b for a, b in zip(source, target, strict=True)):
            return ops, None
        if fan_in is None or source[fan_in] >= target[fan_in] or fill.get("fill") == "zeros":
            ops.append({"pad": {"shape": list(target), **fill}})
            return ops, None
        # The other axes first (new units' weights, random), then the fan-in axis with
        # zeros: every new input row is zero, the corner with the new units included.
        inner = tuple(
            min(a, b) if axis == fan_in else b
            for axis, (a, b) in enumerate(zip(source, target, strict=True))
        )
        if inner != tuple(min(a, b) for a, b in zip(source, target, strict=True)):
            ops.append({"pad": {"shape": list(inner), **fill}, "note": NEW_UNITS})
        ops.append({"pad": {"shape": list(target), "fill": "zeros"}, "note": PRESERVING_ROWS})
        return ops, None
    if regroups(source, target):
        note = (
            f"{shape_text(source)} -> {shape_text(target)} splits or merges axes in memory "
            "order (attention heads), as Model Garden's BERT converter reshapes"
        )
        return [{"reshape": list(target), "note": note}], None
    return [{"reshape": list(target)}], (
        f"reshape {shape_text(source)} -> {shape_text(target)} keeps the values in memory order; "
        "check the layout"
    )
