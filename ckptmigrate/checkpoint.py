"""Open a checkpoint from any path a user gives, whatever its format."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    UnsupportedCheckpointError,
)
from .formats.bundle_reader import BundleReader, TensorInfo, open_bundle
from .formats.locate import AnyPath, CheckpointLocation, locate
from .formats.meta_graph import read_graph_nodes
from .formats.object_graph import OBJECT_GRAPH_KEY, VARIABLE_SUFFIX, ObjectGraph
from .formats.protowire import ProtoError
from .formats.remote import RemotePath
from .formats.v1 import V1Reader
from .names import Role, classify, classify_many, graph_roles

if TYPE_CHECKING:
    import numpy as np


class TensorSource(Protocol):
    """What every checkpoint reader offers (V2 natively, V1 through TensorFlow)."""

    format: str
    big_endian: bool

    @property
    def prefix(self) -> AnyPath: ...

    def variable_keys(self) -> list[str]: ...
    def stored_keys(self) -> list[str]: ...
    @property
    def num_shards(self) -> int: ...
    def info(self, key: str) -> TensorInfo: ...
    def read(self, key: str, verify: bool = True) -> np.ndarray: ...
    def verify(self, on_tensor: Callable[[int], object] | None = None) -> int: ...
    def close(self) -> None: ...


@dataclass
class Checkpoint:
    """An open checkpoint: where it is, its reader, and what its object graph says.

    What the object graph says (original names, slot keys, aliases) is derived on first
    use: ``inspect`` never needs the aliases, ``rewrite`` none of it."""

    location: CheckpointLocation
    reader: TensorSource
    graph: ObjectGraph | None = None
    # Roles a .meta graph passed as the checkpoint declares (which ops update each variable),
    # or a Keras weights file (its optimizer's variables).
    graph_roles: dict[str, Role] = field(default_factory=dict)
    # Original names a file without an object graph records (a Keras weights file's).
    declared_names: dict[str, str] = field(default_factory=dict)

    @property
    def prefix(self) -> AnyPath:
        return self.location.prefix

    @property
    def is_object_based(self) -> bool:
        return self.graph is not None

    @property
    def object_graph_bytes(self) -> bytes | None:
        return None if self.graph is None else self.graph.data

    @property
    def original_names(self) -> dict[str, str]:
        """checkpoint key -> the variable's name when it was saved, where one is recorded."""
        return self.declared_names if self.graph is None else self.graph.original_names

    @property
    def slot_keys(self) -> set[str]:
        """Checkpoint keys saved by slot-variable nodes (optimizer state per variable)."""
        return set() if self.graph is None else self.graph.slot_keys

    @property
    def aliases(self) -> dict[str, list[str]]:
        """checkpoint key -> every key-shaped path a restore could reach the same value by."""
        return {} if self.graph is None else self.graph.aliases

    @property
    def optimizer_state(self) -> dict[str, str]:
        """Checkpoint keys an optimizer node of the object graph owns -> their name under it."""
        return {} if self.graph is None else self.graph.optimizer_state

    def role(self, key: str) -> Role:
        """The key's role: from the ``.meta`` graph where one was passed, the object graph
        (slot references, optimizer nodes) where there is one, else the naming table."""
        declared = self.graph_roles.get(key)
        if declared is not None:
            return declared
        return classify(key, self.slot_keys, self.optimizer_state)

    def roles(self, keys: Iterable[str]) -> list[Role]:
        """:meth:`role` of each key, looking up what they share once."""
        keys = list(keys)
        named = classify_many(keys, self.slot_keys, self.optimizer_state)
        declared = self.graph_roles
        if not declared:
            return named
        return [declared.get(key) or role for key, role in zip(keys, named, strict=True)]

    # -- reading by name, like TensorFlow's tf.train.load_checkpoint(...) reader and
    # safetensors' safe_open: keys, shapes and dtypes from the index, values on demand.

    def keys(self) -> list[str]:
        """Every name a restore can look up, sorted: what TensorFlow's reader lists in
        ``get_variable_to_shape_map()`` (TF2 keys end in ``/.ATTRIBUTES/VARIABLE_VALUE``;
        a partitioned variable is one key; the object graph is ``_CHECKPOINTABLE_OBJECT_GRAPH``).

        Returns:
            The checkpoint's keys; no tensor is read.
        """
        return sorted(self.reader.variable_keys())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each key's shape, as ``get_variable_to_shape_map()`` gives it (a tuple here).

        Returns:
            key -> shape (``()`` for a scalar; a partitioned variable's full shape).
        """
        return {key: self.reader.info(key).shape for key in self.keys()}

    def dtypes(self) -> dict[str, str]:
        """Each key's dtype, by TensorFlow's name (``float32``, ``bfloat16``, ``string``),
        as ``get_variable_to_dtype_map()`` gives them (there as ``tf.DType``).

        Returns:
            key -> dtype name.
        """
        return {key: self.reader.info(key).dtype.name for key in self.keys()}

    def read(self, name: str) -> np.ndarray:
        """One tensor's value, CRC32C-checked (TensorFlow's ``get_tensor``).

        Args:
            name: a key, exactly as :meth:`keys` lists it.

        Returns:
            A numpy array of the stored dtype and shape (``bfloat16`` and float8 through
            ml_dtypes; strings an object array of ``bytes``); a partitioned variable
            reassembled whole.

        Raises:
            CheckpointNotFoundError: no such key (the hint names the closest ones).
            ChecksumMismatchError: the stored bytes fail their checksum.
            CorruptCheckpointError: the data shard is truncated or unreadable.
        """
        if name not in self:
            raise self._missing_key(name)
        return self.reader.read(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._key_set

    def __iter__(self) -> Iterator[str]:
        """The keys, as :meth:`keys` lists them."""
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._key_set)

    def __repr__(self) -> str:
        scheme = "object-based" if self.is_object_based else "name-based"
        return f"<Checkpoint {self.prefix}: {self.reader.format}, {scheme}, {len(self)} keys>"

    @functools.cached_property
    def _key_set(self) -> frozenset[str]:
        return frozenset(self.reader.variable_keys())

    def _missing_key(self, name: str) -> CheckpointNotFoundError:
        import difflib

        keys = self.keys()
        if name + VARIABLE_SUFFIX in self:
            close = [name + VARIABLE_SUFFIX]
        else:
            close = difflib.get_close_matches(name, keys, n=3, cutoff=0.6)
        return CheckpointNotFoundError(
            f"Key {name} not found in checkpoint",
            path=str(self.prefix),
            variable=name,
            hint=f"did you mean {' or '.join(repr(k) for k in close)}?"
            if close
            else f"keys() lists the {len(keys)} keys it holds.",
        )

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _open_safetensors(path: AnyPath) -> TensorSource:
    from .formats.safetensors import SafetensorsReader

    return SafetensorsReader(path)


def _open_torch(path: AnyPath) -> TensorSource:
    from .formats.torch_file import TorchReader

    return TorchReader(path)


def _open_keras_h5(location: CheckpointLocation) -> Checkpoint:
    from .formats.keras_h5 import KerasH5Reader

    if isinstance(location.prefix, RemotePath):
        raise UnsupportedCheckpointError(
            "Keras weight files are read locally only in this version",
            path=str(location.prefix),
            hint="download it and pass the local copy.",
        )
    reader = KerasH5Reader(location.prefix)
    roles = {key: Role(role) for key, role in reader.roles.items()}
    # How the file's weights were named, for inspect and check to say.
    location = replace(location, notes=(*location.notes, reader.naming_note))
    return Checkpoint(location, reader, graph_roles=roles, declared_names=reader.original_names)


def open_checkpoint(path: str | Path | RemotePath) -> Checkpoint:
    """Locate, open and pre-flight a checkpoint (index parsed, shards present).

    Args:
        path: a prefix, one of its files, a directory (with or without a ``checkpoint``
            state file), a SavedModel, a safetensors file, a PyTorch state_dict file
            (``torch.save``'s zip: ``.pt``, ``.bin``), a Keras weights file (``.h5``,
            ``.weights.h5``: named as ``formats/keras_h5.py`` says), or a URL
            (``s3://bucket/run/``: its tensors are then read with ranged requests).

    Returns:
        The open checkpoint (use it in a ``with`` block): ``keys()``, ``shapes()``,
        ``dtypes()``, ``read(key)`` (a tensor, CRC-checked) and ``key in checkpoint``.

    Raises:
        CheckpointNotFoundError: no checkpoint there (the message says what is there).
        CorruptCheckpointError: the index or shards are not a valid checkpoint.
        UnsupportedCheckpointError: a valid checkpoint this version cannot read.
    """
    location = locate(path)
    if location.format == "keras_h5":
        return _open_keras_h5(location)
    roles = _meta_roles(location)
    reader: TensorSource
    if location.format == "v2":
        reader = open_bundle(location.prefix)
    elif location.format == "safetensors":
        reader = _open_safetensors(location.prefix)
    elif location.format == "torch":
        reader = _open_torch(location.prefix)
    elif isinstance(location.prefix, RemotePath):
        raise UnsupportedCheckpointError(
            "this is a V1 single-file checkpoint, which is read through TensorFlow, and "
            "TensorFlow cannot read this URL",
            path=str(location.prefix),
            hint="download it and pass the local copy.",
        )
    else:
        reader = V1Reader(location.prefix)
    try:
        graph = _object_graph(reader, location)
    except BaseException:
        # Reading the graph opened the shard's descriptor; a failed open hands the caller
        # nothing to close, so it is closed here: a process meeting many damaged
        # checkpoints (a training pipeline, the fuzzer) kept one descriptor per failure.
        reader.close()
        raise
    return Checkpoint(location, reader, graph_roles=roles, graph=graph)


def _object_graph(reader: TensorSource, location: CheckpointLocation) -> ObjectGraph | None:
    """The checkpoint's object graph, parsed, or None for a name-based checkpoint."""
    if OBJECT_GRAPH_KEY not in reader.variable_keys():
        return None
    if isinstance(reader, BundleReader):
        elements = reader.read_elements(OBJECT_GRAPH_KEY)
    else:
        elements = [bytes(e) for e in reader.read(OBJECT_GRAPH_KEY).reshape(-1)]
    try:
        return ObjectGraph(elements[0] if elements else b"")
    except ProtoError as e:
        raise CorruptCheckpointError(
            f"the object graph cannot be parsed ({e})",
            path=str(location.prefix),
            variable=OBJECT_GRAPH_KEY,
        ) from None


def _meta_roles(location: CheckpointLocation) -> dict[str, Role]:
    """Roles from the ``.meta`` graph the user passed as the checkpoint, if they did."""
    given = location.given
    if isinstance(given, RemotePath) or not str(given).endswith(".meta"):
        return {}
    try:
        graph = read_graph_nodes(Path(given))
    except (OSError, ProtoError) as e:
        raise CorruptCheckpointError(
            f"the MetaGraph cannot be read ({e})", path=str(given)
        ) from None
    return graph_roles(graph.nodes, graph.global_steps)
