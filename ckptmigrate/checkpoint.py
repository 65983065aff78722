"""Open a checkpoint from any path a user gives, whatever its format."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import CorruptCheckpointError
from .formats.bundle_reader import BundleReader, TensorInfo
from .formats.locate import CheckpointLocation, locate
from .formats.object_graph import (
    OBJECT_GRAPH_KEY,
    TrackableNode,
    original_names,
    parse_object_graph,
    slot_keys,
    variable_aliases,
)
from .formats.protowire import ProtoError
from .formats.v1 import V1Reader
from .names import Role, classify

if TYPE_CHECKING:
    import numpy as np


class TensorSource(Protocol):
    """What every checkpoint reader offers (V2 natively, V1 through TensorFlow)."""

    format: str
    prefix: Path
    big_endian: bool

    def variable_keys(self) -> list[str]: ...
    def info(self, key: str) -> TensorInfo: ...
    def read(self, key: str, verify: bool = True) -> np.ndarray: ...
    def verify(self) -> int: ...
    def close(self) -> None: ...


@dataclass
class Checkpoint:
    """An open checkpoint: where it is, its reader, and what its object graph says."""

    location: CheckpointLocation
    reader: TensorSource
    object_graph: list[TrackableNode] | None = None
    original_names: dict[str, str] = field(default_factory=dict)
    slot_keys: set[str] = field(default_factory=set)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    object_graph_bytes: bytes | None = None

    @property
    def prefix(self) -> Path:
        return self.location.prefix

    @property
    def is_object_based(self) -> bool:
        return self.object_graph is not None

    def role(self, key: str) -> Role:
        return classify(key, self.slot_keys)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Locate, open and pre-flight a checkpoint (index parsed, shards present)."""
    location = locate(path)
    reader: TensorSource
    reader = BundleReader(location.prefix) if location.format == "v2" else V1Reader(location.prefix)
    checkpoint = Checkpoint(location, reader)
    if OBJECT_GRAPH_KEY in reader.variable_keys():
        if isinstance(reader, BundleReader):
            elements = reader.read_elements(OBJECT_GRAPH_KEY)
        else:
            elements = [bytes(e) for e in reader.read(OBJECT_GRAPH_KEY).reshape(-1)]
        try:
            nodes = parse_object_graph(elements[0] if elements else b"")
        except ProtoError as e:
            reader.close()
            raise CorruptCheckpointError(
                f"the object graph cannot be parsed ({e})",
                path=location.prefix,
                variable=OBJECT_GRAPH_KEY,
            ) from None
        checkpoint.object_graph = nodes
        checkpoint.object_graph_bytes = elements[0] if elements else b""
        checkpoint.original_names = original_names(nodes)
        checkpoint.slot_keys = slot_keys(nodes)
        checkpoint.aliases = variable_aliases(nodes)
    return checkpoint
