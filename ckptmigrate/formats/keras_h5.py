"""Keras weight files read with h5py, no TensorFlow or Keras: Keras 3 ``.weights.h5``
(``layers/<layer>/vars/<i>``) and legacy tf-keras ``.h5`` (full models or weights only,
``<layer>/<weight>:0``).

:func:`list_keras_h5` names every weight once, for both sides: the target loader
(``targets/keras_h5.py``) inventories a file from it, and :class:`KerasH5Reader` reads it as
a source (inspect, check, convert). A legacy weight is named by the object path a
TensorFlow checkpoint of its model has (``layer_with_weights-N/<weight>``, inferred from
the layers' order), its stored name kept as the original name; a Keras 3 weight by its
position in the file, as ``model.load_weights`` reads it, its name (kernel, bias, ...)
inferred from order and rank.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .. import dtypes
from ..errors import CheckpointNotFoundError, CkptMigrateError, CorruptCheckpointError
from .bundle_reader import TensorInfo
from .keras_weights import read_dataset
from .object_graph import VARIABLE_SUFFIX

if TYPE_CHECKING:
    import numpy as np

WeightRole = Literal["model", "optimizer", "step"]  # names.Role's values

KERAS3_NOTE = (
    "Keras 3 .weights.h5 keeps weights by position; their names (kernel, bias, ...) "
    "were inferred from order and rank"
)
LEGACY_NOTE = (
    "legacy Keras .h5: named as the object paths (layer_with_weights-N/<weight>) a "
    "TensorFlow checkpoint of its model has, inferred from the layers' order"
)


@dataclass(frozen=True)
class H5Weight:
    key: str  # the name it goes by (an object path, or a Keras 3 file position)
    h5_path: str  # the dataset in the file
    shape: tuple[int, ...]
    dtype: str
    role: WeightRole
    original: str | None  # the variable's name when saved, stored or inferred


@dataclass(frozen=True)
class H5Listing:
    weights: tuple[H5Weight, ...]
    legacy: bool  # a tf-keras layout (layer_names), else Keras 3 .weights.h5
    full_model: bool  # a legacy file with the model's config (model.save('x.h5'))
    keras3_wrote: bool  # a legacy layout that Keras 3 wrote


def weight_dtype(dataset: Any) -> str:
    declared = dataset.attrs.get("dtype")  # Keras stores bfloat16 as opaque 2-byte data
    if declared is not None:
        return declared.decode() if isinstance(declared, bytes) else str(declared)
    return str(dataset.dtype)


def _infer_names(layer: str, datasets: list[Any]) -> list[str]:
    """Weight names of a Keras 3 layer from their order and ranks (the file keeps only
    positions); the common layers' creation orders."""
    ranks = [len(d.shape) for d in datasets]
    if len(ranks) == 2 and ranks[0] >= 2 and ranks[1] == 1:
        return ["kernel", "bias"]
    if len(ranks) == 1 and ranks[0] == 2 and "embedding" in layer:
        return ["embeddings"]
    if len(ranks) == 1 and ranks[0] >= 2:
        return ["kernel"]
    if len(ranks) == 4 and ranks == [1, 1, 1, 1]:
        return ["gamma", "beta", "moving_mean", "moving_variance"]
    if len(ranks) == 3 and ranks == [2, 2, 1]:
        return ["kernel", "recurrent_kernel", "bias"]
    return [f"vars_{i}" for i in range(len(ranks))]


def _keras3_weights(root: Any) -> list[H5Weight]:
    groups: dict[str, list[tuple[str, Any]]] = {}

    def visit(name: str, obj: Any) -> None:
        if hasattr(obj, "shape") and "/vars/" in f"/{name}":
            group, _, index = name.rpartition("/vars/")
            groups.setdefault(group, []).append((index, obj))

    root.visititems(visit)
    out = []
    for group, items in sorted(groups.items()):
        items.sort(key=lambda item: int(item[0]) if item[0].isdigit() else 0)
        parts = [p for p in group.split("/") if p not in ("layers", "cell", "")]
        in_optimizer = group.startswith("optimizer")
        names = _infer_names(parts[-1] if parts else group, [d for _, d in items])
        for (index, dataset), var_name in zip(items, names, strict=True):
            key = f"{group}/vars/{index}"
            role: WeightRole = "model"
            original: str | None = "/".join([*parts, var_name])
            if in_optimizer:  # its first variable is the iteration count
                role, original = ("step" if index == "0" else "optimizer"), None
            shape = tuple(int(d) for d in dataset.shape)
            out.append(H5Weight(key, dataset.name, shape, weight_dtype(dataset), role, original))
    return out


