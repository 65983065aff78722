"""Write Keras 3 weight files (``.weights.h5``, and ``.keras`` archives) from given values.

Keras 3 cannot restore TensorFlow checkpoints, so a converted checkpoint reaches a Keras 3
model as a ``.weights.h5`` file. That file keeps weights by position
(``layers/dense_1/vars/0``), and the positions follow Keras' internal walk of the model,
which changes between Keras versions. Rather than re-implementing that walk,
:func:`keras_layout` asks Keras itself: it saves the model's weights once as a template,
then once more with every variable set to a marker value that identifies it, and reads
back which dataset holds which marker.

:func:`write_weights_h5` then copies the template's structure exactly (groups, attributes,
dataset names, types and creation properties) and fills each dataset from a callable, one
tensor at a time. :func:`write_keras_archive` puts such a file into a copy of a ``.keras``
archive. Both publish atomically: they write a hidden temporary file beside the output and
rename it into place, so an error or Ctrl-C leaves nothing behind.

TensorFlow, Keras, h5py and numpy are imported inside the functions: importing this module
stays cheap for the commands that never write Keras files.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CkptMigrateError, OutputError
from ..fs import staged_file

if TYPE_CHECKING:
    import numpy as np

WEIGHTS_IN_ARCHIVE = "model.weights.h5"
TEMPLATE_NAME = "template.weights.h5"
_MARKERS_NAME = "markers.weights.h5"
# Marker digits stay below this, so every integer and float dtype of 16 bits or more holds
# them exactly (the real bound per dtype is measured, see _digit_base).
_MAX_BASE = 1 << 15


@dataclass(frozen=True)
class LayoutEntry:
    """One dataset of a Keras 3 ``.weights.h5`` file and the model variable it holds."""

    h5_path: str
    """Dataset path in the file, e.g. ``layers/dense_1/vars/0``."""
    variable_path: str
    """The Keras variable's ``path``, e.g. ``sequential/d1/kernel`` or ``adam/iteration``."""
    shape: tuple[int, ...]
    dtype: str
    """Keras dtype name: ``float32``, ``bfloat16``, ``int64``, ``bool``, ..."""


@dataclass
class KerasLayout:
    """Where a model's variables live in its ``.weights.h5`` file.

    ``template`` is a ``.weights.h5`` saved by Keras from the model: the structure written
    files copy, holding the model's values at the time. When :func:`keras_layout` made its
    own temporary directory for it, :meth:`close` (or leaving a ``with`` block) deletes it;
    a directory passed by the caller is the caller's to remove.
    """

    template: Path
    entries: tuple[LayoutEntry, ...]
    unsaved: tuple[str, ...] = ()
    """Paths of model variables Keras does not save (e.g. dropout seed generator states)."""
    _tempdir: tempfile.TemporaryDirectory[str] | None = field(
        default=None, repr=False, compare=False
    )

    def by_h5_path(self) -> dict[str, LayoutEntry]:
        return {e.h5_path: e for e in self.entries}

    def by_variable(self) -> dict[str, list[LayoutEntry]]:
        """Entries per variable path; a variable shared by two saved objects has two."""
        out: dict[str, list[LayoutEntry]] = {}
        for entry in self.entries:
            out.setdefault(entry.variable_path, []).append(entry)
        return out

    def close(self) -> None:
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> KerasLayout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ValuesFn = Callable[[LayoutEntry], Any]
"""Gives the array (anything numpy.asarray accepts) to write for one layout entry."""


# ---------------------------------------------------------------------------------------
# Layout discovery


def keras_layout(model: Any, directory: str | Path | None = None) -> KerasLayout:
    """Discover which ``.weights.h5`` dataset holds which variable of a built Keras 3 model.

    The model's variables are temporarily overwritten with marker values and restored
    before returning (also on errors and Ctrl-C). ``directory``: where to keep the template
    file (it must not already contain one); by default a temporary directory owned by the
    returned layout.
    """
    from .v1 import import_tensorflow

    import_tensorflow()  # quietly, before Keras imports it
    import keras

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
        datasets = _dataset_index(template)
        variables = _saveable_variables(model)
        entries = _discover(model, variables, datasets, folder)
    except BaseException:
        if owned is not None:
            owned.cleanup()
        raise
    mapped = {e.variable_path for e in entries}
    unsaved = tuple(sorted({v.path for v in variables} - mapped))
    return KerasLayout(template, tuple(sorted(entries, key=lambda e: e.h5_path)), unsaved, owned)


