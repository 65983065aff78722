"""The `_CHECKPOINTABLE_OBJECT_GRAPH` entry of TF2 object-based checkpoints.

It is a serialized TrackableObjectGraph (trackable_object_graph.proto): a list of nodes,
each with named children, the tensors it saved (``attributes``: checkpoint key plus the
variable's original ``full_name``) and its optimizer slot variables. Only reading is
needed here; rewriting unchanged copies the bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from typing import Any

from .messages import parse_object_graph_message
from .protowire import LEN, MessageWriter, ProtoError, iter_fields, paused_gc

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


def _msg(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ProtoError("expected a message")
    return value


def _str(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _parse_message(data: bytes) -> Any:
    try:
        return parse_object_graph_message(data)
    except Exception as e:  # google.protobuf.message.DecodeError, without importing it
        raise ProtoError(f"not a TrackableObjectGraph ({e})") from None


MAX_PATHS_PER_NODE = 8  # objects reachable many ways (shared layers) keep a few paths
VARIABLE_ATTRIBUTE = "VARIABLE_VALUE"
# The key grammar of object-based checkpoints (names.py re-exports these).
VARIABLE_SUFFIX = "/.ATTRIBUTES/" + VARIABLE_ATTRIBUTE
OPTIMIZER_SLOT_MARKER = "/.OPTIMIZER_SLOT/"
# The step counter an optimizer tracks: tf-keras OptimizerV2, Keras 3 (and Keras 3's alias).
OPTIMIZER_STEP_CHILDREN = frozenset({"iter", "_iterations"})


Children = Callable[[int], Iterable[tuple[int, str]]]
"""(child id, local name) pairs of a node."""


class PathIndex:
    """Every way (up to ``MAX_PATHS_PER_NODE`` per node) from the root object (node 0) to
    each node along named children, breadth first.

    A way is kept as a link to one of its parent's ways, not as a string: the strings of a
    chain of n objects add up to n² characters (a 288 KB checkpoint of a 16,000-object
    chain took 10 s and 2 GB), so they are built only for the nodes asked about."""

    def __init__(self, count: int, children: Children) -> None:
        # node -> its ways, each (parent node, index of the parent's way, local name)
        self._ways: dict[int, list[tuple[int, int, str]]] = {0: [(-1, -1, "")]} if count else {}
        self._children = children
        self._count = count
        queue = [(0, 0)] if count else []
        # A list walked by index is the FIFO queue: nothing is ever popped.
        for node, way in queue:
            for child, name in children(node):
                if not 0 <= child < count:
                    continue
                known = self._ways.setdefault(child, [])
                if len(known) >= MAX_PATHS_PER_NODE:
                    continue  # also ends cycles: each node takes a bounded number of ways
                known.append((node, way, name))
                queue.append((child, len(known) - 1))

    def strings(self, node: int) -> list[str]:
        """The node's paths (``model/layer-0/kernel``); the root's is ``""``."""
        return [self._string(node, way) for way in range(len(self._ways.get(node, ())))]

    def _string(self, node: int, way: int) -> str:
        names: list[str] = []
        while True:  # up the links to the root's first way, which has no parent
            parent, parent_way, name = self._ways[node][way]
            if parent < 0:
                return "/".join(reversed(names))
            names.append(name)
            node, way = parent, parent_way

    def as_dict(self) -> dict[int, list[str]]:
        """node id -> its paths, for every node reached."""
        return {node: self.strings(node) for node in self._ways}

    def find(self, path: str) -> int | None:
        """The node a path leads to, following children whose names spell it (a name may
        hold a '/'); None if none does. Linear in the path, whatever the graph's depth."""
        pending = [(0, 0)] if self._count else []
        seen: set[tuple[int, int]] = set()
        while pending:
            node, at = pending.pop()
            if at == len(path):
                return node
            if (node, at) in seen:
                continue
            seen.add((node, at))
            start = at + 1 if at else 0  # after the '/' that ends the previous name
            for child, name in self._children(node):
                end = start + len(name)
                if not name or not 0 <= child < self._count or not path.startswith(name, start):
                    continue
                if end == len(path) or path[end] == "/":
                    pending.append((child, end))
        return None