def _attr_names(group: Any, attr: str) -> list[str]:
    import numpy as np

    names = np.asarray(group.attrs.get(attr, []))
    if names.ndim != 1:  # a scalar where Keras writes a list of names
        names = names.reshape(-1)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _child(group: Any, name: str, what: str, path: Path) -> Any:
    """``group[name]``, which a legacy file's name lists say exists."""
    if name not in group:
        raise CkptMigrateError(
            f"its {what} list names {name!r}, which {group.name} does not hold",
            path=path,
            hint="the file is damaged, or was not written by Keras.",
        )
    child = group[name]
    if what == "weight_names" and not hasattr(child, "shape"):
        raise CkptMigrateError(
            f"its weight_names list names {name!r}, a group in {group.name}, not a dataset",
            path=path,
            hint="the file is damaged, or was not written by Keras.",
        )
    return child


def _legacy_attribute(layer: str, weight: str) -> str:
    """The path below its layer that tf-keras tracks a legacy ``.h5`` weight by:
    ``conv2d_1/kernel:0`` -> ``kernel``, ``lstm/lstm_cell/kernel:0`` -> ``cell/kernel``."""
    name = weight.removesuffix(":0")
    rest = name[len(layer) + 1 :] if name.startswith(layer + "/") else name.rpartition("/")[2]
    return "/".join("cell" if p.endswith("_cell") else p for p in rest.split("/"))


def _legacy_weights(path: Path, root: Any) -> list[H5Weight]:
    """As tf-keras ``model.load_weights(CKPT)`` restores a TensorFlow checkpoint into the
    model: ``layer_with_weights-N/<weight>``, N counting the layers that have weights."""
    weights = root.get("model_weights", root)
    out = []
    index = 0
    for layer in _attr_names(weights, "layer_names"):
        group = _child(weights, layer, "layer_names", path)
        names = _attr_names(group, "weight_names")
        for weight in names:
            dataset = _child(group, weight, "weight_names", path)
            key = f"layer_with_weights-{index}/{_legacy_attribute(layer, weight)}"
            out.append(
                H5Weight(
                    key + VARIABLE_SUFFIX,
                    dataset.name,
                    tuple(int(d) for d in dataset.shape),
                    weight_dtype(dataset),
                    "model",
                    weight.removesuffix(":0"),
                )
            )
        index += bool(names)
    return out


def refuse_foreign_links(path: Path, root: Any) -> None:
    """Refuse links Keras never writes that would make reading the file read elsewhere.

    An external link names a dataset in another file (any path on this machine): h5py
    follows it on access, so the shapes and values read came from that file. A soft link
    that does not resolve (a loop, or a missing object) raised h5py's RuntimeError. Soft
    links that resolve inside the file are followed, as Keras follows them. Groups are
    listed through hard links only (visititems), each once.
    """
    import h5py

    groups = [root]
    root.visititems(lambda _, obj: groups.append(obj) if isinstance(obj, h5py.Group) else None)
    links = [
        (group, name, group.get(name, getlink=True), f"{group.name.rstrip('/')}/{name}")
        for group in groups
        for name in group
    ]
    # External links first: resolving a soft link below could pass through one.
    for _, _, link, where in links:
        if isinstance(link, h5py.ExternalLink):
            raise CkptMigrateError(
                f"{where} is an HDF5 external link to {link.path} in {link.filename}; "
                "links into other files are refused, never followed",
                path=path,
                hint="Keras weight files hold their weights themselves; save the model "
                "again, or copy the linked datasets into the file (h5py, h5copy).",
            )
        if not isinstance(link, h5py.HardLink | h5py.SoftLink):
            raise CkptMigrateError(
                f"{where} is a {type(link).__name__}, which Keras never writes",
                path=path,
                hint="Keras weight files hold only groups and datasets.",
            )
    for group, name, link, where in links:
        if isinstance(link, h5py.SoftLink):
            try:
                group[name]
            except (KeyError, RuntimeError, OSError):
                raise CkptMigrateError(
                    f"{where} is a soft link to {link.path}, which does not resolve (a link "
                    "loop, or a missing object)",
                    path=path,
                    hint="the file is damaged, or was not written by Keras.",
                ) from None


