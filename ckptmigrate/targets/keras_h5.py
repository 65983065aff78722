"""Keras weight files as targets, read with h5py: Keras 3 ``.weights.h5``
(``layers/<layer>/vars/<i>``) and legacy tf-keras ``.h5`` (full models or weights only,
``<layer>/<weight>:0``). A ``.keras`` archive is loaded with Keras and inventoried as a model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import CkptMigrateError
from ..inventory import Inventory, Scheme, VariableSpec
from ..names import VARIABLE_SUFFIX, Role


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
    import numpy as np

    names = np.asarray(group.attrs.get(attr, []))
    if names.ndim != 1:  # a scalar where Keras writes a list of names
        names = names.reshape(-1)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _child(group: Any, name: str, what: str, path: Path) -> Any:
    """``group[name]``, which a legacy file's name lists say exists."""
    if name not in group:
        raise CkptMigrateError(
            f"its {what} list names {name!r}, which {group.name} does not hold",
            path=path,
            hint="the file is damaged, or was not written by Keras.",
        )
    child = group[name]
    if what == "weight_names" and not hasattr(child, "shape"):
        raise CkptMigrateError(
            f"its weight_names list names {name!r}, a group in {group.name}, not a dataset",
            path=path,
            hint="the file is damaged, or was not written by Keras.",
        )
    return child


def _legacy_attribute(layer: str, weight: str) -> str:
    """The path below its layer that tf-keras tracks a legacy ``.h5`` weight by:
    ``conv2d_1/kernel:0`` -> ``kernel``, ``lstm/lstm_cell/kernel:0`` -> ``cell/kernel``."""
    name = weight.removesuffix(":0")
    rest = name[len(layer) + 1 :] if name.startswith(layer + "/") else name.rpartition("/")[2]
    return "/".join("cell" if p.endswith("_cell") else p for p in rest.split("/"))


def _legacy_weights(path: Path, root: Any) -> Inventory:
    """A legacy tf-keras ``.h5`` as the object paths its model restores a TensorFlow
    checkpoint by (``model.load_weights(CKPT)``: ``layer_with_weights-N/<weight>``), inferred
    from its layers' order; the stored weight names are the original names."""
    weights = root.get("model_weights", root)
    variables: dict[str, VariableSpec] = {}
    index = 0
    for layer in _attr_names(weights, "layer_names"):
        group = _child(weights, layer, "layer_names", path)
        names = _attr_names(group, "weight_names")
        for weight in names:
            dataset = _child(group, weight, "weight_names", path)
            attribute = _legacy_attribute(layer, weight)
            key = f"layer_with_weights-{index}/{attribute}{VARIABLE_SUFFIX}"
            variables[key] = VariableSpec(
                key,
                tuple(int(d) for d in dataset.shape),
                _dtype_name(dataset),
                Role.MODEL,
                weight.removesuffix(":0"),
            )
        index += bool(names)
    note = (
        "legacy Keras .h5: compared as tf-keras model.load_weights(CKPT) restores into the "
        "model it holds, by object path (layer_with_weights-N/<weight>), inferred from the "
        "layers' order"
    )
    return Inventory("keras", str(path), Scheme.TF2, variables, (note,))


