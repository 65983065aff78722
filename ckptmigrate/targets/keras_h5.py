"""Keras weight files as targets, read with h5py (no TensorFlow): Keras 3 ``.weights.h5``
(``layers/<layer>/vars/<i>``) and legacy tf-keras ``.h5`` (full models or weights only,
``<layer>/<weight>:0``). A ``.keras`` archive is loaded with Keras and inventoried as a model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import CkptMigrateError
from ..inventory import Inventory, Scheme, VariableSpec
from ..names import Role


def _dtype_name(dataset: Any) -> str:
    declared = dataset.attrs.get("dtype")  # Keras stores bfloat16 as opaque 2-byte data
    if declared is not None:
        return declared.decode() if isinstance(declared, bytes) else str(declared)
    name = str(dataset.dtype)
    return {"float16": "float16", "bool": "bool"}.get(name, name)


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


def _keras3_weights(path: Path, root: Any) -> Inventory:
    variables: dict[str, VariableSpec] = {}
    groups: dict[str, list[tuple[str, Any]]] = {}

    def visit(name: str, obj: Any) -> None:
        if hasattr(obj, "shape") and "/vars/" in f"/{name}":
            group, _, index = name.rpartition("/vars/")
            groups.setdefault(group, []).append((index, obj))

    root.visititems(visit)
    for group, items in sorted(groups.items()):
        items.sort(key=lambda item: int(item[0]) if item[0].isdigit() else 0)
        parts = [p for p in group.split("/") if p not in ("layers", "cell", "")]
        in_optimizer = group.startswith("optimizer")
        names = _infer_names(parts[-1] if parts else group, [d for _, d in items])
        for (index, dataset), var_name in zip(items, names, strict=True):
            key = f"{group}/vars/{index}"
            if in_optimizer:
                role = Role.STEP if index == "0" else Role.OPTIMIZER
                original = None
            else:
                role = Role.MODEL
                original = "/".join([*parts, var_name])
            variables[key] = VariableSpec(
                key, tuple(int(d) for d in dataset.shape), _dtype_name(dataset), role, original
            )
    note = (
        "Keras 3 .weights.h5 keeps weights by position; their names (kernel, bias, ...) "
        "were inferred from order and rank"
    )
    return Inventory("keras", str(path), Scheme.KERAS3, variables, (note,))


def _attr_names(group: Any, attr: str) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get(attr, [])]


def _legacy_h5(path: Path, root: Any) -> Inventory:
    weights = root.get("model_weights", root)
    variables: dict[str, VariableSpec] = {}
    for layer in _attr_names(weights, "layer_names"):
        group = weights[layer]
        for weight in _attr_names(group, "weight_names"):
            dataset = group[weight]
            original = weight.removesuffix(":0")
            variables[original] = VariableSpec(
                original,
                tuple(int(d) for d in dataset.shape),
                _dtype_name(dataset),
                Role.MODEL,
                original,
            )
    return Inventory("keras", str(path), Scheme.KERAS2, variables)


def load_keras_h5(path: Path) -> Inventory:
    import h5py

    try:
        with h5py.File(path, "r") as root:
            if "layer_names" in root.attrs or "model_weights" in root:
                inventory = _legacy_h5(path, root)
            else:
                inventory = _keras3_weights(path, root)
    except OSError as e:
        raise CkptMigrateError(f"h5py cannot read this file: {e}", path=path) from e
    if not inventory.variables:
        raise CkptMigrateError(
            "no weights found in this HDF5 file", path=path, hint="is it a Keras weights file?"
        )
    return inventory


def load_keras_model(path: Path) -> Any:
    """A `.keras` archive as a live Keras model (architecture and values)."""
    from .._tf import import_keras

    keras = import_keras()
    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as e:
        raise CkptMigrateError(
            f"Keras cannot load this model: {type(e).__name__}: {str(e).splitlines()[0]}",
            path=path,
            hint="custom layers must be importable; a builder function can construct it.",
        ) from e


def load_keras_archive(path: Path) -> Inventory:
    from .live import inventory_of_object

    return replace(inventory_of_object(load_keras_model(path), str(path)), kind="keras")