def list_open_file(path: Path, root: Any) -> H5Listing:
    """Every weight of the open file ``root``, named (foreign links refused first)."""
    refuse_foreign_links(path, root)
    if "layer_names" in root.attrs or "model_weights" in root:
        version = root.attrs.get("keras_version", b"")
        version = version.decode() if isinstance(version, bytes) else str(version)
        listing = H5Listing(
            tuple(_legacy_weights(path, root)),
            legacy=True,
            full_model="model_config" in root.attrs,
            keras3_wrote=version[:2] == "3.",
        )
    else:
        listing = H5Listing(tuple(_keras3_weights(root)), False, False, False)
    if not listing.weights:
        raise CkptMigrateError(
            "no weights found in this HDF5 file", path=path, hint="is it a Keras weights file?"
        )
    return listing


def list_keras_h5(path: Path) -> H5Listing:
    import h5py

    try:
        with h5py.File(path, "r") as root:
            return list_open_file(path, root)
    except OSError as e:
        raise CkptMigrateError(f"h5py cannot read this file: {e}", path=path) from e


KERAS_ARCHIVE_SUFFIX = ".keras"
# A deflated member may expand this much over what it stores before it is taken for a
# decompression bomb (Keras itself stores model.weights.h5 uncompressed).
_MAX_EXPANSION = 100
_BOMB_FLOOR = 1 << 28


class _MemberWindow(io.RawIOBase):
    """The bytes of one uncompressed zip member, read in place from the archive: h5py
    opens it as a file without the member being extracted or held in memory."""

    def __init__(self, file: Any, start: int, size: int) -> None:
        super().__init__()
        self._file, self._start, self._size, self._pos = file, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._size - self._pos))
        if not count:
            return 0
        self._file.seek(self._start + self._pos)
        got = self._file.readinto(view[:count])
        self._pos += got or 0
        return got or 0

    def close(self) -> None:
        self._file.close()
        super().close()


def _archive_error(path: Path, message: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        message,
        path=str(path),
        hint="a Keras 3 .keras file is a zip holding model.weights.h5 and config.json, as "
        "model.save('x.keras') writes it; is the copy complete?",
    )


def _weights_member(path: Path) -> tuple[Any, Any]:
    """(a seekable file object of the ``.keras`` archive's ``model.weights.h5``, the
    ``zipfile.ZipInfo``): the member's own bytes in place when stored uncompressed (as
    Keras writes it), else decompressed on the fly as Keras reads it, never extracted."""
    import zipfile

    from .keras_weights import WEIGHTS_IN_ARCHIVE

    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(WEIGHTS_IN_ARCHIVE)
    except KeyError:
        raise CkptMigrateError(
            f"this .keras archive holds no {WEIGHTS_IN_ARCHIVE}",
            path=path,
            hint="only Keras 3 .keras files (model.save('x.keras')) are read; a sharded "
            "save (model.weights.json) is not read yet.",
        ) from None
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as e:
        raise _archive_error(path, f"this is not a readable zip archive: {e}") from None
    if info.flag_bits & 0x1:
        raise _archive_error(path, f"{WEIGHTS_IN_ARCHIVE} is encrypted")
    if info.compress_type != zipfile.ZIP_STORED:
        if info.file_size > max(_BOMB_FLOOR, _MAX_EXPANSION * info.compress_size):
            raise _archive_error(
                path,
                f"{WEIGHTS_IN_ARCHIVE} declares {info.file_size:,} bytes stored in "
                f"{info.compress_size:,}: refused as a decompression bomb",
            )
        archive = zipfile.ZipFile(path)
        try:
            return archive.open(info), info
        except Exception as e:
            archive.close()
            raise _archive_error(path, f"cannot open {WEIGHTS_IN_ARCHIVE}: {e}") from None
    file = open(path, "rb")  # noqa: SIM115 (closed by the window)
    try:
        file.seek(info.header_offset)
        header = file.read(30)  # the local file header: its name and extra field follow
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise _archive_error(path, f"{WEIGHTS_IN_ARCHIVE} has no local file header")
        start = info.header_offset + 30 + int.from_bytes(header[26:28], "little")
        start += int.from_bytes(header[28:30], "little")
        if start + info.file_size > os.fstat(file.fileno()).st_size:
            raise _archive_error(path, f"{WEIGHTS_IN_ARCHIVE} runs past the end of the file")
    except BaseException:
        file.close()
        raise
    return _MemberWindow(file, start, info.file_size), info