def _save_weights(model: Any, path: Path) -> None:
    try:
        model.save_weights(str(path))
    except Exception as e:
        raise CkptMigrateError(
            f"Keras cannot save this model's weights: {type(e).__name__}: {e}",
            path=path,
            hint="the model must be a built Keras 3 model.",
        ) from e


@dataclass(frozen=True)
class _Dataset:
    h5_path: str
    shape: tuple[int, ...]
    dtype: str


def _h5_dtype_name(dataset: Any) -> str:
    # h5py has no bfloat16: Keras stores its bytes as 2-byte opaque values and says so in
    # an attribute.
    if dataset.attrs.get("dtype") == "bfloat16":
        return "bfloat16"
    return str(dataset.dtype)


def read_dataset(dataset: Any) -> np.ndarray:
    """A Keras weights dataset's values in their real dtype (bfloat16 included)."""
    import numpy as np

    raw = np.asarray(dataset[()])
    if _h5_dtype_name(dataset) == "bfloat16":
        import ml_dtypes

        raw = raw.view(ml_dtypes.bfloat16)
    return raw


def _dataset_index(path: Path) -> list[_Dataset]:
    import h5py

    found: list[_Dataset] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(_Dataset(name, tuple(int(d) for d in obj.shape), _h5_dtype_name(obj)))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def _saveable_variables(model: Any) -> list[Any]:
    """The variables Keras may write: the model's own (layers, nested models) and its
    optimizer's, once each. Compiled metrics are not saved by Keras 3."""
    seen: set[int] = set()
    out: list[Any] = []
    optimizer = getattr(model, "optimizer", None)
    candidates = list(model.variables)
    if optimizer is not None and getattr(optimizer, "built", False):
        candidates += list(optimizer.variables)
    for variable in candidates:
        if id(variable) not in seen:
            seen.add(id(variable))
            out.append(variable)
    return out


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
    model: Any, variables: list[Any], datasets: list[_Dataset], folder: Path
) -> list[LayoutEntry]:
    import keras
    import numpy as np

    def key_of(shape: tuple[int, ...], dtype: str) -> tuple[tuple[int, ...], str]:
        return shape, dtype

    wanted = {key_of(d.shape, d.dtype) for d in datasets}
    groups: dict[tuple[tuple[int, ...], str], _Group] = {}
    for variable in variables:
        key = key_of(
            tuple(int(d) for d in variable.shape), keras.backend.standardize_dtype(variable.dtype)
        )
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
    datasets: list[_Dataset],
    groups: dict[tuple[tuple[int, ...], str], _Group],
) -> list[LayoutEntry]:
    import h5py
    import numpy as np

    entries: list[LayoutEntry] = []
    unmatched: list[str] = []
    zero_size: dict[tuple[tuple[int, ...], str], list[_Dataset]] = {}
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


# ---------------------------------------------------------------------------------------
# Writing .weights.h5


def write_weights_h5(
    layout: KerasLayout,
    values: ValuesFn,
    output: str | Path,
    *,
    overwrite: bool = False,
    durable: bool = False,
) -> Path:
    """Write ``output`` (a ``.weights.h5``) with the template's exact structure, each
    dataset holding ``values(entry)``. Arrays are requested and written one at a time;
    each must have the entry's shape and dtype. Returns the output path."""
    import h5py

    output = Path(output)
    _check_suffix(output, ".weights.h5", "model.load_weights")
    if not layout.template.is_file():
        raise CkptMigrateError(
            "the layout's template weights file is gone",
            path=layout.template,
            hint="write while the layout is open (inside its with block, before close()).",
        )
    by_path = layout.by_h5_path()
    try:
        # The HDF5 files close (exiting in reverse order) before the output is published.
        with (
            staged_file(output, overwrite=overwrite, durable=durable) as tmp,
            h5py.File(layout.template, "r") as src,
            h5py.File(tmp, "w") as dst,
        ):
            _copy_attrs(src, dst)
            _copy_group(src, dst, by_path, values, output)
    except _ValuesError as wrapped:
        raise wrapped.error from wrapped.error.__cause__
    return output


