"""Which dataset of a Keras 3 ``.weights.h5`` file holds which variable of a model.

That file keeps weights by position (``layers/dense_1/vars/0``), and the positions follow
Keras' internal walk of the model, which changes between Keras versions. Rather than
re-implementing that walk, :func:`keras_layout` asks Keras itself: it saves the model's
weights once as a template, then once more with every variable set to a marker value that
identifies it, and reads back which dataset holds which marker. The writers in
:mod:`ckptmigrate.formats.keras_weights` then fill the template's structure.

This builds and saves live Keras models, so it is a target concern: Keras (and TensorFlow,
imported first to keep it quiet) are imported inside the functions.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._tf import import_keras
from ..errors import CkptMigrateError, OutputError
from ..formats.keras_weights import (
    TEMPLATE_NAME,
    H5Dataset,
    KerasLayout,
    LayoutEntry,
    dataset_index,
    read_dataset,
)

if TYPE_CHECKING:
    import numpy as np

_MARKERS_NAME = "markers.weights.h5"
# Marker digits stay below this, so every integer and float dtype of 16 bits or more holds
# them exactly (the real bound per dtype is measured, see _digit_base).
_MAX_BASE = 1 << 15


def keras_layout(model: Any, directory: str | Path | None = None) -> KerasLayout:
    """Discover which ``.weights.h5`` dataset holds which variable of a built Keras 3 model.

    The model's variables are temporarily overwritten with marker values and restored
    before returning (also on errors and Ctrl-C). ``directory``: where to keep the template
    file (it must not already contain one); by default a temporary directory owned by the
    returned layout.
    """
    keras = import_keras()

    if not isinstance(model, keras.Model):
        raise CkptMigrateError(
            f"expected a Keras 3 model (keras.Model), got {type(model).__module__}."
            f"{type(model).__qualname__}",
            hint="tf-keras (Keras 2) models restore TensorFlow checkpoints themselves.",
        )
    if not model.built:
        raise CkptMigrateError(
            f"the Keras model {model.name!r} is not built: it has no variables yet",
            hint="build it first (call it on data, or model.build(input_shape)).",
        )
    owned: tempfile.TemporaryDirectory[str] | None = None
    if directory is None:
        owned = tempfile.TemporaryDirectory(prefix="ckptmigrate-keras-")
        folder = Path(owned.name)
    else:
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
    template = folder / TEMPLATE_NAME
    try:
        if template.exists():
            raise OutputError(
                "a template weights file already exists here",
                path=template,
                hint="give keras_layout an empty directory.",
            )
        _save_weights(model, template)
        datasets = dataset_index(template)
        variables = _saveable_variables(model)
        entries = _discover(model, variables, datasets, folder)
    except BaseException:
        if owned is not None:
            owned.cleanup()
        raise
    mapped = {e.variable_path for e in entries}
    unsaved = tuple(sorted({v.path for v in variables} - mapped))
    return KerasLayout(
        template, tuple(sorted(entries, key=lambda e: e.h5_path)), unsaved, _tempdir=owned
    )


def _save_weights(model: Any, path: Path) -> None:
    try:
        model.save_weights(str(path))
    except Exception as e:
        raise CkptMigrateError(
            f"Keras cannot save this model's weights: {type(e).__name__}: {e}",
            path=path,
            hint="the model must be a built Keras 3 model.",
        ) from e


def _saveable_variables(model: Any) -> list[Any]:
    """The variables Keras may write: the model's own (layers, nested models) and its
    optimizer's, once each. Compiled metrics are not saved by Keras 3. An optimizer that
    has not taken a step still has (and Keras still saves) its iteration count and
    learning rate."""
    seen: set[int] = set()
    out: list[Any] = []
    optimizer = getattr(model, "optimizer", None)
    candidates = list(model.variables)
    if optimizer is not None:
        candidates += list(getattr(optimizer, "variables", None) or ())
    for variable in candidates:
        if id(variable) not in seen:
            seen.add(id(variable))
            out.append(variable)
    return out


def _held_dtype(keras: Any, variable: Any) -> str:
    """The dtype of the value a variable holds, which is what Keras saves: JAX without
    x64 keeps a declared float64 (int64) variable's value in float32 (int32)."""
    value = getattr(variable, "value", None)
    return str(keras.backend.standardize_dtype(getattr(value, "dtype", None) or variable.dtype))


def _digit_base(dtype: np.dtype[Any]) -> int:
    """How many consecutive integers from 0 ``dtype`` represents exactly (2 for bool, 256
    for bfloat16 and uint8, 2048 for float16), capped at _MAX_BASE."""
    import numpy as np

    probe = np.arange(_MAX_BASE, dtype=np.int64)
    with np.errstate(all="ignore"):
        back = probe.astype(dtype).astype(np.float64)
    wrong = np.flatnonzero(back != probe)
    return int(wrong[0]) if wrong.size else _MAX_BASE


def _num_digits(count: int, base: int) -> int:
    digits = 1
    while base**digits <= count:
        digits += 1
    return digits


