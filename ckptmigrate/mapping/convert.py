"""Execute a plan: stream the checkpoint variable by variable into a new one, atomically.

Renamed or kept tensors are copied as their stored bytes (never decoded); transformed ones
are read one at a time, transformed and written, so memory is bounded by the largest tensor
being transformed. Output is staged beside the destination and published by one rename,
with a provenance record inside it; the source is only ever opened for reading.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__, dtypes
from ..checkpoint import Checkpoint, open_checkpoint
from ..errors import CkptMigrateError, OutputError
from ..formats.bundle_reader import BundleReader, RemoteBundleReader, verified_in_background
from ..formats.bundle_writer import BundleWriter
from ..formats.locate import AnyPath, check_output, data_path, index_path
from ..formats.object_graph import OBJECT_GRAPH_KEY
from ..formats.ordered_code import decode_slice_key, encode_slice_key, is_slice_key
from ..formats.remote import RemotePath, as_path
from .located import MapError
from .ops import OpError, apply, make_fill
from .plan import Plan, PlannedVariable, plan_conversion
from .schema import Map, load_map

if TYPE_CHECKING:
    from ..verification import Verification

PROVENANCE_FILE = "ckptmigrate-provenance.json"


@dataclass(frozen=True)
class ConvertResult:
    prefix: AnyPath  # a RemotePath (str() is its URL) for an output given as a URL
    plan: Plan
    copied: int  # tensors copied as stored bytes
    transformed: int
    initialised: int
    linked_shards: tuple[str, ...] = ()  # how each wholly unchanged shard was carried over
    verification: Verification | None = None  # with verify=True
    from_target: int = 0  # the target's own values (--fill-missing-from-target, metadata)


def kind_of(variable: PlannedVariable) -> str:
    """Which count of a ConvertResult writing ``variable`` adds to."""
    if variable.from_target:
        return "from_target"
    if variable.raw_copy:
        return "copied"
    return "initialised" if variable.init is not None else "transformed"


@dataclass(frozen=True)
class _Layout:
    """Which source shards are carried over whole, and where everything else goes."""

    num_shards: int = 1
    linked: frozenset[int] = frozenset()
    free: int = 0  # the output shard new and changed tensors are written to
    checked_aside: frozenset[str] = frozenset()  # source keys verified on another thread
    copy: bool = False  # carried-over shards are copied, not linked

    def with_checked_aside(self, reader: BundleReader | None, the_plan: Plan) -> _Layout:
        """The stored tensors copied from the source but not carried over with a linked
        shard: their checksums are verified alongside the copy instead of before it."""
        if reader is None:
            return self
        keys: set[str] = set()
        for v in the_plan.outputs:
            if not v.raw_copy or v.origin is not None or v.source is None:
                continue
            entry = reader.entries[v.source]
            parts = (
                [reader.slice_key(v.source, i) for i in range(len(entry.slices))]
                if entry.slices
                else [v.source]
            )
            keys.update(k for k in parts if reader.entries[k].shard_id not in self.linked)
        keys.update(
            k for k in the_plan.passthrough if reader.entries[k].shard_id not in self.linked
        )
        return replace(self, checked_aside=frozenset(keys))

    @staticmethod
    def plan(reader: BundleReader | None, the_plan: Plan, copy: bool) -> _Layout:
        """A shard all of whose tensors survive byte for byte (renamed or kept) need not be
        rewritten tensor by tensor: it is reflinked or hard-linked, or with ``copy`` copied
        whole by the kernel. Either way its bytes are the source's, corruption included (TF's
        restore and ``inspect --verify`` detect that); tensors copied one by one are checked."""
        if reader is None:
            return _Layout()
        count = reader.header.num_shards
        unchanged = {v.source for v in the_plan.outputs if v.raw_copy and v.origin is None}
        unchanged |= set(the_plan.passthrough)
        touched = set()
        for key, entry in reader.entries.items():
            if entry.slices:
                continue
            owner = decode_slice_key(key)[0] if is_slice_key(key) else key
            if owner not in unchanged:
                touched.add(entry.shard_id)
        linked = frozenset(range(count)) - touched
        if not linked:
            return _Layout()
        if len(linked) < count:
            return _Layout(count, linked, min(set(range(count)) - linked), copy=copy)
        rest = the_plan.object_graph is not None or any(
            not v.raw_copy or v.origin is not None for v in the_plan.outputs
        )
        if rest:
            return _Layout(count + 1, linked, count, copy=copy)
        return _Layout(count, linked, 0, copy=copy)


NO_MAP = Map("(no map)", None, (), "")


def _as_map(mapping: Map | str | Path | None) -> Map:
    if mapping is None:
        return NO_MAP
    return mapping if isinstance(mapping, Map) else load_map(mapping)


def _target_model(
    target: Any, root: str | None, format: str = "checkpoint"
) -> contextlib.AbstractContextManager[Any]:
    if target is None:
        return contextlib.nullcontext(None)
    from ..targets.model import open_conversion_target  # TensorFlow may be needed: only then

    return open_conversion_target(target, root=root, format=format)


def _plan_for(
    ckpt: Checkpoint,
    mapping: Map,
    target_model: Any,
    *,
    strict: bool,
    require_all: bool,
    fill_missing_from_target: bool,
) -> Plan:
    the_plan = plan_conversion(
        ckpt,
        mapping,
        strict=strict,
        require_all=require_all,
        keep_object_graph=target_model is None,
    )
    if target_model is None:
        if fill_missing_from_target:
            raise CkptMigrateError("--fill-missing-from-target needs --target")
        return the_plan
    from ..targets.checkpoint import inventory_of
    from .retarget import outputs_inventory, retarget

    mapped = outputs_inventory(the_plan, inventory_of(ckpt))
    return retarget(
        the_plan,
        mapped,
        target_model,
        fill_missing_from_target=fill_missing_from_target,
        strict=strict,
    )[0]


def plan(
    checkpoint: str | Path,
    mapping: Map | str | Path | None = None,
    *,
    target: Any = None,
    root: str | None = "model",
    fill_missing_from_target: bool = False,
    strict: bool = False,
    require_all: bool = False,
    format: str = "checkpoint",
) -> Plan:
    """What ``convert`` would do, without writing anything (``--dry-run``)."""
    if mapping is None and target is None:
        raise CkptMigrateError(
            "convert needs a map, a target, or both", hint="pass --map M and/or --target T."
        )
    with (
        open_checkpoint(checkpoint) as ckpt,
        _target_model(target, root, format) as target_model,
    ):
        return _plan_for(
            ckpt,
            _as_map(mapping),
            target_model,
            strict=strict,
            require_all=require_all,
            fill_missing_from_target=fill_missing_from_target,
        )


@dataclass(frozen=True)
class PlanOptions:
    strict: bool = False
    require_all: bool = False
    fill_missing_from_target: bool = False
    force: bool = False


@contextlib.contextmanager
def planned_conversion(
    checkpoint: str | Path,
    mapping: Map,
    target_context: contextlib.AbstractContextManager[Any],
    output: AnyPath,
    options: PlanOptions,
) -> Iterator[tuple[Checkpoint, Any, Plan]]:
    """The source and target opened, the plan made and the output checked: what every
    output format starts from. Nothing is written yet."""
    with open_checkpoint(checkpoint) as ckpt, target_context as target_model:
        the_plan = _plan_for(
            ckpt,
            mapping,
            target_model,
            strict=options.strict,
            require_all=options.require_all,
            fill_missing_from_target=options.fill_missing_from_target,
        )
        check_output(output, ckpt.location.given, ckpt.prefix, options.force)
        yield ckpt, target_model, the_plan


def convert(
    checkpoint: str | Path,
    mapping: Map | str | Path | None,
    output: str | Path,
    *,
    target: Any = None,
    root: str | None = "model",
    fill_missing_from_target: bool = False,
    force: bool = False,
    strict: bool = False,
    require_all: bool = False,
    copy: bool = False,
    durable: bool = False,
    verify: bool = False,
    format: str = "checkpoint",
    on_variable: Any = None,
) -> ConvertResult:
    """Apply ``mapping`` to ``checkpoint``, writing a new checkpoint directory ``output``.
    Shards whose tensors all survive unchanged are reflinked or hard-linked, unless
    ``copy``. ``durable`` fsyncs every file before publishing (TensorFlow's savers don't).

    With ``target`` (a path, builder spec or live object, as ``check`` takes), the output
    holds exactly the target's variables under its own keys (and a TF2 target's object
    graph); ``root`` names the attribute a model is restored through
    (``tf.train.Checkpoint(model=...)``; None: the model itself is the root).

    ``verify`` restores the output with TensorFlow (into the target, in a subprocess when
    the target can be rebuilt there) and compares every value with the plan's; the
    verdict is ``result.verification``. A failed verification leaves the output in place.

    ``format="keras"`` writes a Keras 3 ``.weights.h5`` (or, for an output ending in
    ``.keras``, a whole ``.keras`` archive) for a Keras 3 model target."""
    if mapping is None and target is None:
        raise CkptMigrateError(
            "convert needs a map, a target, or both", hint="pass --map M and/or --target T."
        )
    mapping = _as_map(mapping)
    destination = as_path(output)
    if format == "keras":
        from .keras_output import convert_to_keras

        if isinstance(destination, RemotePath):
            raise OutputError(
                "Keras weight files are written locally only",
                path=str(destination),
                hint="write the .weights.h5 locally, then upload it.",
            )
        return convert_to_keras(
            checkpoint,
            mapping,
            destination,
            target,
            fill_missing_from_target=fill_missing_from_target,
            force=force,
            strict=strict,
            require_all=require_all,
            verify=verify,
            on_variable=on_variable,
            durable=durable,
        )
    if format != "checkpoint":
        raise CkptMigrateError(
            f"unknown output format {format!r}", hint="use checkpoint (default) or keras."
        )
    options = PlanOptions(strict, require_all, fill_missing_from_target, force)
    with planned_conversion(
        checkpoint, mapping, _target_model(target, root), destination, options
    ) as (ckpt, target_model, the_plan):
        reader = ckpt.reader
        bundle = reader if isinstance(reader, BundleReader) else None
        layout = _Layout.plan(bundle, the_plan, copy).with_checked_aside(bundle, the_plan)
        writer = BundleWriter(
            destination,
            ckpt.prefix.name,
            num_shards=layout.num_shards,
            overwrite=force,
            durable=durable,
            big_endian=bundle.big_endian if bundle else False,
        )
        counts = {"copied": 0, "transformed": 0, "initialised": 0, "from_target": 0}
        aside = sorted(layout.checked_aside)
        with writer, contextlib.ExitStack() as stack:
            finish = (
                stack.enter_context(verified_in_background(bundle, aside))
                if bundle is not None
                else (lambda: 0)
            )
            links = [
                writer.link_shard(s, bundle.data_file(s), allow_links=not layout.copy)
                for s in sorted(layout.linked)
                if bundle is not None
            ]
            sources = _Sources(ckpt, stack, layout)
            for key in the_plan.passthrough:
                _copy(writer, ckpt, key, key, layout)
            if the_plan.object_graph is not None:
                import numpy as np

                graph = np.array(the_plan.object_graph, dtype=object)
                writer.add_array(
                    OBJECT_GRAPH_KEY, graph, dtypes.BY_NAME["string"], shard=layout.free
                )
            for variable in the_plan.outputs:
                kind = _write(writer, sources, variable)
                counts[kind] += 1
                if on_variable is not None:
                    on_variable(variable)
            finish()  # a bad checksum aborts here, before anything is published
            writer.add_file(PROVENANCE_FILE, _provenance(the_plan, ckpt, counts, links))
            prefix = writer.commit()
        verification = _verify(ckpt, the_plan, prefix, target_model) if verify else None
    return ConvertResult(
        prefix, the_plan, **counts, linked_shards=tuple(links), verification=verification
    )


def _verify(ckpt: Checkpoint, the_plan: Plan, output: AnyPath, target_model: Any) -> Verification:
    from ..verification import verify

    with contextlib.ExitStack() as stack:
        # TensorFlow restores local files: a remote output is verified as downloaded from
        # the store, so what is checked is what was published, not the local staging.
        prefix = output if isinstance(output, Path) else _download(output, stack)
        sources = _Sources(ckpt, stack, _Layout())
        expected = {v.name: functools.partial(_expected, sources, v) for v in the_plan.outputs}
        if target_model is None:  # nothing to restore into: TensorFlow reads it back
            return verify(prefix, None, None, None, expected)
        return verify(prefix, target_model.live, target_model.rebuild, target_model.root, expected)


def _download(prefix: RemotePath, stack: contextlib.ExitStack) -> Path:
    import tempfile

    local = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ckptmigrate-"))) / (
        prefix.name
    )
    with RemoteBundleReader(prefix) as published:
        num_shards = published.header.num_shards
    index_path(prefix).download(index_path(local))
    for shard in range(num_shards):
        data_path(prefix, shard, num_shards).download(data_path(local, shard, num_shards))
    return local


def _expected(sources: _Sources, variable: PlannedVariable) -> Any:
    if variable.raw_copy:
        assert variable.source is not None
        return sources.get(variable.origin).reader.read(variable.source)
    return _value(sources, variable)


def _copy(
    writer: BundleWriter,
    ckpt: Checkpoint,
    source: str,
    name: str,
    layout: _Layout,
    *,
    main: bool = True,
) -> None:
    reader = ckpt.reader
    if not isinstance(reader, BundleReader):
        info = reader.info(source)
        writer.add_array(name, reader.read(source), info.dtype, shard=layout.free)
        return

    def carry(new_key: str, old_key: str) -> None:
        entry = reader.entries[old_key]
        if main and entry.shard_id in layout.linked:
            writer.add_linked(new_key, entry)
        else:
            aside = main and old_key in layout.checked_aside
            writer.add_stored(
                new_key, reader, source_key=old_key, shard=layout.free, verify=not aside
            )

    entry = reader.entries[source]
    if not entry.slices:
        carry(name, source)
        return
    # A partitioned variable: its slices are stored under keys that embed the name.
    writer.add_partitioned(name, dtypes.from_enum(entry.dtype), entry.shape, entry.slices)
    for i, tslice in enumerate(entry.slices):
        extents = [(e.start, e.length) for e in tslice.extents]
        carry(encode_slice_key(name, extents), reader.slice_key(source, i))


class _Sources:
    """The source checkpoint and any second ones `from` rules name, opened once each."""

    def __init__(self, main: Checkpoint, stack: contextlib.ExitStack, layout: _Layout) -> None:
        self.main = main
        self.stack = stack
        self.layout = layout
        self.others: dict[str, Checkpoint] = {}

    def get(self, origin: str | None) -> Checkpoint:
        if origin is None:
            return self.main
        if origin not in self.others:
            self.others[origin] = self.stack.enter_context(open_checkpoint(origin))
        return self.others[origin]


def _write(writer: BundleWriter, sources: _Sources, variable: PlannedVariable) -> str:
    if variable.raw_copy:
        assert variable.source is not None
        _copy(
            writer,
            sources.get(variable.origin),
            variable.source,
            variable.name,
            sources.layout,
            main=variable.origin is None,
        )
        return kind_of(variable)
    value = _value(sources, variable)
    writer.add_array(
        variable.name, value, dtypes.BY_NAME[variable.dtype], shard=sources.layout.free
    )
    return kind_of(variable)


def _value(sources: _Sources, variable: PlannedVariable) -> Any:
    """A transformed variable's value: read (or filled, or concatenated), then each step."""
    import numpy as np

    if variable.init is not None:
        rule = variable.init
        value = make_fill(rule.fill, rule.shape, rule.dtype, variable.name)
    elif variable.parts:
        value = np.concatenate(
            [_value(sources, p) for p in variable.parts], axis=variable.concat_axis
        )
    else:
        assert variable.source is not None
        value = sources.get(variable.origin).reader.read(variable.source)
    for step in variable.steps:
        value = _step(step, value, variable)
    return value


def _step(step: Any, value: Any, variable: PlannedVariable) -> Any:
    try:
        return apply(step.op, value, variable.name)
    except OpError as e:
        raise MapError(step.rule, f"variable {variable.source or variable.name!r}: {e}") from None


def _provenance(
    the_plan: Plan, ckpt: Checkpoint, counts: dict[str, int], links: list[str]
) -> bytes:
    record = {
        "ckptmigrate_version": __version__,
        "source_checkpoint": str(ckpt.prefix.resolve()),
        "map": os.path.abspath(the_plan.map.path) if the_plan.map is not NO_MAP else None,
        "target": the_plan.target,
        "map_sha256": the_plan.map.sha256,
        "counts": counts,
        "shards_carried_over": links,
        "renamed": {v.source: v.name for v in the_plan.outputs if v.source and v.renamed_by},
        "transformed": {
            v.name: [s.to_dict()["operation"] for s in v.steps] for v in the_plan.outputs if v.steps
        },
        "dropped": [d.source for d in the_plan.dropped],
        "initialised": [v.name for v in the_plan.outputs if v.init is not None],
        "from_target": [v.name for v in the_plan.outputs if v.from_target],
    }
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
