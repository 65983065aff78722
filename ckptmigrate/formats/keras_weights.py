"""Keras 3 weight files (``.weights.h5``, and ``.keras`` archives), written from a layout.

Keras 3 cannot restore TensorFlow checkpoints, so a converted checkpoint reaches a Keras 3
model as a ``.weights.h5`` file, which keeps weights by position (``layers/dense_1/vars/0``).
A :class:`KerasLayout` says which dataset holds which model variable (found by Keras itself,
see :mod:`ckptmigrate.targets.keras_layout`) and carries a template file saved by Keras.

:func:`write_weights_h5` copies the template's structure exactly (groups, attributes,
dataset names, types and creation properties) and fills each dataset from a callable, one
tensor at a time. :func:`write_keras_archive` puts such a file into a copy of a ``.keras``
archive. Both publish through :mod:`ckptmigrate.fs`: an error or Ctrl-C leaves nothing.

Only h5py and numpy are used, imported inside the functions; never TensorFlow or Keras.
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
    files copy, holding the model's values at the time. When ``keras_layout`` made its
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

    def __exit__(self, *_: object) -> None:
        self.close()


ValuesFn = Callable[[LayoutEntry], Any]
"""Gives the array (anything numpy.asarray accepts) to write for one layout entry."""


# ---------------------------------------------------------------------------------------
# Reading datasets


@dataclass(frozen=True)
class H5Dataset:
    """A dataset of a weights file: where it is, its shape and Keras dtype name."""

    h5_path: str
    shape: tuple[int, ...]
    dtype: str


def h5_dtype_name(dataset: Any) -> str:
    """The Keras dtype name of an h5py dataset."""
    # h5py has no bfloat16: Keras stores its bytes as 2-byte opaque values and says so in
    # an attribute.
    if dataset.attrs.get("dtype") == "bfloat16":
        return "bfloat16"
    return str(dataset.dtype)


def read_dataset(dataset: Any) -> np.ndarray:
    """A Keras weights dataset's values in their real dtype (bfloat16 included)."""
    import numpy as np

    raw = np.asarray(dataset[()])
    if h5_dtype_name(dataset) == "bfloat16":
        import ml_dtypes

        raw = raw.view(ml_dtypes.bfloat16)
    return raw


def dataset_index(path: Path) -> list[H5Dataset]:
    """Every dataset of an HDF5 weights file, in HDF5's visiting order."""
    import h5py

    found: list[H5Dataset] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(H5Dataset(name, tuple(int(d) for d in obj.shape), h5_dtype_name(obj)))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


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
            found[name] = (tuple(int(d) for d in obj.shape), h5_dtype_name(obj))

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
