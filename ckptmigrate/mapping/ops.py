"""What map operations do to shapes (at plan time) and to values (at convert time)."""

from __future__ import annotations

import math
import zlib
from typing import TYPE_CHECKING, Any

from .. import dtypes
from .schema import (
    AddToBlock,
    Cast,
    Fill,
    Pad,
    RemapRows,
    ReorderBlocks,
    Reshape,
    Resize,
    SizeExpr,
    Slice,
    SplitPart,
    SplitSize,
    Transpose,
)

if TYPE_CHECKING:
    import numpy as np

ShapeOp = (
    Slice
    | Pad
    | Reshape
    | Transpose
    | Cast
    | Resize
    | RemapRows
    | SplitPart
    | ReorderBlocks
    | AddToBlock
)


class OpError(ValueError):
    """An operation that cannot apply to this variable; the planner adds rule and name."""


def _shape_probe(shape: tuple[int, ...]) -> np.ndarray:
    import numpy as np

    # A zero-stride view has any shape at no memory cost: numpy then does the index maths.
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.int8), shape, (0,) * len(shape))


def result_shape(op: ShapeOp, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape ``op`` produces from ``shape``, or OpError saying why it can't."""
    if isinstance(op, Slice):
        try:
            return tuple(int(d) for d in _shape_probe(shape)[op.index].shape)
        except IndexError as e:
            raise OpError(f"slice {op.text} does not fit shape {list(shape)}: {e}") from None
    if isinstance(op, Pad):
        if len(op.shape) != len(shape):
            raise OpError(
                f"pad to {list(op.shape)} has rank {len(op.shape)}, the variable "
                f"{list(shape)} rank {len(shape)}"
            )
        smaller = [i for i, (new, old) in enumerate(zip(op.shape, shape, strict=True)) if new < old]
        if smaller:
            raise OpError(
                f"pad only grows: {list(op.shape)} is smaller than {list(shape)} on "
                f"axis {smaller[0]} (use slice to shrink)"
            )
        return op.shape
    if isinstance(op, Reshape):
        total = math.prod(shape)
        known = math.prod(d for d in op.shape if d != -1)
        if -1 in op.shape:
            if known == 0 or total % known:
                raise OpError(
                    f"cannot reshape {list(shape)} ({total} elements) to {list(op.shape)}"
                )
            return tuple(total // known if d == -1 else d for d in op.shape)
        if known != total:
            raise OpError(
                f"cannot reshape {list(shape)} ({total} elements) to {list(op.shape)} "
                f"({known} elements)"
            )
        return op.shape
    if isinstance(op, Transpose):
        if len(op.perm) != len(shape):
            raise OpError(
                f"transpose {list(op.perm)} needs rank {len(op.perm)}, the variable "
                f"{list(shape)} has rank {len(shape)}"
            )
        return tuple(shape[i] for i in op.perm)
    if isinstance(op, Resize):
        if len(op.shape) != len(shape):
            raise OpError(
                f"resize to {list(op.shape)} has rank {len(op.shape)}, the variable "
                f"{list(shape)} rank {len(shape)} (reshape first for a grid)"
            )
        if any(d == 0 for d in shape):
            raise OpError(f"cannot interpolate an empty tensor {list(shape)}")
        return op.shape
    if isinstance(op, RemapRows):
        axis = _axis(op.axis, shape)
        if shape[axis] != len(op.old_vocab):
            raise OpError(
                f"axis {op.axis} has {shape[axis]} rows but the old vocabulary "
                f"{op.old_path} has {len(op.old_vocab)} tokens"
            )
        return (*shape[:axis], len(op.new_vocab), *shape[axis + 1 :])
    if isinstance(op, SplitPart):
        axis = _axis(op.axis, shape)
        return (*shape[:axis], op.stop - op.start, *shape[axis + 1 :])
    if isinstance(op, ReorderBlocks):
        _block_size(op.axis, shape, len(op.order), "reorder_blocks")
        return shape
    if isinstance(op, AddToBlock):
        _block_size(op.axis, shape, op.blocks, "add_to_block")
        return shape
    return shape  # Cast


def _block_size(axis: int, shape: tuple[int, ...], blocks: int, what: str) -> int:
    length = shape[_axis(axis, shape)]
    if length % blocks:
        raise OpError(
            f"{what}: axis {axis} of {list(shape)} ({length}) does not cut into {blocks} "
            "equal blocks"
        )
    return length // blocks


def _axis(axis: int, shape: tuple[int, ...]) -> int:
    if not -len(shape) <= axis < len(shape):
        raise OpError(f"axis {axis} is out of range for shape {list(shape)}")
    return axis % len(shape)


def split_bounds(
    axis: int, shape: tuple[int, ...], parts: int, sizes: tuple[SplitSize, ...] | None
) -> list[tuple[int, int]]:
    """[start, stop) of each part of a split along ``axis``; sizes may be expressions over
    the shape and one -1 (the rest), resolved here against this variable's shape."""
    length = shape[_axis(axis, shape)]
    if sizes is None:
        if length % parts:
            raise OpError(
                f"axis {axis} of {list(shape)} ({length}) does not split into "
                f"{parts} equal parts (give sizes:)"
            )
        resolved = [length // parts] * parts
    else:
        resolved = _resolve_sizes(axis, shape, sizes)
    if sum(resolved) != length:
        raise OpError(
            f"split sizes {_sizes_text(sizes, resolved)} add up to {sum(resolved)}, "
            f"axis {axis} of {list(shape)} is {length}"
        )
    bounds, start = [], 0
    for size in resolved:
        bounds.append((start, start + size))
        start += size
    return bounds


def _resolve_sizes(axis: int, shape: tuple[int, ...], sizes: tuple[SplitSize, ...]) -> list[int]:
    resolved = [size_value(s, shape) if isinstance(s, SizeExpr) else s for s in sizes]
    for size, value in zip(sizes, resolved, strict=True):
        if isinstance(size, SizeExpr) and value < 1:
            raise OpError(
                f"split size {size.text!r} is {value} for shape {list(shape)}; parts need "
                "at least one element"
            )
    if -1 not in sizes:
        return resolved
    # Every other size is >= 1 now, so "the rest" is whatever they leave of the axis.
    length = shape[_axis(axis, shape)]
    rest = length - sum(v for s, v in zip(sizes, resolved, strict=True) if s != -1)
    if rest < 1:
        raise OpError(
            f"split sizes {_sizes_text(sizes, resolved)} leave {rest} for the -1 part, "
            f"axis {axis} of {list(shape)} is {length}"
        )
    return [rest if s == -1 else v for s, v in zip(sizes, resolved, strict=True)]


def _sizes_text(sizes: tuple[SplitSize, ...] | None, resolved: list[int]) -> str:
    if sizes is None or not any(isinstance(s, SizeExpr) or s == -1 for s in sizes):
        return str(resolved)
    shown = [
        f"{s.text}={v}" if isinstance(s, SizeExpr) else "-1" if s == -1 else str(v)
        for s, v in zip(sizes, resolved, strict=True)
    ]
    return f"[{', '.join(shown)}]"


def size_value(expr: SizeExpr, shape: tuple[int, ...]) -> int:
    """Evaluate a split size expression against a shape (OpError if it does not apply)."""
    return _evaluate(expr.text, expr.tree, shape)


def _evaluate(text: str, tree: tuple[Any, ...], shape: tuple[int, ...]) -> int:
    kind = tree[0]
    if kind == "int":
        return int(tree[1])
    if kind == "dim":
        axis = int(tree[1])
        if axis >= len(shape):
            raise OpError(
                f"split size {text!r} reads dim{axis}, the variable {list(shape)} has "
                f"rank {len(shape)}"
            )
        return shape[axis]
    left, right = _evaluate(text, tree[1], shape), _evaluate(text, tree[2], shape)
    if kind == "+":
        return left + right
    if kind == "-":
        return left - right
    if kind == "*":
        return left * right
    if right == 0 or left % right:
        raise OpError(
            f"split size {text!r} divides {left} by {right} for shape {list(shape)}, "
            "which is not a whole number"
        )
    return left // right


def result_dtype(op: ShapeOp, dtype: str) -> str:
    if isinstance(op, AddToBlock) and dtypes.BY_NAME[dtype].name not in _ADDABLE:
        raise OpError(f"add_to_block adds to floating-point variables, this one is {dtype}")
    if isinstance(op, Cast):
        if dtypes.BY_NAME[dtype].itemsize is None:
            raise OpError(f"cannot cast a {dtype} tensor")
        return op.dtype
    return dtype


# Integers would need overflow and rounding rules; the constants this op exists for
# (biases a cell adds at run time) are floating point.
_ADDABLE = frozenset({"float16", "bfloat16", "float32", "float64", "complex64", "complex128"})


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


def apply(op: ShapeOp, value: np.ndarray, name: str) -> np.ndarray:
    """Apply one operation to a value (a new array; the input is not modified)."""
    import numpy as np

    if isinstance(op, Slice):
        return np.array(value[op.index])
    if isinstance(op, Pad):
        existing = value if op.fill.kind in ("mean", OPTIMIZER_STATE) else None
        out = make_fill(op.fill, op.shape, _dtype_name(value), name, existing)
        out[tuple(slice(0, d) for d in value.shape)] = value
        return out
    if isinstance(op, Reshape):
        return np.array(value.reshape(op.shape))
    if isinstance(op, Transpose):
        return np.ascontiguousarray(np.transpose(value, op.perm))
    if isinstance(op, SplitPart):
        index = [slice(None)] * value.ndim
        index[op.axis] = slice(op.start, op.stop)
        return np.array(value[tuple(index)])
    if isinstance(op, Resize):
        return resize(value, op.shape, op.method)
    if isinstance(op, RemapRows):
        return remap_rows(value, op, name)
    if isinstance(op, ReorderBlocks):
        return reorder_blocks(value, op)
    if isinstance(op, AddToBlock):
        return add_to_block(value, op)
    return cast(value, op)


def reorder_blocks(value: np.ndarray, op: ReorderBlocks) -> np.ndarray:
    """Block i of the result is block op.order[i] of ``value`` along op.axis."""
    import numpy as np

    axis = op.axis % value.ndim
    blocks = np.split(value, len(op.order), axis=axis)
    return np.ascontiguousarray(np.concatenate([blocks[i] for i in op.order], axis=axis))


def add_to_block(value: np.ndarray, op: AddToBlock) -> np.ndarray:
    """``value`` with op.value added to block op.block of op.blocks along op.axis."""
    import numpy as np

    axis = op.axis % value.ndim
    size = value.shape[axis] // op.blocks
    out = np.array(value)
    index = [slice(None)] * value.ndim
    index[axis] = slice(op.block * size, (op.block + 1) * size)
    # Added in the variable's own dtype, as the cell adds the constant at run time.
    out[tuple(index)] += np.asarray(op.value).astype(value.dtype)
    return out


def resize(value: np.ndarray, shape: tuple[int, ...], method: str) -> np.ndarray:
    """Separable interpolation, one axis at a time, corners aligned (the first and last
    rows keep their values), e.g. position embeddings for a longer sequence."""
    import numpy as np

    out: Any = value.astype(np.complex128 if value.dtype.kind == "c" else np.float64)
    for axis, size in enumerate(shape):
        old = out.shape[axis]
        if old == size:
            continue
        where = np.linspace(0.0, old - 1, size) if size > 1 else np.zeros(1)
        if method == "nearest" or old == 1:
            out = np.take(out, np.rint(where).astype(np.int64), axis=axis)
            continue
        low = np.floor(where).astype(np.int64)
        high = np.minimum(low + 1, old - 1)
        weight_shape = [1] * out.ndim
        weight_shape[axis] = size
        weight = (where - low).reshape(weight_shape)
        out = np.take(out, low, axis=axis) * (1 - weight) + np.take(out, high, axis=axis) * weight
    result: np.ndarray = np.asarray(out).astype(value.dtype)
    return result


def remap_rows(value: np.ndarray, op: RemapRows, name: str) -> np.ndarray:
    """Row i of the result is the old row of new_vocab[i]; new tokens get the fill."""
    import numpy as np

    axis = op.axis % value.ndim
    moved = np.moveaxis(value, axis, 0)
    shape = (len(op.new_vocab), *moved.shape[1:])
    out = make_fill(op.fill, shape, _dtype_name(value), name, existing=moved)
    old_index = {token: i for i, token in enumerate(op.old_vocab)}
    pairs = [(i, old_index[t]) for i, t in enumerate(op.new_vocab) if t in old_index]
    if pairs:
        new_rows, old_rows = zip(*pairs, strict=True)
        out[list(new_rows)] = moved[list(old_rows)]
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))


def _dtype_name(value: np.ndarray) -> str:
    return dtypes.from_numpy(value.dtype).name


def cast(value: np.ndarray, op: Cast) -> np.ndarray:
    """Cast, refusing values that overflow or lose precision unless the rule allows it."""
    import numpy as np

    target = dtypes.numpy_dtype(dtypes.BY_NAME[op.dtype])
    with np.errstate(all="ignore"):
        out = value.astype(target)
        back = out.astype(value.dtype)
        real = np.real(value).astype(np.float64) if value.dtype.kind != "b" else value
        finite = np.isfinite(real) if value.dtype.kind != "b" else np.ones(value.shape, bool)
        if target.kind in "iu":
            info = np.iinfo(target)  # type: ignore[type-var]
            over = ~finite | (real < info.min) | (real > info.max)
        elif target.kind == "b":
            over = np.zeros(value.shape, bool)
        else:
            over = finite & ~np.isfinite(np.real(out).astype(np.float64))
    _refuse(over, value, f"casting to {op.dtype} overflows", "allow_overflow", op.allow_overflow)
    same = back == value
    if value.dtype.kind in "fc":
        same |= np.isnan(real) & np.isnan(np.real(back).astype(np.float64))
    _refuse(
        ~same & ~over,
        value,
        f"casting to {op.dtype} changes",
        "allow_precision_loss",
        op.allow_precision_loss,
    )
    return out


def _refuse(bad: np.ndarray, value: np.ndarray, what: str, flag: str, allowed: bool) -> None:
    import numpy as np

    if allowed or not bad.any():
        return
    example = value.reshape(-1)[int(np.argmax(bad.reshape(-1)))]
    raise OpError(f"{what} {int(bad.sum())} value(s), e.g. {example!r} ({flag}: true to accept)")


def describe(op: Any) -> str:
    """One-line wording of an operation for plans and provenance."""
    from .schema import Drop, Rename

    if isinstance(op, Rename):
        return f"rename -> {op.text}"
    if isinstance(op, Drop):
        return "drop"
    if isinstance(op, Slice):
        return f"slice {op.text}"
    if isinstance(op, Pad):
        return f"pad to {list(op.shape)} with {op.fill.kind}"
    if isinstance(op, Reshape):
        return f"reshape to {list(op.shape)}"
    if isinstance(op, Transpose):
        return f"transpose {list(op.perm)}"
    if isinstance(op, Cast):
        return f"cast to {op.dtype}"
    if isinstance(op, SplitPart):
        return f"split part [{op.start}:{op.stop}] of axis {op.axis}"
    if isinstance(op, Resize):
        return f"resize to {list(op.shape)} ({op.method})"
    if isinstance(op, RemapRows):
        return f"remap rows {op.old_path} -> {op.new_path} ({op.fill.kind} for new tokens)"
    if isinstance(op, ReorderBlocks):
        return f"reorder {len(op.order)} blocks of axis {op.axis} as {list(op.order)}"
    if isinstance(op, AddToBlock):
        return f"add {op.value:g} to block {op.block} of {op.blocks} along axis {op.axis}"
    return type(op).__name__.lower()
