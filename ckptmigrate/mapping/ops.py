"""What a map's operations are and what they do: each operation is a frozen type that owns
its behaviour (its result shape and dtype at plan time, its value at convert time, how it
reads in a plan, and whether it follows a variable to its optimizer slots), so an operation
that forgets one cannot be built (an abstract method) and no dispatch falls through."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .. import dtypes
from .exprs import ExprError, Size, SizeExpr, SplitSize, resolve, resolve_index, size_value
from .fills import OPTIMIZER_STATE, Fill, fill_value_problem, make_fill
from .template import Template

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "AddToBlock",
    "Cast",
    "Drop",
    "OpError",
    "Operation",
    "Pad",
    "RemapRows",
    "Rename",
    "ReorderBlocks",
    "Replace",
    "Reshape",
    "Resize",
    "Slice",
    "Split",
    "SplitPart",
    "Transpose",
    "ValueOp",
    "split_bounds",
]


class OpError(ValueError):
    """An operation that cannot apply to this variable; the planner adds rule and name."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def _fill_fits(what: str, fill: Fill, dtype: str) -> str:
    """``dtype``, if the fill's constant can be stored in it (OpError otherwise)."""
    problem = fill_value_problem(fill, dtype)
    if problem is not None:
        raise OpError(
            f"{what}: {problem}",
            hint="give a value the variable's dtype holds (numpy's cast would wrap or "
            "saturate it), or cast the variable first.",
        )
    return dtype


class Operation(ABC):
    """What a rule does to the variables it selects."""

    __slots__ = ()

    @abstractmethod
    def describe(self) -> str:
        """One-line wording for plans and provenance."""


class ValueOp(Operation):
    """An operation on a variable's value: its shape and dtype are known at plan time, its
    value is computed at convert time."""

    __slots__ = ()

    @abstractmethod
    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape this produces from ``shape``, or OpError saying why it can't."""

    def result_dtype(self, dtype: str) -> str:
        """The dtype this produces from ``dtype`` (most operations keep it)."""
        return dtype

    @abstractmethod
    def apply(self, value: np.ndarray, name: str) -> np.ndarray:
        """This operation applied to ``value`` of variable ``name`` (a new array; the input
        is not modified)."""

    @abstractmethod
    def for_slot(self) -> ValueOp | None:
        """This operation as it applies to an optimizer slot following its variable (None:
        the slot keeps its value). Layout changes apply as they are; new cells get
        optimizer-state values, not the variable's initialiser."""


# -- naming and structure: the planner carries these out itself ------------------------


@dataclass(frozen=True, slots=True)
class Rename(Operation):
    template: Template
    text: str

    def describe(self) -> str:
        return f"rename -> {self.text}"


@dataclass(frozen=True, slots=True)
class Replace(Operation):
    """A rename that replaces every occurrence of ``old`` in the name with ``new`` (as
    converters written with ``str.replace`` do)."""

    old: str
    new: str

    def describe(self) -> str:
        return f"replace {self.old!r} -> {self.new!r}"


@dataclass(frozen=True, slots=True)
class Drop(Operation):
    def describe(self) -> str:
        return "drop"


@dataclass(frozen=True, slots=True)
class Split(Operation):
    """One variable into several along ``axis``: equal parts, or ``sizes``. The planner
    turns it into one :class:`SplitPart` per output."""

    axis: int
    into: tuple[Template, ...]
    into_text: tuple[str, ...]
    sizes: tuple[SplitSize, ...] | None = None

    def describe(self) -> str:
        return f"split along axis {self.axis} into {', '.join(self.into_text)}"


# -- operations on values ----------------------------------------------------------------


def _sizes(sizes: tuple[Size, ...]) -> str:
    """Sizes as written: ``[12, dim1/heads]``."""
    return "[" + ", ".join(s.text if isinstance(s, SizeExpr) else str(s) for s in sizes) + "]"


def _shape_probe(shape: tuple[int, ...]) -> np.ndarray:
    import numpy as np

    # A zero-stride view has any shape at no memory cost: numpy then does the index maths.
    return np.lib.stride_tricks.as_strided(np.zeros(1, np.int8), shape, (0,) * len(shape))


