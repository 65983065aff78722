"""The `_CHECKPOINTABLE_OBJECT_GRAPH` entry of TF2 object-based checkpoints.

It is a serialized TrackableObjectGraph (trackable_object_graph.proto): a list of nodes,
each with named children, the tensors it saved (``attributes``: checkpoint key plus the
variable's original ``full_name``) and its optimizer slot variables. Only reading is
needed here; rewriting unchanged copies the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protowire import LEN, VARINT, ProtoError, iter_fields

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


@dataclass(frozen=True, slots=True)
class SerializedTensor:
    name: str
    full_name: str
    checkpoint_key: str


@dataclass(frozen=True, slots=True)
class SlotReference:
    original_variable_node_id: int
    slot_name: str
    slot_variable_node_id: int


@dataclass(frozen=True, slots=True)
class TrackableNode:
    children: tuple[tuple[int, str], ...]  # (node id, local name)
    attributes: tuple[SerializedTensor, ...]
    slot_variables: tuple[SlotReference, ...]


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ProtoError("expected a string")
    return value.decode("utf-8", "surrogateescape")


def _num(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise ProtoError("expected a number")
    return value


def _msg(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ProtoError("expected a message")
    return value


def parse_object_graph(data: bytes) -> list[TrackableNode]:
    nodes = []
    for number, wire, value in iter_fields(data):
        if number != 1 or wire != LEN:
            continue
        children, attributes, slots = [], [], []
        for field, fwire, fvalue in iter_fields(_msg(value)):
            if field == 1 and fwire == LEN:
                node_id, local = 0, ""
                for n, w, v in iter_fields(_msg(fvalue)):
                    if n == 1 and w == VARINT:
                        node_id = _num(v)
                    elif n == 2 and w == LEN:
                        local = _text(v)
                children.append((node_id, local))
            elif field == 2 and fwire == LEN:
                parts = {1: "", 2: "", 3: ""}
                for n, w, v in iter_fields(_msg(fvalue)):
                    if n in parts and w == LEN:
                        parts[n] = _text(v)
                attributes.append(SerializedTensor(parts[1], parts[2], parts[3]))
            elif field == 3 and fwire == LEN:
                original, slot_name, slot_node = 0, "", 0
                for n, w, v in iter_fields(_msg(fvalue)):
                    if n == 1 and w == VARINT:
                        original = _num(v)
                    elif n == 2 and w == LEN:
                        slot_name = _text(v)
                    elif n == 3 and w == VARINT:
                        slot_node = _num(v)
                slots.append(SlotReference(original, slot_name, slot_node))
        nodes.append(TrackableNode(tuple(children), tuple(attributes), tuple(slots)))
    return nodes


def original_names(nodes: list[TrackableNode]) -> dict[str, str]:
    """checkpoint key -> the variable's name when it was saved, where one is recorded."""
    names = {}
    for node in nodes:
        for attribute in node.attributes:
            if attribute.full_name and attribute.checkpoint_key:
                names[attribute.checkpoint_key] = attribute.full_name
    return names


def slot_keys(nodes: list[TrackableNode]) -> set[str]:
    """Checkpoint keys saved by slot-variable nodes (optimizer state per variable)."""
    keys: set[str] = set()
    for node in nodes:
        for slot in node.slot_variables:
            if 0 <= slot.slot_variable_node_id < len(nodes):
                keys.update(a.checkpoint_key for a in nodes[slot.slot_variable_node_id].attributes)
    return keys


MAX_PATHS_PER_NODE = 8  # objects reachable many ways (shared layers) keep a few paths
VARIABLE_ATTRIBUTE = "VARIABLE_VALUE"


def _node_paths(nodes: list[TrackableNode]) -> dict[int, list[str]]:
    """Every path (up to a few per node) from the root object along named children."""
    from collections import deque

    paths: dict[int, list[str]] = {0: [""]} if nodes else {}
    queue = deque([(0, "")]) if nodes else deque()
    while queue:
        node, path = queue.popleft()
        for child, name in nodes[node].children:
            if not 0 <= child < len(nodes):
                continue
            child_path = f"{path}/{name}" if path else name
            known = paths.setdefault(child, [])
            if len(known) >= MAX_PATHS_PER_NODE:
                continue  # also ends cycles: each node takes a bounded number of paths
            known.append(child_path)
            queue.append((child, child_path))
    return paths


def variable_aliases(nodes: list[TrackableNode]) -> dict[str, list[str]]:
    """checkpoint key -> every key-shaped path a restore could reach the same value by.

    TF2 restores by walking the object graph, not by comparing keys: a variable reachable
    as ``model/layer-0/kernel`` and ``model/optimizer/_trainable_variables/0`` restores
    through either, while its key records only the first path saved."""
    paths = _node_paths(nodes)
    suffix = "/.ATTRIBUTES/" + VARIABLE_ATTRIBUTE
    aliases: dict[str, list[str]] = {}
    for node_id, node in enumerate(nodes):
        for attribute in node.attributes:
            if attribute.name == VARIABLE_ATTRIBUTE and attribute.checkpoint_key:
                found = [p + suffix for p in paths.get(node_id, [])]
                aliases[attribute.checkpoint_key] = found
    for optimizer_id, node in enumerate(nodes):
        for slot in node.slot_variables:
            if not 0 <= slot.slot_variable_node_id < len(nodes):
                continue
            found = [
                f"{var_path}/.OPTIMIZER_SLOT/{opt_path}/{slot.slot_name}{suffix}"
                for var_path in paths.get(slot.original_variable_node_id, [])
                for opt_path in paths.get(optimizer_id, [])
            ][:MAX_PATHS_PER_NODE]
            for attribute in nodes[slot.slot_variable_node_id].attributes:
                if attribute.checkpoint_key:
                    aliases.setdefault(attribute.checkpoint_key, []).extend(found)
    return aliases
