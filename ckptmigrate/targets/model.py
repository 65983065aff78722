"""A target to convert *into*: the keys its restore looks up, exactly as TensorFlow makes them.

``check`` needs only a target's inventory. ``convert --target`` writes what the target
restores, so it also needs the keys TensorFlow generates for it, a TF2 target's object graph
and, for ``--fill-missing-from-target``, its initial values. Every target TensorFlow can
instantiate (a builder, a live object, a ``.keras`` archive, a TF1 ``.meta`` graph) is
therefore saved once, initialised, to a temporary checkpoint: the *template*. A checkpoint
or SavedModel target is its own template. A spec file has none: it only names keys.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._tf import import_tensorflow, keras_backend
from ..checkpoint import Checkpoint, open_checkpoint
from ..errors import CkptMigrateError, OutputError, first_line
from ..inventory import Inventory, Scheme
from ..output_format import OutputFormat
from . import load_target
from .checkpoint import inventory_of
from .detect import TargetKind, detect_target
from .keras_h5 import load_keras_model
from .keras_model import layout_inventory, on_tensorflow
from .live import call_builder, is_keras3_model
from .metagraph import import_meta_graph
from .torch_module import (
    SAFETENSORS_HINT,
    SAFETENSORS_NOT_FROM_A_MODEL,
    is_torch_module,
    state_dict_checkpoint,
)

if TYPE_CHECKING:
    import numpy as np

    from ..formats.keras_weights import KerasLayout

DEFAULT_ROOT = "model"


@dataclass
class TargetModel:
    """What a conversion into a target needs to know about it."""

    inventory: Inventory
    template: Checkpoint | None  # the target's keys, object graph and initial values
    rebuild: str | None  # how another process can load the target again (None: live object)
    root: str | None  # TF2: the attribute the model hangs under (tf.train.Checkpoint(model=))
    live: Any = None  # the instantiated target, when there is one
    keras: KerasLayout | None = None  # --format keras: where each weight goes in .weights.h5

    @property
    def object_graph(self) -> bytes | None:
        return None if self.template is None else self.template.object_graph_bytes

    @property
    def template_origin(self) -> str | None:
        """Where the target's initial values are (a checkpoint prefix or a .weights.h5)."""
        if self.keras is not None:
            return str(self.keras.template)
        return None if self.template is None else str(self.template.prefix)

    def has_initial_value(self, key: str) -> bool:
        return key in self._initial_keys

    def initial_value(self, key: str) -> np.ndarray | None:
        """The value the target holds for ``key`` as instantiated (a graph's initialisers
        run, a builder's model as built, a checkpoint's stored value); None without one."""
        if not self.has_initial_value(key):
            return None
        if self.keras is not None:
            import h5py

            from ..formats.keras_weights import read_dataset

            with h5py.File(self.keras.template, "r") as template:
                return read_dataset(template[key])
        assert self.template is not None
        return self.template.reader.read(key)

    @functools.cached_property
    def _initial_keys(self) -> frozenset[str]:
        if self.keras is not None:
            return frozenset(self.keras.by_h5_path())
        if self.template is None:
            return frozenset()
        return frozenset(self.template.reader.variable_keys())


@contextlib.contextmanager
def open_target_model(
    target: str | Path | Any,
    *,
    root: str | None = DEFAULT_ROOT,
    instance: tuple[Any, str | None, str] | None = None,
    keras_weights: bool = False,
) -> Iterator[TargetModel]:
    """Instantiate ``target`` and save its template; everything lives until the block ends.

    ``root``: for a model (not a ``tf.train.Checkpoint``), the name it is saved under, as in
    ``tf.train.Checkpoint(model=model)``; ``None`` saves the model itself as the root, as
    ``tf.train.Checkpoint(model)`` and tf-keras ``save_weights`` do. ``instance``: the
    target already instantiated (``_instantiate``); ``keras_weights``: a Keras 3 model's
    variables also go by their ``.weights.h5`` dataset paths (aliases)."""
    with contextlib.ExitStack() as stack:
        live, rebuild, kind = instance or _instantiate(target)
        _refuse_other_backend(live, target)
        if live is None:
            inventory = load_target(target)
            _refuse_unwritable(inventory)
            template = None
            if inventory.kind in ("checkpoint", "saved_model"):
                template = stack.enter_context(open_checkpoint(_checkpoint_path(target)))
            yield TargetModel(inventory, template, rebuild, None)
            return
        if is_torch_module(live):  # its state_dict is the template: no TensorFlow
            source = str(target) if rebuild else kind
            template = stack.enter_context(state_dict_checkpoint(live, source))
            yield TargetModel(inventory_of(template, kind, source), template, rebuild, None, live)
            return
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ckptmigrate-")))
        # A .meta file is data: its initialisers are checked before they run. A builder or
        # a live object is the caller's own code, run already.
        prefix = _save_template(
            live, directory / "target", root, str(rebuild or kind), foreign=kind == "metagraph"
        )
        template = stack.enter_context(open_checkpoint(prefix))
        source = str(target) if rebuild else kind
        inventory = inventory_of(template, kind, source)
        if keras_weights and is_keras3_model(live):
            inventory = _with_keras_paths(inventory, live)
        effective_root = None if _is_graph(live) or _is_checkpoint(live) else root
        yield TargetModel(inventory, template, rebuild, effective_root, live)