def _load_legacy_model(path: Path, keras3: bool) -> tuple[Any, str | None]:
    """The full model a legacy ``.h5`` holds, loaded with the Keras that wrote it (tf-keras,
    or Keras 3 for an ``.h5`` Keras 3 saved), or why it could not be."""
    from .._tf import import_tf_keras, tf_keras_safe_mode

    if keras3:
        try:
            return load_keras_model(path), None
        except CkptMigrateError as e:
            return None, e.message
    try:
        tf_keras = import_tf_keras()
        # A Lambda layer's marshalled Python ran on load: `check --target old.h5` executed
        # code from the file. Refused here, the model's paths are inferred instead.
        with tf_keras_safe_mode():
            return tf_keras.models.load_model(str(path), compile=False), None
    except CkptMigrateError as e:
        return None, e.message
    except Exception as e:  # custom layers, a newer format: Keras says which
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _legacy_model(path: Path, inferred: Inventory, keras3: bool) -> Inventory:
    """A full legacy ``.h5`` model: its keys as TensorFlow saves the model Keras loads, so
    exactly what ``load_model(h5).load_weights(CKPT)`` looks up; the inferred paths when
    Keras cannot load it (said in a note)."""
    from .live import inventory_of_object

    loader = "Keras 3" if keras3 else "tf-keras"
    model, failure = _load_legacy_model(path, keras3)
    if model is None:
        note = f"{loader} could not load the model ({failure}); object paths were inferred"
        return replace(inferred, notes=(*inferred.notes, note))
    loaded = inventory_of_object(model, str(path))
    note = (
        f"legacy Keras .h5 model, loaded with {loader}: keys are what "
        "tf.train.Checkpoint(<model>) restores"
        + ("" if keras3 else " (tf-keras model.load_weights(CKPT))")
    )
    return replace(loaded, kind="keras", notes=(note,))


def _refuse_foreign_links(path: Path, root: Any) -> None:
    """Refuse links Keras never writes that would make reading the file read elsewhere.

    An external link names a dataset in another file (any path on this machine): h5py
    follows it on access, so the target's shapes, and Keras' loaded values, came from that
    file. A soft link that does not resolve (a loop, or a missing object) raised h5py's
    RuntimeError. Soft links that resolve inside the file are followed, as Keras follows
    them. Groups are listed through hard links only (visititems), each once.
    """
    import h5py

    groups = [root]
    root.visititems(lambda _, obj: groups.append(obj) if isinstance(obj, h5py.Group) else None)
    links = [
        (group, name, group.get(name, getlink=True), f"{group.name.rstrip('/')}/{name}")
        for group in groups
        for name in group
    ]
    # External links first: resolving a soft link below could pass through one.
    for _, _, link, where in links:
        if isinstance(link, h5py.ExternalLink):
            raise CkptMigrateError(
                f"{where} is an HDF5 external link to {link.path} in {link.filename}; "
                "links into other files are refused, never followed",
                path=path,
                hint="Keras weight files hold their weights themselves; save the model "
                "again, or copy the linked datasets into the file (h5py, h5copy).",
            )
        if not isinstance(link, h5py.HardLink | h5py.SoftLink):
            raise CkptMigrateError(
                f"{where} is a {type(link).__name__}, which Keras never writes",
                path=path,
                hint="Keras weight files hold only groups and datasets.",
            )
    for group, name, link, where in links:
        if isinstance(link, h5py.SoftLink):
            try:
                group[name]
            except (KeyError, RuntimeError, OSError):
                raise CkptMigrateError(
                    f"{where} is a soft link to {link.path}, which does not resolve (a link "
                    "loop, or a missing object)",
                    path=path,
                    hint="the file is damaged, or was not written by Keras.",
                ) from None


def load_keras_h5(path: Path) -> Inventory:
    import h5py

    full_model = keras3 = False
    try:
        with h5py.File(path, "r") as root:
            _refuse_foreign_links(path, root)
            if "layer_names" in root.attrs or "model_weights" in root:
                inventory = _legacy_weights(path, root)
                full_model = "model_config" in root.attrs
                version = root.attrs.get("keras_version", b"")
                keras3 = (version.decode() if isinstance(version, bytes) else str(version))[
                    :2
                ] == "3."
            else:
                inventory = _keras3_weights(path, root)
    except OSError as e:
        raise CkptMigrateError(f"h5py cannot read this file: {e}", path=path) from e
    if not inventory.variables:
        raise CkptMigrateError(
            "no weights found in this HDF5 file", path=path, hint="is it a Keras weights file?"
        )
    return _legacy_model(path, inventory, keras3) if full_model else inventory


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