def _check_member_crc(path: Path) -> int:
    """Read the archive's weights member through zipfile, which checks its CRC-32."""
    import zipfile

    from .keras_weights import WEIGHTS_IN_ARCHIVE

    total = 0
    try:
        with zipfile.ZipFile(path) as archive, archive.open(WEIGHTS_IN_ARCHIVE) as member:
            while chunk := member.read(1 << 20):
                total += len(chunk)
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise _archive_error(path, f"{WEIGHTS_IN_ARCHIVE} does not read back: {e}") from None
    return total


class KerasH5Reader:
    """A Keras weights file as a checkpoint source (``TensorSource``), named as
    :func:`list_keras_h5` says: a ``.h5``/``.weights.h5`` file, or the ``model.weights.h5``
    inside a Keras 3 ``.keras`` archive. HDF5 keeps no checksums Keras writes: ``verify``
    reads every weight (and checks the archive member's zip CRC-32)."""

    format = "keras_h5"
    big_endian = False
    num_shards = 1

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        self.archive = path.name.lower().endswith(KERAS_ARCHIVE_SUFFIX)
        member = None
        try:
            if self.archive:
                member, _ = _weights_member(path)
            self._file = h5py.File(member if member is not None else path, "r")
        except OSError as e:
            if member is not None:
                member.close()
            inside = " (the .keras archive's model.weights.h5)" if self.archive else ""
            raise CorruptCheckpointError(
                f"h5py cannot read this HDF5 file{inside}: {e}",
                path=str(path),
                hint="is the copy complete? Keras weight files (.h5, .weights.h5, .keras) are "
                "read here.",
            ) from e
        self._member = member
        try:
            self.listing = list_open_file(path, self._file)
            self._weights = {w.key: w for w in self.listing.weights}
            self._infos = {w.key: self._info(w) for w in self.listing.weights}
        except BaseException:
            self.close()
            raise

    def _info(self, weight: H5Weight) -> TensorInfo:
        dtype = dtypes.BY_NAME.get(weight.dtype)
        if dtype is None or dtype.name == "string":
            raise CkptMigrateError(
                f"{weight.h5_path} holds {weight.dtype} values, which no checkpoint variable "
                "of a Keras model has",
                path=self.path,
                variable=weight.key,
                hint="the file is damaged, or was not written by Keras.",
            )
        nbytes = math.prod(weight.shape) * (dtype.itemsize or 0)
        return TensorInfo(weight.key, dtype, weight.shape, nbytes, 0, None, None, ())

    @property
    def prefix(self) -> Path:
        return self.path

    @property
    def naming_note(self) -> str:
        return LEGACY_NOTE if self.listing.legacy else KERAS3_NOTE

    @property
    def original_names(self) -> dict[str, str]:
        return {w.key: w.original for w in self.listing.weights if w.original}

    @property
    def roles(self) -> dict[str, WeightRole]:
        return {w.key: w.role for w in self.listing.weights}

    def variable_keys(self) -> list[str]:
        return sorted(self._weights)

    def stored_keys(self) -> list[str]:
        return self.variable_keys()

    def info(self, key: str) -> TensorInfo:
        info = self._infos.get(key)
        if info is None:
            raise CheckpointNotFoundError(
                f"no weight {key!r} in this file", path=str(self.path), variable=key
            )
        return info

    def read(self, key: str, verify: bool = True) -> np.ndarray:
        import numpy as np

        info = self.info(key)
        weight = self._weights[key]
        try:
            value = read_dataset(self._file[weight.h5_path])
        except (OSError, RuntimeError, ValueError) as e:
            raise CorruptCheckpointError(
                f"h5py cannot read {weight.h5_path}: {e}", path=str(self.path), variable=key
            ) from None
        return np.asarray(value, dtype=dtypes.numpy_dtype(info.dtype)).reshape(info.shape)

    def verify(self, on_tensor: Callable[[int], object] | None = None) -> int:
        total = 0
        if self.archive:
            _check_member_crc(self.path)
        for key in self.variable_keys():
            size = self.read(key).nbytes
            total += size
            if on_tensor is not None:
                on_tensor(size)
        return total

    def close(self) -> None:
        self._file.close()
        if self._member is not None:
            self._member.close()