@contextlib.contextmanager
def open_keras_target(
    target: str | Path | Any, *, instance: tuple[Any, str | None, str] | None = None
) -> Iterator[TargetModel]:
    """A Keras 3 model target for ``--format keras``: its ``.weights.h5`` layout, found by
    Keras itself, with each dataset named by its path in the file and its variable's path
    as the original name (what the map's outputs pair with)."""
    from .keras_layout import keras_layout

    live, rebuild, kind = instance or _instantiate(target)
    if live is None:
        load_target(target)  # a path that doesn't exist, or isn't a target, says so
    if live is None or not is_keras3_model(live):
        raise CkptMigrateError(
            "a Keras output ([[format_keras]]) needs a Keras 3 model as the target",
            path=str(target),
            hint="pass a .keras file or a builder (module:function) returning a Keras 3 model.",
        )
    with keras_layout(live) as layout:
        # On the JAX, PyTorch or NumPy backend there are no TensorFlow keys to know.
        keys = _checkpoint_keys(live) if on_tensorflow() else {}
        note = "Keras 3 weight paths found by saving the target with Keras"
        inventory = layout_inventory(layout, kind, str(rebuild or kind), (note,), keys)
        yield TargetModel(inventory, None, rebuild, None, live, layout)


def _with_keras_paths(inventory: Inventory, model: Any) -> Inventory:
    """Each variable also named by the ``.weights.h5`` dataset that holds it, as Keras lays
    the model out (matched by the variable's path, its original name here)."""
    from dataclasses import replace

    from .keras_layout import keras_layout

    with keras_layout(model) as layout:
        paths = {
            name: tuple(e.h5_path for e in entries)
            for name, entries in layout.by_variable().items()
        }
    variables = {
        key: spec._replace(aliases=(*spec.aliases, *paths.get(name, ())))
        if (name := (spec.original_name or "").removesuffix(":0")) in paths
        else spec
        for key, spec in inventory.variables.items()
    }
    return replace(inventory, variables=variables)


def keras_only(target: Any) -> bool:
    """Whether ``target`` is a live Keras 3 model whose variables TensorFlow does not hold
    (the JAX, PyTorch or NumPy backend): it restores Keras weight files only."""
    return is_keras3_model(target) and not on_tensorflow()


def _refuse_other_backend(live: Any, target: Any) -> None:
    if live is not None and keras_only(live):
        raise CkptMigrateError(
            f"a Keras 3 model on the {keras_backend()} backend restores Keras weight files "
            "(model.load_weights), not TensorFlow checkpoints",
            path=str(target) if isinstance(target, str | Path) else None,
            hint="write a Keras output ([[format_keras]], -o NAME.weights.h5) for it.",
        )


def _checkpoint_keys(model: Any) -> dict[str, tuple[str, ...]]:
    """Variable path -> the key ``tf.train.Checkpoint(model=model)`` saves it under, for
    the variables whose name is unique in that checkpoint: a map written for the
    checkpoint output (``model/_functional/_operations/1/_kernel``) names the same weights
    in a Keras output, so one map serves both."""
    with open_target_model(model, root=DEFAULT_ROOT) as target:
        by_original: dict[str, list[str]] = {}
        for key, spec in target.inventory.variables.items():
            if spec.original_name:
                by_original.setdefault(spec.original_name.removesuffix(":0"), []).append(key)
    return {name: (keys[0],) for name, keys in by_original.items() if len(keys) == 1}


