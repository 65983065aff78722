"""The object graph's derived data (original names, slot keys, aliases), read straight from
protobuf's parsed message and on first use, agrees with a plain second reading of the wire
format (tests/object_graph_oracle.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import object_graph_oracle as oracle
from models import keras3_model

from ckptmigrate import open_checkpoint
from ckptmigrate.formats.object_graph import OBJECT_GRAPH_KEY, ObjectGraph
from ckptmigrate.targets.checkpoint import inventory_of


def _graph_bytes(prefix: str | Path) -> bytes:
    with open_checkpoint(prefix) as checkpoint:
        assert checkpoint.object_graph_bytes is not None
        return checkpoint.object_graph_bytes


def _assert_derivations_agree(data: bytes) -> None:
    nodes = oracle.parse(data)
    graph = ObjectGraph(data)
    assert graph.original_names == oracle.original_names(nodes)
    assert graph.slot_keys == oracle.slot_keys(nodes)
    assert graph.aliases == oracle.aliases(nodes)
    assert graph.paths().as_dict() == oracle.paths(nodes)


def test_optimizer_slot_variables(tf: Any, tmp_path: Path) -> None:
    model = tf.Module()
    model.kernel = tf.Variable(np.ones((2, 2), np.float32))
    model.bias = tf.Variable(np.zeros(2, np.float32))
    optimizer = tf.compat.v1.train.AdamOptimizer(0.1)  # slot variables in the object graph
    optimizer.minimize(lambda: tf.reduce_sum(model.kernel) + tf.reduce_sum(model.bias))
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    data = _graph_bytes(checkpoint.write(str(tmp_path / "ckpt")))
    assert len(oracle.slot_keys(oracle.parse(data))) == 4  # the case is covered
    _assert_derivations_agree(data)


def test_keras3_weights_reachable_twice(tf: Any, tmp_path: Path) -> None:
    model = keras3_model()  # the optimizer lists the model's weights again
    data = _graph_bytes(tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt")))
    assert any(len(v) > 1 for v in oracle.aliases(oracle.parse(data)).values())
    _assert_derivations_agree(data)


def test_shared_objects_and_cycles(tf: Any, tmp_path: Path) -> None:
    shared = tf.Module()
    shared.kernel = tf.Variable(np.ones(2, np.float32))
    root = tf.Module()
    root.a, root.b = shared, shared
    root.a.back = root  # a cycle back to the root
    many = tf.Module()
    many.layers = [shared] * 12  # more paths than are kept per node
    root.many = many
    data = _graph_bytes(tf.train.Checkpoint(root=root).write(str(tmp_path / "ckpt")))
    _assert_derivations_agree(data)
    _assert_derivations_agree(b"")  # an empty graph


def test_inventory_leaves_the_aliases_undone(tf: Any, tmp_path: Path) -> None:
    """Listing and comparing checkpoints reads the parsed graph directly and derives only
    what it needs."""
    model = keras3_model(train=False)
    prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    with open_checkpoint(prefix) as checkpoint:
        assert checkpoint.graph is not None
        assert checkpoint.original_names  # what inspect needs ...
        assert "aliases" not in vars(checkpoint.graph)  # ... leaves the aliases undone
        inventory = inventory_of(checkpoint)
        assert OBJECT_GRAPH_KEY in inventory.variables


def _chain_graph(length: int) -> tuple[bytes, str]:
    """A TrackableObjectGraph of ``length`` objects, each the only child ``c`` of the one
    before, the last holding a variable: what a deeply nested model, or a hostile file,
    looks like."""
    from ckptmigrate.formats.protowire import MessageWriter

    key = "c/" * (length - 1) + ".ATTRIBUTES/VARIABLE_VALUE"
    graph = MessageWriter()
    for node in range(length):
        obj = MessageWriter()
        if node + 1 < length:
            obj.bytes_(1, MessageWriter().varint(1, node + 1).bytes_(2, b"c").getvalue())
        else:
            tensor = MessageWriter().bytes_(1, b"VARIABLE_VALUE").bytes_(2, b"v")
            obj.bytes_(2, tensor.bytes_(3, key.encode()).getvalue())
        graph.bytes_(1, obj.getvalue())
    return graph.getvalue(), key


def test_a_long_chain_of_objects_costs_linear_time_and_memory() -> None:
    """Paths are links, not strings: a 16,000-object chain took 10.6 s and 2.08 GB, almost
    all of it the path strings of objects no key needs."""
    import tracemalloc

    from ckptmigrate.formats.object_graph import rebuild_object_graph

    data, key = _chain_graph(16_000)
    tracemalloc.start()
    graph = ObjectGraph(data)
    assert graph.aliases == {key: [key]}
    moved = key.replace("c/c/.ATTRIBUTES", "c/.ATTRIBUTES")  # one object up the chain
    rebuilt = rebuild_object_graph(data, {moved: key})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert ObjectGraph(rebuilt).aliases == {moved: [moved]}
    assert peak < 200 << 20  # the path strings alone were ~2 GB
