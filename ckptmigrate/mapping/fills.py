"""New values: the fills a map's ``init``, ``pad`` and ``remap_rows`` write into new cells."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import dtypes

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FILL_KINDS", "OPTIMIZER_STATE", "Fill", "make_fill"]

FILL_KINDS = ("zeros", "ones", "constant", "normal", "truncated_normal", "glorot_uniform", "mean")


@dataclass(frozen=True, slots=True)
class Fill:
    """How new cells are filled: a constant, a seeded random initialiser, or the mean of
    what the variable already holds."""

    kind: str = "zeros"
    value: float = 0.0
    mean: float = 0.0
    stddev: float = 0.05
    seed: int | None = None


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


def make_fill(
    fill: Fill, shape: tuple[int, ...], dtype: str, name: str, existing: np.ndarray | None = None
) -> np.ndarray:
    """New values: constants, seeded random initialisers, or the mean of ``existing``."""
    import numpy as np

    target = dtypes.numpy_dtype(dtypes.BY_NAME[dtype])
    if fill.kind in ("zeros", "ones", "constant"):
        value = {"zeros": 0.0, "ones": 1.0}.get(fill.kind, fill.value)
        return np.full(shape, value).astype(target)
    if fill.kind == "mean":
        base = 0.0 if existing is None or existing.size == 0 else float(np.mean(existing))
        return np.full(shape, base).astype(target)
    if fill.kind == OPTIMIZER_STATE:
        # Accumulators (Adagrad, RMSProp, Ftrl) must stay positive: their mean where every
        # existing value is; momenta and moments start fresh at zero.
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