def open_conversion_target(
    target: str | Path | Any,
    *,
    root: str | None = DEFAULT_ROOT,
    format: OutputFormat = OutputFormat.CHECKPOINT,
    keras_elsewhere: bool = False,
    keras_weights: bool = False,
) -> contextlib.AbstractContextManager[TargetModel]:
    """The target as a conversion writes it: Keras weight paths for a Keras output, else
    the keys TensorFlow saves it under (with ``root``). ``keras_elsewhere``: a Keras 3
    model on another backend than TensorFlow, which restores nothing else, is opened as for
    a Keras output whatever ``format`` says (``suggest``: the map is the same).
    ``keras_weights``: the source is a Keras 3 weights file, whose dataset paths a Keras 3
    target's variables then also go by (aliases), so it pairs by the file's own layout."""
    if keras_elsewhere and format is not OutputFormat.KERAS:
        instance = _instantiate(target)
        if keras_only(instance[0]):
            return open_keras_target(target, instance=instance)
        if format is OutputFormat.CHECKPOINT:
            return open_target_model(
                target, root=root, instance=instance, keras_weights=keras_weights
            )
    match format:
        case OutputFormat.KERAS:
            return open_keras_target(target)
        case OutputFormat.SAFETENSORS | OutputFormat.TORCH:
            # Names come from the map, or from a target that is only names (its file's
            # tensors) or a torch module (its state_dict): never TensorFlow's keys.
            instance = _instantiate(target)
            if instance[0] is not None and not is_torch_module(instance[0]):
                raise OutputError(
                    SAFETENSORS_NOT_FROM_A_MODEL, path=str(target), hint=SAFETENSORS_HINT
                )
            return open_target_model(target, root=root, instance=instance)
        case OutputFormat.CHECKPOINT:
            return open_target_model(target, root=root, keras_weights=keras_weights)


def instantiate(target: str) -> Any:
    """The live model a target path or builder spec describes; None for targets that are
    only names and values (a checkpoint, a SavedModel's variables, a spec file)."""
    return _instantiate(target)[0]


def _refuse_unwritable(inventory: Inventory) -> None:
    """Targets whose keys a TensorFlow checkpoint can't be restored by."""
    # A legacy .h5 is compared by the object paths its model restores by, but without the
    # model there is no object graph to write for them.
    if inventory.scheme in (Scheme.KERAS3, Scheme.KERAS2) or inventory.kind == "keras":
        raise CkptMigrateError(
            "a Keras weights file holds no TensorFlow checkpoint keys to convert into",
            path=inventory.source,
            hint="for a Keras 3 model write a Keras output ([[format_keras]]) with the model as "
            "[[target]] (its .keras file or a builder module:function).",
        )
    if inventory.kind == "spec" and inventory.scheme is Scheme.TF2:
        raise CkptMigrateError(
            "a spec file of TF2 object-based keys has no object graph to write, so "
            "tf.train.Checkpoint could not restore the output",
            path=inventory.source,
            hint="pass the model (a builder, a .keras file) or one of its checkpoints as "
            "[[target]].",
        )


def _checkpoint_path(target: str | Path | Any) -> Path:
    path = Path(str(target)).expanduser()
    if (path / "saved_model.pb").is_file():
        return path / "variables" / "variables"
    return path


def _instantiate(target: str | Path | Any) -> tuple[Any, str | None, str]:
    """(live object or None, a rebuildable description or None, inventory kind)."""
    detected = detect_target(target)
    match detected.kind:
        case TargetKind.LIVE:
            return target, None, detected.text
        case TargetKind.BUILDER:
            return call_builder(detected.text), detected.text, "builder"
        case TargetKind.KERAS_ARCHIVE:
            assert detected.path is not None
            return load_keras_model(detected.path), detected.text, "keras"
        case TargetKind.METAGRAPH:
            assert detected.path is not None
            return import_meta_graph(detected.path), detected.text, "metagraph"
        case _:  # only names and values: a checkpoint, SavedModel, spec or weights file
            return None, detected.text, ""


def _is_graph(obj: Any) -> bool:
    tf = import_tensorflow()
    return isinstance(obj, tf.Graph)


def _is_checkpoint(obj: Any) -> bool:
    tf = import_tensorflow()
    return isinstance(obj, tf.train.Checkpoint)


def saver_root(obj: Any, root: str | None) -> Any:
    """The tf.train.Checkpoint a TF2 target is saved and restored through."""
    tf = import_tensorflow()
    if isinstance(obj, tf.train.Checkpoint):
        return obj
    return tf.train.Checkpoint(**{root: obj}) if root else tf.train.Checkpoint(obj)


