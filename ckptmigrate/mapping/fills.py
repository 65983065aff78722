"""New values: the fills a map's ``init``, ``pad`` and ``remap_rows`` write into new cells."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import dtypes

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "FILL_KINDS",
    "OPTIMIZER_STATE",
    "Fill",
    "SlotKind",
    "fill_value_problem",
    "make_fill",
    "slot_kind",
]

FILL_KINDS = ("zeros", "ones", "constant", "normal", "truncated_normal", "glorot_uniform", "mean")


@dataclass(frozen=True, slots=True)
class Fill:
    """How new cells are filled: a constant, a seeded random initialiser, or the mean of
    what the variable already holds."""

    kind: str = "zeros"
    value: float = 0.0  # a YAML integer stays an int: 2**63 - 1 is exact in int64
    mean: float = 0.0
    stddev: float = 0.05
    seed: int | None = None


def fill_value_problem(fill: Fill, dtype: str) -> str | None:
    """Why ``fill``'s constant cannot be stored in ``dtype`` as written (None: it can).

    numpy's cast does not refuse: ``inf`` into int64 became INT64_MIN, 300 into uint8 44,
    1e6 into float16 inf. Integers and bools take whole numbers in their range, floats any
    value they can hold (inf and nan as written, a finite value only below their maximum).
    """
    known = dtypes.BY_NAME.get(dtype)
    if fill.kind != "constant" or known is None or known.itemsize is None:
        return None  # strings and opaque dtypes have no numeric range to check
    import numpy as np

    target = dtypes.numpy_dtype(known)
    value = fill.value
    if target.kind in "iub":
        whole = isinstance(value, int) or (math.isfinite(value) and value == int(value))
        if not whole:
            return f"fill value {value} is not a whole number, and {dtype} holds whole numbers"
        if target.kind == "b":
            low, high = 0, 1
        else:
            info = np.iinfo(target.name)
            low, high = int(info.min), int(info.max)
        if not low <= value <= high:
            return f"fill value {value} does not fit {dtype} ({low}..{high})"
        return None
    if target.kind in "fV":  # float, and ml_dtypes' bfloat16 and float8 types
        try:
            as_float = float(value)
        except OverflowError:  # an integer beyond every float
            return f"fill value {value} is beyond the largest {dtype}"
        with np.errstate(all="ignore"):
            stored = float(np.asarray(as_float).astype(target))
        if math.isfinite(as_float) and not math.isfinite(stored):
            return f"fill value {value} is beyond the largest {dtype}"
    return None


def _rng(fill: Fill, name: str) -> np.random.Generator:
    import numpy as np

    # Unseeded fills still reproduce run to run: the seed comes from the variable's name.
    seed = fill.seed if fill.seed is not None else zlib.crc32(name.encode())
    return np.random.default_rng(seed)


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    # Keras' glorot convention: rank-2 (in, out); convolutions multiply by the receptive field.
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


# The fill of new cells in an optimizer slot that follows its variable's pad or row remap
# (not a kind users write: their fill is meant for the variable, e.g. glorot_uniform).
OPTIMIZER_STATE = "optimizer_state"


@dataclass(frozen=True, slots=True)
class SlotKind:
    """What an optimizer creates for a new variable in one of its slots."""

    optimizer: str
    slot: str  # the slot, or the optimizer's parameter that sets its start
    start: float  # the value every cell of a new slot starts at (the optimizer's default)
    positive: bool = False  # the update divides by it: it must stay above zero


_ACCUMULATOR = "initial_accumulator_value"
# TF1 slots are named `<variable>/<optimizer name>[_N]`, N counting the optimizer's slots in
# the order it creates them; TF2 (Keras optimizer v2) slots `.../.OPTIMIZER_SLOT/<opt>/<slot>`.
_TF1_SLOTS = {
    "Adagrad": SlotKind("Adagrad", _ACCUMULATOR, 0.1, positive=True),
    "ProximalAdagrad": SlotKind("ProximalAdagrad", _ACCUMULATOR, 0.1, positive=True),
    "AdagradDA": SlotKind("AdagradDA", "gradient_accumulator", 0.0),
    "AdagradDA_1": SlotKind(
        "AdagradDA", "initial_gradient_squared_accumulator_value", 0.1, positive=True
    ),
    "Ftrl": SlotKind("Ftrl", _ACCUMULATOR, 0.1, positive=True),
    "Ftrl_1": SlotKind("Ftrl", "linear", 0.0),
    "RMSProp": SlotKind("RMSProp", "rms", 1.0, positive=True),  # TF1 starts rms at ones
    "RMSProp_1": SlotKind("RMSProp", "momentum (mg when centered)", 0.0),
    "RMSProp_2": SlotKind("RMSProp", "momentum", 0.0),
    "Adam": SlotKind("Adam", "m", 0.0),
    "Adam_1": SlotKind("Adam", "v", 0.0),
    "Momentum": SlotKind("Momentum", "momentum", 0.0),
    "Adadelta": SlotKind("Adadelta", "accum", 0.0),
    "Adadelta_1": SlotKind("Adadelta", "accum_update", 0.0),
}
_TF2_SLOTS = {
    # Keras' Adagrad and Ftrl both start `accumulator` at initial_accumulator_value=0.1.
    "accumulator": SlotKind("Adagrad/Ftrl", _ACCUMULATOR, 0.1, positive=True),
    "linear": SlotKind("Ftrl", "linear", 0.0),
    "m": SlotKind("Adam", "m", 0.0),
    "v": SlotKind("Adam", "v", 0.0),
    "vhat": SlotKind("Adam", "vhat", 0.0),
    "momentum": SlotKind("SGD/RMSprop", "momentum", 0.0),
    "rms": SlotKind("RMSprop", "rms", 0.0),  # Keras' RMSprop, unlike TF1's, starts at 0
    "mg": SlotKind("RMSprop", "mg", 0.0),
    "accum_grad": SlotKind("Adadelta", "accum_grad", 0.0),
    "accum_var": SlotKind("Adadelta", "accum_var", 0.0),
}
_TF2_SLOT_MARKER = "/.OPTIMIZER_SLOT/"


def slot_kind(name: str) -> SlotKind | None:
    """The kind of optimizer slot ``name`` is, by the name TensorFlow gives it
    (``dense/kernel/Adagrad``, ``.../kernel/t_0/Ftrl_1``,
    ``dense/kernel/.OPTIMIZER_SLOT/optimizer/m``); None for names no known optimizer makes
    (a TF1 optimizer created with its own ``name=``, a Keras 3 ``optimizer/vars/3``)."""
    name = name.removesuffix("/.ATTRIBUTES/VARIABLE_VALUE")
    last = name.rsplit("/", 1)[-1]
    if _TF2_SLOT_MARKER in name:
        return _TF2_SLOTS.get(last)
    return _TF1_SLOTS.get(last)


def make_fill(
    fill: Fill, shape: tuple[int, ...], dtype: str, name: str, existing: np.ndarray | None = None
) -> np.ndarray:
    """New values: constants, seeded random initialisers, or the mean of ``existing``."""
    import numpy as np

    target = dtypes.numpy_dtype(dtypes.BY_NAME[dtype])
    if fill.kind in ("zeros", "ones", "constant"):
        value = {"zeros": 0, "ones": 1}.get(fill.kind, fill.value)
        if target.kind in "iub":  # a whole number in range (fill_value_problem), kept exact
            return np.full(shape, int(value), dtype=target)
        return np.full(shape, float(value)).astype(target)
    if fill.kind == "mean":
        base = 0.0 if existing is None or existing.size == 0 else float(np.mean(existing))
        return np.full(shape, base).astype(target)
    if fill.kind == OPTIMIZER_STATE:
        # What the optimizer gives a new variable: its start value for a known slot
        # (Adagrad's accumulator 0.1, Ftrl's linear 0, Adam's moments 0); an unknown
        # slot gets the mean of its cells where every one is positive (an accumulator the
        # update divides by), zeros otherwise.
        kind = slot_kind(name)
        if kind is not None:
            return np.full(shape, kind.start).astype(target)
        positive = existing is not None and existing.size > 0 and bool(np.all(existing > 0))
        base = float(np.mean(existing)) if positive and existing is not None else 0.0
        return np.full(shape, base).astype(target)
    rng = _rng(fill, name)
    if fill.kind == "normal":
        values = rng.normal(fill.mean, fill.stddev, size=shape)
    elif fill.kind == "truncated_normal":
        values = rng.normal(0.0, 1.0, size=shape)
        outside = np.abs(values) > 2.0
        while outside.any():  # redraw beyond two standard deviations, as TF's initialiser
            values[outside] = rng.normal(0.0, 1.0, size=int(outside.sum()))
            outside = np.abs(values) > 2.0
        values = fill.mean + fill.stddev * values
    else:  # glorot_uniform
        fan_in, fan_out = _fans(shape)
        limit = math.sqrt(6.0 / max(1, fan_in + fan_out))
        values = rng.uniform(-limit, limit, size=shape)
    return np.asarray(values).astype(target)