class ObjectGraph:
    """A parsed object graph whose derived data is computed on first use.

    Read straight from protobuf's parsed message: building a Python object per node first
    costs ~0.1 s for a 20,000-node graph, several times the derivations themselves."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._message = _parse_message(data)  # malformed bytes fail here, at open

    @cached_property
    def _facts(self) -> tuple[list[tuple[int, str, str, str]], list[tuple[int, int, str, int]]]:
        """One pass over the nodes: (node id, attribute name, full name, checkpoint key) of
        every saved tensor, and (optimizer node id, original variable node id, slot name,
        slot variable node id) of every slot reference."""
        attributes = []
        slots = []
        with paused_gc():
            for node_id, node in enumerate(self._message.nodes):
                for a in node.attributes:
                    attributes.append(
                        (
                            node_id,
                            a.name.decode("utf-8", "surrogateescape"),
                            a.full_name.decode("utf-8", "surrogateescape"),
                            a.checkpoint_key.decode("utf-8", "surrogateescape"),
                        )
                    )
                for s in node.slot_variables:
                    slots.append(
                        (
                            node_id,
                            s.original_variable_node_id,
                            s.slot_name.decode("utf-8", "surrogateescape"),
                            s.slot_variable_node_id,
                        )
                    )
        return attributes, slots

    @property
    def _attributes(self) -> list[tuple[int, str, str, str]]:
        return self._facts[0]

    @property
    def _slots(self) -> list[tuple[int, int, str, int]]:
        return self._facts[1]

    def _keys_by_node(self) -> dict[int, list[str]]:
        by_node: dict[int, list[str]] = {}
        for node_id, _, _, key in self._attributes:
            by_node.setdefault(node_id, []).append(key)
        return by_node

    @cached_property
    def original_names(self) -> dict[str, str]:
        return {key: full for _, _, full, key in self._attributes if full and key}

    @cached_property
    def slot_keys(self) -> set[str]:
        keys: set[str] = set()
        if self._slots:
            count = len(self._message.nodes)
            by_node = self._keys_by_node()
            for _, _, _, slot_id in self._slots:
                if 0 <= slot_id < count:
                    keys.update(by_node.get(slot_id, ()))
        return keys

    @cached_property
    def optimizer_state(self) -> dict[str, str]:
        """checkpoint key -> its name under the optimizer that owns it, for every value an
        optimizer node owns, whatever attribute the optimizer hangs under
        (``actor_optimizer/iter`` -> ``iter``).

        An optimizer node is one that holds slot references (every TF2 optimizer with
        slots), or one with an ``iter`` (tf-keras) or ``_iterations`` (Keras 3) variable.
        It owns the nodes below it that no path from the root reaches except through an
        optimizer (so not the model variables a Keras 3 optimizer lists in
        ``_trainable_variables``), and its slot variables."""
        nodes = self._message.nodes
        count = len(nodes)
        if not count:
            return {}
        by_node = self._keys_by_node()

        def children(node: int) -> Iterator[tuple[int, str]]:
            for child in nodes[node].children:
                if 0 <= child.node_id < count:
                    yield child.node_id, child.local_name.decode("utf-8", "surrogateescape")

        optimizers = {optimizer_id for optimizer_id, _, _, _ in self._slots}
        for node_id in range(count):
            for child_id, name in children(node_id):
                if name in OPTIMIZER_STEP_CHILDREN and by_node.get(child_id):
                    optimizers.add(node_id)
        if not optimizers:
            return {}
        outside = {0}  # reachable from the root without passing through an optimizer
        queue = [0] if 0 not in optimizers else []
        for node in queue:
            for child_id, _ in children(node):
                if child_id not in outside and child_id not in optimizers:
                    outside.add(child_id)
                    queue.append(child_id)
        owned: dict[int, str] = {}
        for optimizer_id in sorted(optimizers):
            walk = [(optimizer_id, "")]
            for node, path in walk:
                for child_id, name in children(node):
                    if name == "_trainable_variables" or child_id in outside:
                        continue
                    if child_id in owned or child_id in optimizers:
                        continue
                    owned[child_id] = f"{path}/{name}" if path else name
                    walk.append((child_id, owned[child_id]))
        for _, _, slot_name, slot_id in self._slots:
            if 0 <= slot_id < count:
                owned.setdefault(slot_id, slot_name)
        return {key: name for node, name in owned.items() for key in by_node.get(node, ())}

    def paths(self) -> PathIndex:
        """Every node's paths from the root (see :class:`PathIndex`)."""
        nodes = self._message.nodes

        def children(node: int) -> Iterator[tuple[int, str]]:
            for child in nodes[node].children:
                yield child.node_id, child.local_name.decode("utf-8", "surrogateescape")

        return PathIndex(len(nodes), children)

    @cached_property
    def aliases(self) -> dict[str, list[str]]:
        """checkpoint key -> every key-shaped path a restore could reach the same value by.

        TF2 restores by walking the object graph, not by comparing keys: a variable
        reachable as ``model/layer-0/kernel`` and ``model/optimizer/_trainable_variables/0``
        restores through either, while its key records only the first path saved."""
        with paused_gc():
            paths = self.paths()
            suffix = VARIABLE_SUFFIX
            aliases: dict[str, list[str]] = {}
            for node_id, name, _, key in self._attributes:
                if name == VARIABLE_ATTRIBUTE and key:
                    aliases[key] = [p + suffix for p in paths.strings(node_id)]
            if not self._slots:
                return aliases
            count = len(self._message.nodes)
            by_node = self._keys_by_node()
            for optimizer_id, variable_id, slot_name, slot_id in self._slots:
                if not 0 <= slot_id < count:
                    continue
                # A slot follows its variable through whichever path reached it: every
                # way to the variable pairs with the optimizer's first way before its
                # later ones (a Keras model's optimizer loops back through 'root', and
                # its ways alone would fill the bound with one variable path).
                var_paths = paths.strings(variable_id)
                opt_paths = paths.strings(optimizer_id)
                combined = sorted(
                    (
                        (i + j, i, var_path, opt_path)
                        for i, var_path in enumerate(var_paths)
                        for j, opt_path in enumerate(opt_paths)
                    ),
                    key=lambda c: (c[0], c[1]),
                )[:MAX_PATHS_PER_NODE]
                found = [
                    f"{var_path}{OPTIMIZER_SLOT_MARKER}{opt_path}/{slot_name}{suffix}"
                    for _, _, var_path, opt_path in combined
                ]
                for key in by_node.get(slot_id, ()):
                    if key:
                        aliases.setdefault(key, []).extend(found)
            return aliases