class _ValuesError(Exception):
    """Carries an exception of the values callable past staged_file, which would
    otherwise report the callable's OSErrors (a source file unreadable) as output errors."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _check_suffix(output: Path, suffix: str, loader: str) -> None:
    if not output.name.endswith(suffix) or output.name == suffix:
        raise OutputError(
            f"the output's name must end in {suffix}",
            path=output,
            hint=f"Keras' {loader} accepts only such file names.",
        )


def _copy_attrs(src: Any, dst: Any) -> None:
    for name in src.attrs:
        attr = src.attrs.get_id(name)
        dst.attrs.create(name, src.attrs[name], shape=attr.shape, dtype=attr.dtype)


def _copy_group(
    src: Any, dst: Any, by_path: dict[str, LayoutEntry], values: ValuesFn, output: Path
) -> None:
    import h5py

    for name in src:
        link = src.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise CkptMigrateError(
                f"the template has a {type(link).__name__} at {src[name].name}",
                path=output,
                hint="Keras weight files hold only groups and datasets.",
            )
        child = src[name]
        if isinstance(child, h5py.Group):
            group = dst.create_group(name)
            _copy_attrs(child, group)
            _copy_group(child, group, by_path, values, output)
        else:
            h5_path = child.name.lstrip("/")
            entry = by_path.get(h5_path)
            if entry is None:
                raise CkptMigrateError(
                    "the layout has no entry for this template dataset",
                    path=output,
                    variable=h5_path,
                    hint="use the layout keras_layout returned with its own template.",
                )
            try:
                value = values(entry)
            except Exception as e:
                raise _ValuesError(e) from e
            _write_dataset(child, dst, name, entry, value, output=output)


def _write_dataset(
    template: Any, parent: Any, name: str, entry: LayoutEntry, value: Any, *, output: Path
) -> None:
    import h5py
    import numpy as np

    array = np.asarray(value)
    where = f"{entry.h5_path} (Keras variable {entry.variable_path})"
    # dtype.name ignores byte order: h5py converts a big-endian float32 on writing.
    got = f"{list(array.shape)} {array.dtype.name}"
    wants = f"{list(entry.shape)} {entry.dtype}"
    if tuple(array.shape) != entry.shape:
        raise CkptMigrateError(
            f"the value for {where} has shape {got}, the model needs {wants}",
            path=output,
            hint="slice, pad or reshape the source tensor (a map can) so it fits the model.",
        )
    if array.dtype.name != entry.dtype:
        raise CkptMigrateError(
            f"the value for {where} has dtype {got}, the model needs {wants}",
            path=output,
            hint=f"cast the source tensor to {entry.dtype} (a map can).",
        )
    # Created from the template's own type and creation properties, so the file matches
    # what Keras wrote byte for byte in structure (bfloat16 stays a 2-byte opaque type).
    dataset_id = h5py.h5d.create(
        parent.id,
        name.encode(),
        template.id.get_type(),
        template.id.get_space(),
        dcpl=template.id.get_create_plist(),
    )
    dataset = h5py.Dataset(dataset_id)
    _copy_attrs(template, dataset)
    if array.size:
        data = np.ascontiguousarray(array)
        if template.dtype.kind == "V":
            data = data.view(template.dtype)
        dataset[()] = data


# ---------------------------------------------------------------------------------------
# Writing .keras archives


def write_keras_archive(
    template_archive: str | Path,
    weights_h5: str | Path,
    output: str | Path,
    *,
    overwrite: bool = False,
    durable: bool = False,
) -> Path:
    """Write ``output``, a copy of the ``.keras`` archive ``template_archive`` (config,
    metadata, assets) whose ``model.weights.h5`` is ``weights_h5``. The weights file must
    have the same datasets (paths, shapes, dtypes) as the archive's own, so the config
    and the weights describe the same model. Members are streamed, not held in memory."""
    import shutil
    import zipfile

    template_archive, weights_h5, output = Path(template_archive), Path(weights_h5), Path(output)
    _check_suffix(output, ".keras", "keras.saving.load_model")
    if output.resolve() in (template_archive.resolve(), weights_h5.resolve()):
        raise OutputError("the output is one of the inputs", path=output, hint="choose a new path.")
    try:
        source = zipfile.ZipFile(template_archive)
    except (OSError, zipfile.BadZipFile) as e:
        raise CkptMigrateError(
            f"cannot read this as a .keras archive (a zip file): {e}",
            path=template_archive,
            hint="pass a file written by model.save('model.keras').",
        ) from e
    with source:
        names = source.namelist()
        if "config.json" not in names or WEIGHTS_IN_ARCHIVE not in names:
            missing = [n for n in ("config.json", WEIGHTS_IN_ARCHIVE) if n not in names]
            raise CkptMigrateError(
                f"this zip is not a Keras 3 archive: it has no {' or '.join(missing)}",
                path=template_archive,
                hint="pass a file written by model.save('model.keras') (sharded weights "
                "archives are not supported).",
            )
        with source.open(WEIGHTS_IN_ARCHIVE) as inner:
            expected = _structure(inner, template_archive)
        actual = _structure(weights_h5, weights_h5)
        _compare_structure(expected, actual, weights_h5)
        with (
            staged_file(output, overwrite=overwrite, durable=durable) as tmp,
            zipfile.ZipFile(tmp, "w") as target,
        ):
            for info in source.infolist():
                # Same member metadata (order, dates, modes, compression) as the template.
                copied = zipfile.ZipInfo(info.filename, info.date_time)
                copied.compress_type = info.compress_type
                copied.external_attr = info.external_attr
                copied.create_system = info.create_system
                copied.comment = info.comment
                with target.open(copied, "w", force_zip64=True) as out:
                    if info.filename == WEIGHTS_IN_ARCHIVE:
                        with weights_h5.open("rb") as member:
                            shutil.copyfileobj(member, out, 1 << 20)
                    else:
                        with source.open(info) as member:
                            shutil.copyfileobj(member, out, 1 << 20)
    return output


def _structure(file: Any, path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    import h5py

    found: dict[str, tuple[tuple[int, ...], str]] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = (tuple(int(d) for d in obj.shape), _h5_dtype_name(obj))

    try:
        with h5py.File(file, "r") as f:
            f.visititems(visit)
    except OSError as e:
        raise CkptMigrateError(
            f"cannot read the Keras weights (HDF5): {e}",
            path=path,
            hint="pass a .weights.h5 written by write_weights_h5 or Keras.",
        ) from e
    return found


def _compare_structure(
    expected: dict[str, tuple[tuple[int, ...], str]],
    actual: dict[str, tuple[tuple[int, ...], str]],
    path: Path,
) -> None:
    def show(spec: tuple[tuple[int, ...], str]) -> str:
        return f"{list(spec[0])} {spec[1]}"

    for h5_path in sorted(expected.keys() | actual.keys()):
        if h5_path not in actual:
            problem = f"lacks {h5_path} ({show(expected[h5_path])}), which the archive's model has"
        elif h5_path not in expected:
            problem = f"has {h5_path}, which the archive's model does not"
        elif expected[h5_path] != actual[h5_path]:
            problem = (
                f"has {h5_path} as {show(actual[h5_path])}, the archive's model needs "
                f"{show(expected[h5_path])}"
            )
        else:
            continue
        raise CkptMigrateError(
            f"these weights do not fit the archive's model: the file {problem}",
            path=path,
            hint="write the weights with the layout of the model saved in the archive "
            "(an optimizer present in one but not the other also differs).",
        )