def _encode(code: int, base: int, size: int) -> np.ndarray:
    """``code`` in base ``base``, least significant digit first, one digit per element;
    the remaining elements are 0."""
    import numpy as np

    digits = np.zeros(size, dtype=np.int64)
    i = 0
    while code:
        digits[i] = code % base
        code //= base
        i += 1
    return digits


@dataclass
class _Group:
    """Variables sharing a (shape, dtype): they need distinct markers."""

    variables: list[Any]
    base: int
    size: int


def _discover(
    model: Any, variables: list[Any], datasets: list[H5Dataset], folder: Path
) -> list[LayoutEntry]:
    import numpy as np

    keras = import_keras()

    def key_of(shape: tuple[int, ...], dtype: str) -> tuple[tuple[int, ...], str]:
        return shape, dtype

    wanted = {key_of(d.shape, d.dtype) for d in datasets}
    groups: dict[tuple[tuple[int, ...], str], _Group] = {}
    for variable in variables:
        key = key_of(tuple(int(d) for d in variable.shape), _held_dtype(keras, variable))
        if key not in wanted:
            continue  # nothing of this shape and dtype was saved: not a saved variable
        size = int(np.prod(key[0], dtype=np.int64))
        group = groups.get(key)
        if group is None:
            dtype = keras.ops.convert_to_numpy(variable).dtype
            base = _digit_base(dtype) if size else 0
            group = groups[key] = _Group([], base, size)
        group.variables.append(variable)

    for (shape, dtype), group in groups.items():
        # Codes run 1..n (0, an all-zero tensor, is no variable); n + 1 values must fit.
        if group.size and group.base ** min(group.size, 64) <= len(group.variables):
            names = ", ".join(v.path for v in group.variables)
            raise CkptMigrateError(
                f"cannot tell apart {len(group.variables)} {dtype} variables of shape "
                f"{list(shape)} ({names}): their values can encode at most "
                f"{group.base**group.size - 1} distinct markers",
                hint="this layout cannot be discovered automatically; please report it.",
            )

    marked = [v for g in groups.values() if g.size for v in g.variables]
    originals = [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in marked]
    markers_file = folder / _MARKERS_NAME
    try:
        try:
            for group in groups.values():
                if not group.size:
                    continue
                for code, variable in enumerate(group.variables, start=1):
                    dtype = keras.ops.convert_to_numpy(variable).dtype
                    marker = _encode(code, group.base, group.size).astype(dtype)
                    variable.assign(marker.reshape(tuple(variable.shape)))
            _save_weights(model, markers_file)
        finally:
            # Restore first: the caller's model must come back intact whatever happens.
            for variable, value in zip(marked, originals, strict=True):
                variable.assign(value)
        return _read_markers(markers_file, datasets, groups)
    finally:
        markers_file.unlink(missing_ok=True)


def _read_markers(
    markers_file: Path,
    datasets: list[H5Dataset],
    groups: dict[tuple[tuple[int, ...], str], _Group],
) -> list[LayoutEntry]:
    import h5py
    import numpy as np

    entries: list[LayoutEntry] = []
    unmatched: list[str] = []
    zero_size: dict[tuple[tuple[int, ...], str], list[H5Dataset]] = {}
    with h5py.File(markers_file, "r") as f:
        for ds in datasets:
            key = (ds.shape, ds.dtype)
            group = groups.get(key)
            if group is None:
                unmatched.append(ds.h5_path)
                continue
            if not group.size:
                zero_size.setdefault(key, []).append(ds)
                continue
            raw = read_dataset(f[ds.h5_path])
            with np.errstate(all="ignore"):
                as_float = raw.reshape(-1).astype(np.float64)
            digits = min(group.size, _num_digits(len(group.variables), group.base))
            head = as_float[:digits]
            code = -1
            if np.all(np.isfinite(head)) and np.all(head == np.floor(head)):
                code = int(sum(int(d) * group.base**i for i, d in enumerate(head)))
            if not 1 <= code <= len(group.variables) or not np.array_equal(
                as_float, _encode(code, group.base, group.size)
            ):
                unmatched.append(ds.h5_path)
                continue
            variable = group.variables[code - 1]
            entries.append(LayoutEntry(ds.h5_path, variable.path, ds.shape, ds.dtype))
    for key, found in zero_size.items():
        # Empty tensors carry no data to mark, so any pairing writes the same bytes; pair
        # them in order so each entry still names a variable of the right shape.
        candidates = groups[key].variables
        for ds, variable in zip(found, candidates, strict=False):
            entries.append(LayoutEntry(ds.h5_path, variable.path, ds.shape, ds.dtype))
        unmatched += [ds.h5_path for ds in found[len(candidates) :]]
    if unmatched:
        raise CkptMigrateError(
            f"{len(unmatched)} dataset(s) of the model's weights file hold no model or "
            f"optimizer variable: {', '.join(unmatched[:5])}"
            + (" ..." if len(unmatched) > 5 else ""),
            hint="a layer saving extra state (save_own_variables) is not supported yet.",
        )
    return entries