@dataclass(frozen=True, slots=True)
class Slice(ValueOp):
    index: tuple[Any, ...]  # ints, slices, Ellipsis; bounds may be size expressions
    text: str

    def _resolved(self, shape: tuple[int, ...]) -> tuple[Any, ...]:
        try:
            return resolve_index(self.index, shape)
        except ExprError as e:
            raise OpError(f"slice {self.text}: {e}") from None

    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        index = self._resolved(shape)
        try:
            return tuple(int(d) for d in _shape_probe(shape)[index].shape)
        except IndexError as e:
            raise OpError(f"slice {self.text} does not fit shape {list(shape)}: {e}") from None

    def apply(self, value: np.ndarray, name: str) -> np.ndarray:
        import numpy as np

        return np.array(value[self._resolved(value.shape)])

    def for_slot(self) -> ValueOp:
        return self

    def describe(self) -> str:
        return f"slice {self.text}"


@dataclass(frozen=True, slots=True)
class Pad(ValueOp):
    sizes: tuple[Size, ...]  # numbers, or expressions over the variable's shape
    fill: Fill

    def _target(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        try:
            return resolve(self.sizes, shape)
        except ExprError as e:
            raise OpError(f"pad: {e}") from None

    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        target = self._target(shape)
        if len(target) != len(shape):
            raise OpError(
                f"pad to {list(target)} has rank {len(target)}, the variable "
                f"{list(shape)} rank {len(shape)}"
            )
        smaller = [i for i, (new, old) in enumerate(zip(target, shape, strict=True)) if new < old]
        if smaller:
            raise OpError(
                f"pad only grows: {list(target)} is smaller than {list(shape)} on "
                f"axis {smaller[0]} (use slice to shrink)"
            )
        return target

    def result_dtype(self, dtype: str) -> str:
        return _fill_fits("pad", self.fill, dtype)

    def apply(self, value: np.ndarray, name: str) -> np.ndarray:
        existing = value if self.fill.kind in ("mean", OPTIMIZER_STATE) else None
        target = self._target(value.shape)
        out = make_fill(self.fill, target, _dtype_name(value), name, existing)
        out[tuple(slice(0, d) for d in value.shape)] = value
        return out

    def for_slot(self) -> ValueOp:
        return replace(self, fill=Fill(OPTIMIZER_STATE))

    def describe(self) -> str:
        return f"pad to {_sizes(self.sizes)} with {self.fill.kind}"


@dataclass(frozen=True, slots=True)
class Reshape(ValueOp):
    sizes: tuple[Size, ...]  # numbers (one may be -1), or expressions over the shape

    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        try:
            wanted = resolve(self.sizes, shape)
        except ExprError as e:
            raise OpError(f"reshape: {e}") from None
        total = math.prod(shape)
        known = math.prod(d for d in wanted if d != -1)
        if any(d < -1 for d in wanted) or wanted.count(-1) > 1:
            raise OpError(f"cannot reshape {list(shape)} to {list(wanted)}")
        if -1 in wanted:
            if known == 0 or total % known:
                raise OpError(f"cannot reshape {list(shape)} ({total} elements) to {list(wanted)}")
            return tuple(total // known if d == -1 else d for d in wanted)
        if known != total:
            raise OpError(
                f"cannot reshape {list(shape)} ({total} elements) to {list(wanted)} "
                f"({known} elements)"
            )
        return wanted

    def apply(self, value: np.ndarray, name: str) -> np.ndarray:
        import numpy as np

        return np.array(value.reshape(self.result_shape(value.shape)))

    def for_slot(self) -> ValueOp:
        return self

    def describe(self) -> str:
        return f"reshape to {_sizes(self.sizes)}"


@dataclass(frozen=True, slots=True)
class Transpose(ValueOp):
    perm: tuple[int, ...]

    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(self.perm) != len(shape):
            raise OpError(
                f"transpose {list(self.perm)} needs rank {len(self.perm)}, the variable "
                f"{list(shape)} has rank {len(shape)}"
            )
        return tuple(shape[i] for i in self.perm)

    def apply(self, value: np.ndarray, name: str) -> np.ndarray:
        import numpy as np

        return np.ascontiguousarray(np.transpose(value, self.perm))

    def for_slot(self) -> ValueOp:
        return self

    def describe(self) -> str:
        return f"transpose {list(self.perm)}"


@dataclass(frozen=True, slots=True)
class Cast(ValueOp):
    dtype: str
    allow_overflow: bool = False
    allow_precision_loss: bool = False

    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape

    def result_dtype(self, dtype: str) -> str:
        if dtypes.BY_NAME[dtype].itemsize is None:
            raise OpError(f"cannot cast a {dtype} tensor")
        return self.dtype

    def apply(self, value: np.ndarray, name: str) -> np.ndarray:
        return cast(value, self)

    def for_slot(self) -> ValueOp:
        return self

    def describe(self) -> str:
        return f"cast to {self.dtype}"


@dataclass(frozen=True, slots=True)
class SplitPart(ValueOp):
    """The planner's record of one output of a Split: elements [start, stop) of ``axis``."""

    axis: int
    start: int
    stop: int

    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        axis = _axis(self.axis, shape)
        return (*shape[:axis], self.stop - self.start, *shape[axis + 1 :])

    def apply(self, value: np.ndarray, name: str) -> np.ndarray:
        import numpy as np

        index = [slice(None)] * value.ndim
        index[self.axis] = slice(self.start, self.stop)
        return np.array(value[tuple(index)])

    def for_slot(self) -> ValueOp:
        return self

    def describe(self) -> str:
        return f"split part [{self.start}:{self.stop}] of axis {self.axis}"


@dataclass(frozen=True, slots=True)
class Resize(ValueOp):
    shape: tuple[int, ...]
    method: str = "linear"

    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(self.shape) != len(shape):
            raise OpError(
                f"resize to {list(self.shape)} has rank {len(self.shape)}, the variable "
                f"{list(shape)} rank {len(shape)} (reshape first for a grid)"
            )
        if any(d == 0 for d in shape):
            raise OpError(f"cannot interpolate an empty tensor {list(shape)}")
        return self.shape

    def apply(self, value: np.ndarray, name: str) -> np.ndarray:
        return resize(value, self.shape, self.method)

    def for_slot(self) -> ValueOp:
        return self

    def describe(self) -> str:
        return f"resize to {list(self.shape)} ({self.method})"


@dataclass(frozen=True, slots=True)
class RemapRows(ValueOp):
    """Move each row (along ``axis``) to its token's index in the new vocabulary."""

    old_vocab: tuple[str, ...]
    new_vocab: tuple[str, ...]
    axis: int
    fill: Fill
    old_path: str
    new_path: str

    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        axis = _axis(self.axis, shape)
        if shape[axis] != len(self.old_vocab):
            raise OpError(
                f"axis {self.axis} has {shape[axis]} rows but the old vocabulary "
                f"{self.old_path} has {len(self.old_vocab)} tokens"
            )
        return (*shape[:axis], len(self.new_vocab), *shape[axis + 1 :])

    def result_dtype(self, dtype: str) -> str:
        return _fill_fits("remap_rows", self.fill, dtype)

    def apply(self, value: np.ndarray, name: str) -> np.ndarray:
        return remap_rows(value, self, name)

    def for_slot(self) -> ValueOp:
        return replace(self, fill=Fill(OPTIMIZER_STATE))

    def describe(self) -> str:
        return f"remap rows {self.old_path} -> {self.new_path} ({self.fill.kind} for new tokens)"


@dataclass(frozen=True, slots=True)
class ReorderBlocks(ValueOp):
    """Cut ``axis`` into ``len(order)`` equal blocks; block i of the result is block
    ``order[i]`` of the input (gate order of fused RNN kernels)."""

    axis: int
    order: tuple[int, ...]

    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _block_size(self.axis, shape, len(self.order), "reorder_blocks")
        return shape

    def apply(self, value: np.ndarray, name: str) -> np.ndarray:
        return reorder_blocks(value, self)

    def for_slot(self) -> ValueOp:
        return self

    def describe(self) -> str:
        return f"reorder {len(self.order)} blocks of axis {self.axis} as {list(self.order)}"


@dataclass(frozen=True, slots=True)
class AddToBlock(ValueOp):
    """Cut ``axis`` into ``blocks`` equal blocks and add ``value`` to block ``block``
    (a constant a cell adds at run time, such as TF1 LSTM's forget_bias)."""

    axis: int
    blocks: int
    block: int
    value: float

    def result_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _block_size(self.axis, shape, self.blocks, "add_to_block")
        return shape

    def result_dtype(self, dtype: str) -> str:
        if dtypes.BY_NAME[dtype].name not in _ADDABLE:
            raise OpError(f"add_to_block adds to floating-point variables, this one is {dtype}")
        return dtype

    def apply(self, value: np.ndarray, name: str) -> np.ndarray:
        return add_to_block(value, self)

    def for_slot(self) -> None:
        return None  # a constant added to the model's computation is no optimizer state

    def describe(self) -> str:
        return f"add {self.value:g} to block {self.block} of {self.blocks} along axis {self.axis}"


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
    try:
        resolved = [size_value(s, shape) if isinstance(s, SizeExpr) else s for s in sizes]
    except ExprError as e:
        raise OpError(str(e)) from None
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


# Integers would need overflow and rounding rules; the constants this op exists for
# (biases a cell adds at run time) are floating point.
_ADDABLE = frozenset({"float16", "bfloat16", "float32", "float64", "complex64", "complex128"})


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