def _save_template(
    obj: Any, prefix: Path, root: str | None, source: str, *, foreign: bool = False
) -> str:
    tf = import_tensorflow()
    try:
        if isinstance(obj, tf.Graph):
            return _save_graph(tf, obj, prefix, source, foreign=foreign)
        weights = getattr(obj, "weights", None)
        if weights is not None and not weights:
            raise CkptMigrateError(
                "the model has no variables yet",
                path=source,
                hint="build it first (call it on an input, or give keras.Input shapes).",
            )
        saver = saver_root(obj, root)
        # Restoring through tf.train.Checkpoint creates its save counter, and
        # assert_existing_objects_matched() then wants it in the checkpoint: include it.
        _ = saver.save_counter
        return str(saver.write(str(prefix)))
    except CkptMigrateError:
        raise
    except Exception as e:
        raise CkptMigrateError(
            f"TensorFlow cannot save the target to learn its keys: {first_line(e)}",
            path=source,
            hint="pass a Keras model, a tf.Module, a tf.train.Checkpoint or a TF1 graph.",
        ) from e


# The ops variable initialisers are made of (constants, random draws, arithmetic, shape
# plumbing, the assignments themselves). A foreign graph's initialiser is run to learn the
# initial values only when every op it reaches is one of these: a .meta is data, and its
# initialiser may hold anything (tf.io.write_file, file reads, prints).
INITIALISER_OPS = frozenset(
    {
        "Abs",
        "Add",
        "AddV2",
        "All",
        "Any",
        "Assign",
        "AssignVariableOp",
        "BroadcastTo",
        "Cast",
        "Ceil",
        "ConcatV2",
        "Const",
        "Cos",
        "Diag",
        "DiagPart",
        "Equal",
        "Exp",
        "ExpandDims",
        "Fill",
        "Floor",
        "FloorDiv",
        "FloorMod",
        "Greater",
        "GreaterEqual",
        "Identity",
        "IsVariableInitialized",
        "Less",
        "LessEqual",
        "LinSpace",
        "Log",
        "LogicalAnd",
        "LogicalNot",
        "LogicalOr",
        "MatMul",
        "MatrixBandPart",
        "MatrixDiag",
        "MatrixDiagPartV3",
        "MatrixDiagV3",
        "Max",
        "Maximum",
        "Mean",
        "Merge",
        "Min",
        "Minimum",
        "Mul",
        "Multinomial",
        "Neg",
        "NoOp",
        "NotEqual",
        "OnesLike",
        "Pack",
        "Pad",
        "Pow",
        "Prod",
        "Qr",
        "RandomShuffle",
        "RandomStandardNormal",
        "RandomUniform",
        "RandomUniformInt",
        "Range",
        "ReadVariableOp",
        "RealDiv",
        "Reciprocal",
        "Reshape",
        "Rsqrt",
        "Select",
        "SelectV2",
        "Shape",
        "Sign",
        "Sin",
        "Size",
        "Slice",
        "Split",
        "Sqrt",
        "Square",
        "Squeeze",
        "StatelessRandomNormalV2",
        "StatelessRandomUniformV2",
        "StatelessTruncatedNormalV2",
        "StopGradient",
        "StridedSlice",
        "Sub",
        "Sum",
        "Switch",
        "Tile",
        "Transpose",
        "TruncatedNormal",
        "Unpack",
        "VarHandleOp",
        "VarIsInitializedOp",
        "VariableV2",
        "ZerosLike",
    }
)


def _foreign_ops(initialiser: Any) -> list[str]:
    """Types of the ops an initialiser reaches (inputs and control inputs) that are not
    variable initialisation."""
    seen = set()
    pending = [initialiser]
    foreign = set()
    while pending:
        op = pending.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type not in INITIALISER_OPS:
            foreign.add(op.type)
        pending.extend(t.op for t in op.inputs)
        pending.extend(op.control_inputs)
    return sorted(foreign)


def _save_graph(tf: Any, graph: Any, prefix: Path, source: str, *, foreign: bool) -> str:
    """A TF1 graph's Saver keys and initial values: initialise and save it; a ``foreign``
    graph (read from a file) only if its initialiser does nothing but initialise."""
    v1 = tf.compat.v1
    with graph.as_default():
        if not v1.global_variables():
            raise CkptMigrateError("the graph has no variables", path=source)
        saver = v1.train.Saver()
        initialiser = v1.global_variables_initializer()
        unexpected = _foreign_ops(initialiser) if foreign else []
        if unexpected:
            raise CkptMigrateError(
                "the graph's variable initialisers run more than initialisation "
                f"({', '.join(unexpected[:8])}), so ckptmigrate will not run them to learn the "
                "initial values",
                path=source,
                hint="pass a checkpoint of the target (its initial values) as [[target]], or "
                "check against the .meta, which runs nothing.",
            )
        with v1.Session(graph=graph) as session:
            session.run(initialiser)
            return str(saver.save(session, str(prefix), write_meta_graph=False))