class ObjectGraphEditError(ValueError):
    """A change the object graph cannot express (no object at the new path, two values
    for one object); the message names the key and the path."""


Field = tuple[int, int, int | bytes]


def _encode_fields(fields: list[Field]) -> bytes:
    out = MessageWriter()
    for number, wire, value in fields:
        out.raw(number, wire, value)
    return out.getvalue()


def _attribute(fields: list[Field]) -> dict[int, str]:
    return {
        n: v.decode("utf-8", "surrogateescape")
        for n, w, v in fields
        if w == LEN and isinstance(v, bytes) and n in (1, 2, 3)
    }


def _with_key(fields: list[Field], key: str) -> list[Field]:
    encoded = key.encode("utf-8", "surrogateescape")
    out = [f for f in fields if f[0] != 3]
    out.append((3, LEN, encoded))
    return sorted(out, key=lambda f: f[0])


def rebuild_object_graph(data: bytes, outputs: dict[str, str | None]) -> bytes:
    """The object graph for a checkpoint whose variables are ``outputs`` (new key -> the
    source key it came from, None for new variables). Values move to the objects their new
    keys name; slot references follow moved variables; removed keys leave their objects.

    Raises:
        ObjectGraphEditError: the change cannot be expressed, or the graph holds wire data
            this rewriter does not handle (groups, which protobuf keeps as unknown fields).
    """
    try:
        return _rebuild(data, outputs)
    except ProtoError as e:
        raise ObjectGraphEditError(
            f"the object graph holds fields this version cannot rewrite ({e})"
        ) from None


