"""What a TF1 ``.meta`` file (a serialized MetaGraphDef) says about its ops, read without
TensorFlow: every node's name, op type and inputs, and the ``global_step`` collection.

Field numbers from TensorFlow's meta_graph.proto and graph.proto / node_def.proto:
MetaGraphDef.graph_def = 2, .collection_def = 4 (map<string, CollectionDef>);
GraphDef.node = 1; NodeDef.name = 1, .op = 2, .input = 3; CollectionDef.node_list = 1
(NodeList.value = 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .protowire import LEN, ProtoError, iter_fields

__all__ = ["GraphNodes", "read_graph_nodes"]

GLOBAL_STEP_COLLECTION = "global_step"


def _text(raw: int | bytes) -> str:
    if not isinstance(raw, bytes):
        raise ProtoError("expected a string")
    return raw.decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class GraphNodes:
    """(name, op type, inputs) of every node, and the global step collection's names."""

    nodes: tuple[tuple[str, str, tuple[str, ...]], ...]
    global_steps: tuple[str, ...]


def parse_graph_nodes(data: bytes) -> GraphNodes:
    """The nodes of a serialized MetaGraphDef.

    Raises:
        ProtoError: the bytes are not a MetaGraphDef.
    """
    nodes: list[tuple[str, str, tuple[str, ...]]] = []
    steps: list[str] = []
    for number, wire, value in iter_fields(data):
        if wire != LEN or not isinstance(value, bytes):
            continue
        if number == 2:  # graph_def
            for n, w, node in iter_fields(value):
                if n != 1 or w != LEN or not isinstance(node, bytes):
                    continue
                name, op, inputs = "", "", []
                for f, fw, v in iter_fields(node):
                    if fw != LEN:
                        continue
                    if f == 1:
                        name = _text(v)
                    elif f == 2:
                        op = _text(v)
                    elif f == 3:
                        inputs.append(_text(v))
                nodes.append((name, op, tuple(inputs)))
        elif number == 4:  # collection_def map entry: key 1, value 2
            entry = {f: v for f, _, v in iter_fields(value)}
            collection = entry.get(2)
            if entry.get(1) != GLOBAL_STEP_COLLECTION.encode() or not isinstance(collection, bytes):
                continue
            for f, _, node_list in iter_fields(collection):
                if f == 1 and isinstance(node_list, bytes):
                    steps += [_text(v) for k, _, v in iter_fields(node_list) if k == 1]
    return GraphNodes(tuple(nodes), tuple(steps))


def read_graph_nodes(path: Path) -> GraphNodes:
    """The nodes of the ``.meta`` file at ``path``.

    Raises:
        OSError: the file cannot be read.
        ProtoError: it is not a MetaGraphDef.
    """
    return parse_graph_nodes(path.read_bytes())
