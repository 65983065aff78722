"""A text GraphDef (``graph.pbtxt``, in every Estimator model_dir) as a target: the graph
only, without the MetaGraph's collections, so its variables are read from the variable ops
themselves: their names are the Saver's keys, with the parts of a partitioned variable
(``w/part_0``, ``w/part_1``) joined along their first axis under the full name ``w``, as
the Saver stores them. Nothing in the graph is run."""

from __future__ import annotations

import re
from pathlib import Path

from .._tf import import_tensorflow
from ..errors import CkptMigrateError
from ..inventory import Inventory, Scheme, VariableSpec
from ..names import classify

__all__ = ["GRAPH_TEXT_SUFFIXES", "load_graph_text"]

GRAPH_TEXT_SUFFIXES = (".pbtxt",)
_VARIABLE_OPS = {"VariableV2": "ref", "Variable": "ref", "VarHandleOp": "resource"}
_PART = re.compile(r"(.*)/part_(\d+)")


def load_graph_text(path: Path) -> Inventory:
    """The variables a Saver built on this graph would restore.

    Raises:
        CkptMigrateError: the file is not a text GraphDef, or has no variables.
    """
    tf = import_tensorflow()
    from google.protobuf import text_format

    graph = tf.compat.v1.GraphDef()
    try:
        text_format.Parse(path.read_text(encoding="utf-8"), graph)
    except (OSError, UnicodeDecodeError, text_format.ParseError) as e:
        raise CkptMigrateError(
            f"cannot read this as a text GraphDef: {str(e).splitlines()[0]}",
            path=path,
            hint="pass the graph.pbtxt TensorFlow wrote, or the model's .meta file.",
        ) from e
    parts: dict[str, list[tuple[int, VariableSpec]]] = {}
    variables: dict[str, VariableSpec] = {}
    for node in graph.node:
        storage = _VARIABLE_OPS.get(node.op)
        if storage is None:
            continue
        shape = tuple(int(d.size) for d in node.attr["shape"].shape.dim)
        dtype = tf.as_dtype(node.attr["dtype"].type).name
        dtype = {"half": "float16"}.get(dtype, dtype)
        spec = VariableSpec(node.name, shape, dtype, classify(node.name), storage=storage)
        part = _PART.fullmatch(node.name)
        if part is not None:
            parts.setdefault(part[1], []).append((int(part[2]), spec))
        else:
            variables[node.name] = spec
    for name, pieces in parts.items():
        pieces.sort()
        first = pieces[0][1]
        rows = sum(p.shape[0] for _, p in pieces if p.shape)
        shape = (rows, *first.shape[1:]) if first.shape else first.shape
        variables[name] = VariableSpec(
            name, shape, first.dtype, classify(name), storage="partitioned"
        )
    if not variables:
        raise CkptMigrateError("this graph has no variables", path=path)
    note = (
        "read from the graph's variable ops (a GraphDef carries no collections: a partitioned "
        "variable is assumed split along its first axis, as TensorFlow's partitioners do)"
    )
    return Inventory("graph", str(path), Scheme.TF1, variables, (note,))
