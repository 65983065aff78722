"""Execute a plan: stream the checkpoint variable by variable into a new one, atomically.

Renamed or kept tensors are copied as their stored bytes (never decoded); transformed ones
are read one at a time, transformed and written, so memory is bounded by the largest tensor
being transformed. Output is staged beside the destination and published by one rename,
with a provenance record inside it; the source is only ever opened for reading.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__, dtypes
from ..checkpoint import Checkpoint, open_checkpoint
from ..errors import OutputError
from ..formats.bundle_reader import BundleReader
from ..formats.bundle_writer import BundleWriter
from ..formats.object_graph import OBJECT_GRAPH_KEY
from ..formats.ordered_code import encode_slice_key
from .located import MapError
from .ops import OpError, apply, make_fill
from .plan import Plan, PlannedVariable, plan_conversion
from .schema import Map, load_map

PROVENANCE_FILE = "ckptmigrate-provenance.json"


@dataclass(frozen=True)
class ConvertResult:
    prefix: Path
    plan: Plan
    copied: int  # tensors copied as stored bytes
    transformed: int
    initialised: int


def _as_map(mapping: Map | str | Path) -> Map:
    return mapping if isinstance(mapping, Map) else load_map(mapping)


def plan(
    checkpoint: str | Path,
    mapping: Map | str | Path,
    *,
    strict: bool = False,
    require_all: bool = False,
) -> Plan:
    """What ``convert`` would do, without writing anything (``--dry-run``)."""
    with open_checkpoint(checkpoint) as ckpt:
        return plan_conversion(ckpt, _as_map(mapping), strict=strict, require_all=require_all)


def _check_output(output: Path, given: Path, prefix: Path, force: bool) -> None:
    """Refuse outputs that are, contain or sit inside the source: replacing them (--force)
    would destroy it. A source given as a directory owns everything under it."""
    out = output.resolve()
    source_dir = prefix.resolve().parent
    given_dir = given.resolve() if given.is_dir() else None
    if out == source_dir or (given_dir is not None and given_dir in (out, *out.parents)):
        raise OutputError(
            "the output is the source checkpoint's directory or inside it",
            path=output,
            hint="write the converted checkpoint somewhere else.",
        )
    if out in source_dir.parents:
        raise OutputError(
            "the output directory contains the source checkpoint; replacing it "
            "would destroy the source",
            path=output,
        )
    if output.exists() and not force:
        raise OutputError(
            "the output already exists",
            path=output,
            hint="choose a new directory, or pass --force to replace it.",
        )


def convert(
    checkpoint: str | Path,
    mapping: Map | str | Path,
    output: str | Path,
    *,
    force: bool = False,
    strict: bool = False,
    require_all: bool = False,
    durable: bool = True,
    on_variable: Any = None,
) -> ConvertResult:
    """Apply ``mapping`` to ``checkpoint``, writing a new checkpoint directory ``output``."""
    mapping = _as_map(mapping)
    output = Path(output)
    with open_checkpoint(checkpoint) as ckpt:
        the_plan = plan_conversion(ckpt, mapping, strict=strict, require_all=require_all)
        _check_output(output, ckpt.location.given, ckpt.prefix, force)
        reader = ckpt.reader
        bundle = reader if isinstance(reader, BundleReader) else None
        writer = BundleWriter(
            output,
            ckpt.prefix.name,
            overwrite=force,
            durable=durable,
            big_endian=bundle.big_endian if bundle else False,
        )
        counts = {"copied": 0, "transformed": 0, "initialised": 0}
        with writer, contextlib.ExitStack() as stack:
            sources = _Sources(ckpt, stack)
            for key in the_plan.passthrough:
                _copy(writer, ckpt, key, key)
            if the_plan.object_graph is not None:
                import numpy as np

                graph = np.array(the_plan.object_graph, dtype=object)
                writer.add_array(OBJECT_GRAPH_KEY, graph, dtypes.BY_NAME["string"])
            for variable in the_plan.outputs:
                kind = _write(writer, sources, variable)
                counts[kind] += 1
                if on_variable is not None:
                    on_variable(variable)
            writer.add_file(PROVENANCE_FILE, _provenance(the_plan, ckpt, counts))
            prefix = writer.commit()
    return ConvertResult(prefix, the_plan, **counts)


def _copy(writer: BundleWriter, ckpt: Checkpoint, source: str, name: str) -> None:
    reader = ckpt.reader
    if not isinstance(reader, BundleReader):
        info = reader.info(source)
        writer.add_array(name, reader.read(source), info.dtype)
        return
    entry = reader.entries[source]
    if not entry.slices:
        writer.add_stored(name, reader, source_key=source, shard=0)
        return
    # A partitioned variable: its slices are stored under keys that embed the name.
    writer.add_partitioned(name, dtypes.from_enum(entry.dtype), entry.shape, entry.slices)
    for i, tslice in enumerate(entry.slices):
        extents = [(e.start, e.length) for e in tslice.extents]
        writer.add_stored(
            encode_slice_key(name, extents), reader, source_key=reader.slice_key(source, i), shard=0
        )


class _Sources:
    """The source checkpoint and any second ones `from` rules name, opened once each."""

    def __init__(self, main: Checkpoint, stack: contextlib.ExitStack) -> None:
        self.main = main
        self.stack = stack
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
        _copy(writer, sources.get(variable.origin), variable.source, variable.name)
        return "copied"
    value = _value(sources, variable)
    writer.add_array(variable.name, value, dtypes.BY_NAME[variable.dtype])
    return "initialised" if variable.init is not None else "transformed"


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


def _provenance(the_plan: Plan, ckpt: Checkpoint, counts: dict[str, int]) -> bytes:
    record = {
        "ckptmigrate_version": __version__,
        "source_checkpoint": str(ckpt.prefix.resolve()),
        "map": os.path.abspath(the_plan.map.path),
        "map_sha256": the_plan.map.sha256,
        "counts": counts,
        "renamed": {v.source: v.name for v in the_plan.outputs if v.source and v.renamed_by},
        "transformed": {
            v.name: [s.to_dict()["operation"] for s in v.steps] for v in the_plan.outputs if v.steps
        },
        "dropped": [d.source for d in the_plan.dropped],
        "initialised": [v.name for v in the_plan.outputs if v.init is not None],
    }
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
