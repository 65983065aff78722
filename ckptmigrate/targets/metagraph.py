"""A TF1 MetaGraph (`.meta`) as a target: the variables its Saver would restore."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .._tf import import_tensorflow
from ..errors import CkptMigrateError
from ..inventory import Inventory, Scheme, VariableSpec
from ..names import classify, graph_roles


def graph_variables(graph: Any) -> dict[str, VariableSpec]:
    """name -> spec for every global variable of a TF1 graph; a partitioned variable is
    listed once, under its full name and full shape, as the Saver stores it. Roles come
    from the ops that update each variable, then from the naming table."""
    tf = import_tensorflow()
    steps = [
        getattr(v, "op", v).name for v in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_STEP)
    ]
    nodes = ((n.name, n.op, tuple(n.input)) for n in graph.as_graph_def().node)
    declared = graph_roles(nodes, steps)  # what the graph's ops do to each variable
    variables: dict[str, VariableSpec] = {}
    for var in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES):
        info = getattr(var, "_save_slice_info", None)
        if info is not None:
            name, shape = info.full_name, tuple(int(d) for d in info.full_shape)
            storage = "partitioned"
        else:
            name, shape = var.op.name, tuple(int(d) for d in var.shape)
            storage = "resource" if var.op.type == "VarHandleOp" else "ref"
        dtype = var.dtype.base_dtype.name
        variables[name] = VariableSpec(
            name,
            shape,
            {"half": "float16"}.get(dtype, dtype),
            declared.get(name) or classify(name),
            storage=storage,
        )
    return variables


def import_meta_graph(path: Path) -> Any:
    """The TF1 graph a `.meta` file describes, imported into a new graph."""
    tf = import_tensorflow()
    graph = tf.Graph()
    logger = tf.get_logger()
    level = logger.level
    # Importing an old graph logs TensorFlow's deprecation notices for its ops: about
    # TensorFlow's API, not the user's checkpoint, so they stay off the user's terminal.
    logger.setLevel("ERROR")
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tf.compat.v1.train.import_meta_graph(str(path), clear_devices=True)
        except Exception as e:  # TF raises many types for a bad graph; translate once
            raise CkptMigrateError(
                f"TensorFlow cannot import this MetaGraph: {str(e).splitlines()[0]}",
                path=path,
                hint="graphs with custom ops need those ops' Python package imported; a spec "
                "file or a builder function describes the model without the graph.",
            ) from e
        finally:
            logger.setLevel(level)
    return graph


def load_metagraph(path: Path) -> Inventory:
    variables = graph_variables(import_meta_graph(path))
    if not variables:
        raise CkptMigrateError("this MetaGraph has no variables", path=path)
    return Inventory("metagraph", str(path), Scheme.TF1, variables)