def _rebuild(data: bytes, outputs: dict[str, str | None]) -> bytes:
    top = list(iter_fields(data))
    raw_nodes = [list(iter_fields(_msg(v))) for n, w, v in top if n == 1 and w == LEN]

    def children(node: int) -> Iterator[tuple[int, str]]:
        for number, wire, value in raw_nodes[node]:
            if number == 1 and wire == LEN:  # an ObjectReference: node_id 1, local_name 2
                reference = {n: v for n, _, v in iter_fields(_msg(value))}
                child, name = reference.get(1, 0), reference.get(2, b"")
                if isinstance(child, int) and isinstance(name, bytes):
                    yield child, _str(name)

    paths = PathIndex(len(raw_nodes), children)
    owner: dict[str, tuple[int, list[Field]]] = {}  # source key -> (node, attribute fields)
    for node_id, fields in enumerate(raw_nodes):
        for number, wire, value in fields:
            if number == 2 and wire == LEN:
                attribute = list(iter_fields(_msg(value)))
                key = _attribute(attribute).get(3)
                if key:
                    owner[key] = (node_id, attribute)
    unchanged = {new for new, old in outputs.items() if new == old}
    kept: list[list[Field]] = []
    for fields in raw_nodes:  # every attribute not kept in place is taken off its object
        kept.append(
            [
                f
                for f in fields
                if not (
                    f[0] == 2
                    and f[1] == LEN
                    and _attribute(list(iter_fields(_msg(f[2])))).get(3) not in unchanged
                )
            ]
        )
    moved: dict[int, int] = {}
    occupied = {
        owner[key][0] for key in unchanged if key in owner and OPTIMIZER_SLOT_MARKER not in key
    }
    for new, old in sorted(outputs.items()):
        if new == old:
            continue
        if OPTIMIZER_SLOT_MARKER in new:
            if old is None or old not in owner:
                raise ObjectGraphEditError(
                    f"{new!r} is a new optimizer slot; slots can only be renamed with their "
                    "variable"
                )
            node_id, attribute = owner[old]
            kept[node_id].append((2, LEN, _encode_fields(_with_key(attribute, new))))
            continue
        if not new.endswith(VARIABLE_SUFFIX):
            raise ObjectGraphEditError(f"{new!r} is not an object-based variable key")
        path = new[: -len(VARIABLE_SUFFIX)]
        target = paths.find(path)
        if target is None:
            raise ObjectGraphEditError(
                f"no object at {path!r} in the checkpoint's object graph, so nothing would "
                f"restore {new!r}"
            )
        if target in occupied:
            raise ObjectGraphEditError(f"the object at {path!r} would hold two values")
        occupied.add(target)
        if old is not None and old in owner:
            attribute = _with_key(owner[old][1], new)
            moved[owner[old][0]] = target
        else:
            name = path.encode("utf-8", "surrogateescape")
            attribute = [
                (1, LEN, VARIABLE_ATTRIBUTE.encode()),
                (2, LEN, name),
                (3, LEN, new.encode("utf-8", "surrogateescape")),
            ]
        kept[target].append((2, LEN, _encode_fields(attribute)))
    rebuilt_nodes = []
    for fields in kept:
        rebuilt: list[Field] = []
        for number, wire, value in fields:
            if number == 3 and wire == LEN and moved:  # a slot reference: follow moves
                ref: list[Field] = [
                    (n, w, moved.get(v, v) if n == 1 and isinstance(v, int) else v)
                    for n, w, v in iter_fields(_msg(value))
                ]
                rebuilt.append((number, wire, _encode_fields(ref)))
            else:
                rebuilt.append((number, wire, value))
        rebuilt.sort(key=lambda f: f[0])
        rebuilt_nodes.append(_encode_fields(rebuilt))
    out: list[Field] = [(1, LEN, node) for node in rebuilt_nodes]
    out += [f for f in top if not (f[0] == 1 and f[1] == LEN)]
    return _encode_fields(out)
