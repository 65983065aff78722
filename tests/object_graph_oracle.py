"""A second, deliberately plain reading of a TrackableObjectGraph, for differential tests:
the wire format walked with the project's own protowire decoder (not protobuf's C parser,
which ObjectGraph uses), one Python object per node, the derivations written the obvious way.

Field numbers (trackable_object_graph.proto): TrackableObjectGraph.nodes = 1;
TrackableObject.children = 1, attributes = 2, slot_variables = 3; ObjectReference.node_id = 1,
local_name = 2; SerializedTensor.name = 1, full_name = 2, checkpoint_key = 3;
SlotVariableReference.original_variable_node_id = 1, slot_name = 2, slot_variable_node_id = 3.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ckptmigrate.formats.object_graph import (
    MAX_PATHS_PER_NODE,
    OPTIMIZER_SLOT_MARKER,
    VARIABLE_ATTRIBUTE,
    VARIABLE_SUFFIX,
)
from ckptmigrate.formats.protowire import LEN, iter_fields


@dataclass(frozen=True)
class Node:
    children: list[tuple[int, str]]
    attributes: list[tuple[str, str, str]]  # (name, full_name, checkpoint_key)
    slots: list[tuple[int, str, int]]  # (original variable node, slot name, slot node)


def _fields(data: bytes) -> dict[int, list[int | bytes]]:
    out: dict[int, list[int | bytes]] = {}
    for number, _, value in iter_fields(data):
        out.setdefault(number, []).append(value)
    return out


def _text(fields: dict[int, list[int | bytes]], number: int) -> str:
    value = fields.get(number, [b""])[-1]
    assert isinstance(value, bytes)
    return value.decode("utf-8", "surrogateescape")


def _int(fields: dict[int, list[int | bytes]], number: int) -> int:
    value = fields.get(number, [0])[-1]
    assert isinstance(value, int)
    return value


def parse(data: bytes) -> list[Node]:
    nodes = []
    for number, wire, raw in iter_fields(data):
        if number != 1 or wire != LEN:
            continue
        assert isinstance(raw, bytes)
        node = _fields(raw)
        children, attributes, slots = [], [], []
        for value in node.get(1, []):
            assert isinstance(value, bytes)
            ref = _fields(value)
            children.append((_int(ref, 1), _text(ref, 2)))
        for value in node.get(2, []):
            assert isinstance(value, bytes)
            tensor = _fields(value)
            attributes.append((_text(tensor, 1), _text(tensor, 2), _text(tensor, 3)))
        for value in node.get(3, []):
            assert isinstance(value, bytes)
            slot = _fields(value)
            slots.append((_int(slot, 1), _text(slot, 2), _int(slot, 3)))
        nodes.append(Node(children, attributes, slots))
    return nodes


def original_names(nodes: list[Node]) -> dict[str, str]:
    return {key: full for node in nodes for _, full, key in node.attributes if full and key}


def slot_keys(nodes: list[Node]) -> set[str]:
    keys = set()
    for node in nodes:
        for _, _, slot_node in node.slots:
            if 0 <= slot_node < len(nodes):
                keys.update(key for _, _, key in nodes[slot_node].attributes)
    return keys


def paths(nodes: list[Node]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {0: [""]} if nodes else {}
    queue = deque([(0, "")]) if nodes else deque()
    while queue:
        node, path = queue.popleft()
        for child, name in nodes[node].children:
            if not 0 <= child < len(nodes):
                continue
            child_path = f"{path}/{name}" if path else name
            known = found.setdefault(child, [])
            if len(known) >= MAX_PATHS_PER_NODE:
                continue
            known.append(child_path)
            queue.append((child, child_path))
    return found


def aliases(nodes: list[Node]) -> dict[str, list[str]]:
    where = paths(nodes)
    out: dict[str, list[str]] = {}
    for node_id, node in enumerate(nodes):
        for name, _, key in node.attributes:
            if name == VARIABLE_ATTRIBUTE and key:
                out[key] = [p + VARIABLE_SUFFIX for p in where.get(node_id, [])]
    for optimizer_id, node in enumerate(nodes):
        for variable_id, slot_name, slot_id in node.slots:
            if not 0 <= slot_id < len(nodes):
                continue
            found = [
                f"{v}{OPTIMIZER_SLOT_MARKER}{o}/{slot_name}{VARIABLE_SUFFIX}"
                for v in where.get(variable_id, [])
                for o in where.get(optimizer_id, [])
            ][:MAX_PATHS_PER_NODE]
            for _, _, key in nodes[slot_id].attributes:
                if key:
                    out.setdefault(key, []).extend(found)
    return out
