"""A plan written as a TensorFlow checkpoint: unchanged shards carried over whole, stored
tensors copied as their bytes, everything else computed and written one at a time."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import dtypes
from .._version import __version__
from ..checkpoint import Checkpoint
from ..formats.bundle_reader import (
    BundleReader,
    RemoteBundleReader,
    RunReads,
    verified_in_background,
)
from ..formats.bundle_writer import BundleWriter, TensorSink
from ..formats.locate import AnyPath, data_path, index_path
from ..formats.object_graph import OBJECT_GRAPH_KEY
from ..formats.ordered_code import decode_slice_key, encode_slice_key, is_slice_key
from ..formats.remote import RemotePath
from ..mapping.plan import Plan, PlannedVariable
from ..mapping.rules import NO_MAP
from .job import Job, planned_bytes
from .pipeline import DEFAULT_MAX_MEMORY, values_in_order, workers_for
from .sharding import ShardPolicy
from .values import value_of

__all__ = [
    "PROVENANCE_FILE",
    "ShardLayout",
    "bundle_writer",
    "download",
    "layout_for",
    "link_shards",
    "provenance",
    "shard_contents",
    "write_checkpoint",
    "write_tensors",
]

PROVENANCE_FILE = "ckptmigrate-provenance.json"


@dataclass(frozen=True)
class ShardLayout:
    """Which source shards are carried over whole, and where everything else goes."""

    num_shards: int = 1
    linked: frozenset[int] = frozenset()
    free: int = 0
    """The output shard new and changed tensors are written to."""
    checked_aside: frozenset[str] = frozenset()
    """Source keys whose checksums are verified on another thread, alongside the copy."""
    copy: bool = False
    """Carried-over shards are copied, not linked."""
    placement: Mapping[str, int] = field(default_factory=dict)
    """Output keys written to a shard other than ``free`` (a sharding policy's choice)."""

    def shard_for(self, key: str) -> int:
        """The shard a tensor written (not carried over) under ``key`` goes to."""
        return self.placement.get(key, self.free)

    def spread(self, policy: ShardPolicy, sizes: list[tuple[str, int]]) -> ShardLayout:
        """Spread the tensors written (of the given sizes) over shards as ``policy`` says:
        first the source's shard numbers not carried over, then new ones after them."""
        if not policy.active or not sizes:
            return self
        groups = policy.spread(sizes)
        spare = [i for i in range(self.num_shards) if i not in self.linked]
        numbers = [*spare, *range(self.num_shards, self.num_shards + len(groups))][: len(groups)]
        placement = {
            key: number for number, group in zip(numbers, groups, strict=True) for key in group
        }
        count = max(self.num_shards if self.linked else 0, max(numbers) + 1)
        return replace(self, num_shards=count, free=numbers[0], placement=placement)

    @staticmethod
    def of(reader: BundleReader | None, the_plan: Plan, copy: bool) -> ShardLayout:
        """A shard all of whose tensors survive byte for byte (renamed or kept) need not be
        rewritten tensor by tensor: it is reflinked or hard-linked, or with ``copy`` copied
        whole by the kernel. Either way its bytes are the source's, corruption included (TF's
        restore and ``inspect --verify`` detect that); tensors copied one by one are checked."""
        if reader is None:
            return ShardLayout()
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
            layout = ShardLayout()
        elif len(linked) < count:
            layout = ShardLayout(count, linked, min(set(range(count)) - linked), copy=copy)
        elif the_plan.object_graph is not None or any(
            not v.raw_copy or v.origin is not None for v in the_plan.outputs
        ):
            layout = ShardLayout(count + 1, linked, count, copy=copy)
        else:
            layout = ShardLayout(count, linked, 0, copy=copy)
        return layout._with_checked_aside(reader, the_plan)

    def _with_checked_aside(self, reader: BundleReader, the_plan: Plan) -> ShardLayout:
        """The stored tensors copied from the source but not carried over with a linked
        shard: their checksums are verified alongside the copy instead of before it (a
        store's tensors are checked as they download: once, not twice)."""
        if isinstance(reader, RemoteBundleReader):
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


def layout_for(job: Job) -> tuple[BundleReader | None, ShardLayout]:
    """The source's bundle reader (None for a V1 source) and the output's shard layout:
    which shards are carried over, and the shard of every tensor written."""
    reader = job.ckpt.reader
    bundle = reader if isinstance(reader, BundleReader) else None
    layout = ShardLayout.of(bundle, job.plan, job.options.copy)
    return bundle, layout.spread(job.options.shards, _written_sizes(bundle, job.plan, layout))


def write_checkpoint(job: Job, destination: AnyPath) -> tuple[AnyPath, tuple[str, ...]]:
    """Write the plan's outputs as a checkpoint at ``destination``, published atomically.

    Returns:
        The output prefix, and how each carried-over shard went (reflink, hard link, copy).
    """
    bundle, layout = layout_for(job)
    with (
        bundle_writer(job, destination, bundle, layout) as writer,
        contextlib.ExitStack() as checks,
    ):
        finish = (
            checks.enter_context(verified_in_background(bundle, sorted(layout.checked_aside)))
            if bundle is not None
            else (lambda: 0)
        )
        links = link_shards(writer, bundle, layout)
        write_tensors(job, writer, bundle, layout, checks)
        finish()  # a bad checksum aborts here, before anything is published
        writer.add_file(PROVENANCE_FILE, provenance(job, links))
        prefix = writer.commit()
    return prefix, links


# A source that is one file of another format names the output checkpoint after its stem:
# out/model.index, not out/model.h5.index (which Keras' load_weights takes for an HDF5 file).
_FOREIGN_SUFFIXES = (".safetensors.index.json", ".safetensors", ".weights.h5", ".h5", ".keras")


def output_prefix_name(source_name: str) -> str:
    """The output checkpoint's prefix name for a source named ``source_name``."""
    for suffix in _FOREIGN_SUFFIXES:
        if source_name.lower().endswith(suffix) and len(source_name) > len(suffix):
            return source_name[: -len(suffix)]
    return source_name


def bundle_writer(
    job: Job, destination: AnyPath, bundle: BundleReader | None, layout: ShardLayout
) -> BundleWriter:
    """The writer that stages and publishes the output checkpoint."""
    return BundleWriter(
        destination,
        output_prefix_name(job.ckpt.prefix.name),
        num_shards=layout.num_shards,
        overwrite=job.options.overwrite,
        durable=job.options.durable,
        big_endian=bundle.big_endian if bundle else False,
    )


def link_shards(
    writer: BundleWriter, bundle: BundleReader | None, layout: ShardLayout
) -> tuple[str, ...]:
    """Carry the layout's unchanged source shards over whole; returns how each went."""
    if bundle is None:
        return ()
    return tuple(
        writer.link_shard(s, bundle.data_file(s), allow_links=not layout.copy)
        for s in sorted(layout.linked)
    )


def write_tensors(
    job: Job,
    writer: TensorSink,
    bundle: BundleReader | None,
    layout: ShardLayout,
    stack: contextlib.ExitStack,
    *,
    only_shard: int | None = None,
    workers: int | None = None,
) -> None:
    """Write every tensor the layout does not carry over (passthrough keys, the object
    graph, then the plan's outputs, in that order), or with ``only_shard`` those of that
    shard, in the same order: a shard's bytes are the same whoever writes it."""
    the_plan = job.plan

    def mine(key: str) -> bool:
        return only_shard is None or layout.shard_for(key) == only_shard

    for key in the_plan.passthrough:
        if mine(key):
            _copy(writer, job.ckpt, key, key, layout)
    if the_plan.object_graph is not None and mine(OBJECT_GRAPH_KEY):
        import numpy as np

        graph = np.array(the_plan.object_graph, dtype=object)
        shard = layout.shard_for(OBJECT_GRAPH_KEY)
        writer.add_array(OBJECT_GRAPH_KEY, graph, dtypes.BY_NAME["string"], shard=shard)
    fetched = _fetched_ahead(bundle, layout)
    outputs = [v for v in the_plan.outputs if mine(v.name)]
    # Copies side by side in the source are fetched together, in the writer's order.
    reads = (
        bundle.in_runs([v.source for v in outputs if v.source is not None and fetched(v)])
        if isinstance(bundle, RemoteBundleReader)
        else None
    )
    computed = stack.enter_context(
        contextlib.closing(  # cancels the work ahead if writing fails
            values_in_order(
                outputs,
                lambda variable: _value_or_stored_bytes(job, variable, fetched, reads),
                needs_value=lambda variable: not variable.raw_copy or fetched(variable),
                workers=workers or workers_for(job.ckpt.reader, job.options.workers),
                max_memory=job.options.max_memory or DEFAULT_MAX_MEMORY,
            )
        )
    )
    for variable, value in computed:
        if isinstance(value, StoredBytes):
            assert bundle is not None
            assert variable.source is not None
            entry = bundle.entries[variable.source]
            writer.add_stored_bytes(
                variable.name, entry, value.data, layout.shard_for(variable.name)
            )
        elif variable.raw_copy:
            assert variable.source is not None
            _copy(
                writer,
                job.sources.get(variable.origin),
                variable.source,
                variable.name,
                layout,
                main=variable.origin is None,
            )
        else:
            dtype = dtypes.BY_NAME[variable.dtype]
            writer.add_array(variable.name, value, dtype, shard=layout.shard_for(variable.name))
        job.written(variable)


def shard_contents(
    job: Job, bundle: BundleReader | None, layout: ShardLayout, shard: int
) -> list[tuple[str, tuple[int, ...], str]]:
    """The (key, shape, dtype) of every tensor ``write_tensors`` writes to ``shard``, in
    order: what two processes that planned the same conversion must agree on."""
    the_plan = job.plan
    contents: list[tuple[str, tuple[int, ...], str]] = []
    if bundle is not None:
        for key in the_plan.passthrough:
            if layout.shard_for(key) == shard:
                entry = bundle.entries[key]
                contents.append((key, entry.shape, dtypes.from_enum(entry.dtype).name))
    if the_plan.object_graph is not None and layout.shard_for(OBJECT_GRAPH_KEY) == shard:
        contents.append((OBJECT_GRAPH_KEY, (), "string"))
    contents += [
        (v.name, tuple(v.shape), v.dtype)
        for v in the_plan.outputs
        if layout.shard_for(v.name) == shard
    ]
    return contents


@dataclass(frozen=True)
class StoredBytes:
    """A tensor's stored bytes, read (and CRC-checked) ahead of the writer."""

    data: bytearray


def _fetched_ahead(
    bundle: BundleReader | None, layout: ShardLayout
) -> Callable[[PlannedVariable], bool]:
    """Which copies are read ahead of the writer, several at a time: those from a store,
    where each is a request whose latency dominates (local copies go through the kernel,
    never through memory). Strings are not: their checksum covers decoded lengths."""
    if not isinstance(bundle, RemoteBundleReader):
        return lambda variable: False

    def fetched(variable: PlannedVariable) -> bool:
        if not variable.raw_copy or variable.origin is not None or variable.source is None:
            return False
        entry = bundle.entries[variable.source]
        return (
            not entry.slices
            and entry.shard_id not in layout.linked
            and dtypes.from_enum(entry.dtype).itemsize is not None
        )

    return fetched


def _value_or_stored_bytes(
    job: Job,
    variable: PlannedVariable,
    fetched: Callable[[PlannedVariable], bool],
    reads: RunReads | None,
) -> Any:
    if fetched(variable):  # only from a store, which has its reads planned
        assert variable.source is not None
        assert reads is not None
        return StoredBytes(reads.read_stored_bytes(variable.source))
    return value_of(job.sources, variable)


def _copy(
    writer: TensorSink,
    ckpt: Checkpoint,
    source: str,
    name: str,
    layout: ShardLayout,
    *,
    main: bool = True,
) -> None:
    reader = ckpt.reader
    shard = layout.shard_for(name)
    if not isinstance(reader, BundleReader):
        info = reader.info(source)
        writer.add_array(name, reader.read(source), info.dtype, shard=shard)
        return

    def carry(new_key: str, old_key: str) -> None:
        entry = reader.entries[old_key]
        if main and entry.shard_id in layout.linked:
            writer.add_linked(new_key, entry)
        else:
            aside = main and old_key in layout.checked_aside
            writer.add_stored(new_key, reader, source_key=old_key, shard=shard, verify=not aside)

    entry = reader.entries[source]
    if not entry.slices:
        carry(name, source)
        return
    # A partitioned variable: its slices are stored under keys that embed the name.
    writer.add_partitioned(name, dtypes.from_enum(entry.dtype), entry.shape, entry.slices)
    for i, tslice in enumerate(entry.slices):
        extents = [(e.start, e.length) for e in tslice.extents]
        carry(encode_slice_key(name, extents), reader.slice_key(source, i))


def _written_sizes(
    reader: BundleReader | None, the_plan: Plan, layout: ShardLayout
) -> list[tuple[str, int]]:
    """Every tensor the writer will write (not carry over in a linked shard), in the order
    it writes them, with its size in bytes: stored sizes for copies, the planned shape's
    for computed tensors (a string tensor's size is not known before it is computed)."""

    def stored(key: str, reader: BundleReader) -> int | None:
        """The bytes of a copy from the source; None when its shard is carried over."""
        entry = reader.entries[key]
        parts = (
            [reader.entries[reader.slice_key(key, i)] for i in range(len(entry.slices))]
            if entry.slices
            else [entry]
        )
        if all(part.shard_id in layout.linked for part in parts):
            return None
        return sum(part.size for part in parts)

    sizes: list[tuple[str, int]] = []
    if reader is not None:
        for key in the_plan.passthrough:
            size = stored(key, reader)
            if size is not None:
                sizes.append((key, size))
    if the_plan.object_graph is not None:
        sizes.append((OBJECT_GRAPH_KEY, len(the_plan.object_graph)))
    for variable in the_plan.outputs:
        copied = variable.raw_copy and variable.origin is None and variable.source is not None
        if copied and reader is not None:
            assert variable.source is not None
            size = stored(variable.source, reader)
            if size is not None:
                sizes.append((variable.name, size))
        else:
            sizes.append((variable.name, planned_bytes(variable)))
    return sizes


def download(prefix: RemotePath, stack: contextlib.ExitStack) -> Path:
    """A published remote checkpoint, downloaded to a temporary directory (removed with
    ``stack``): TensorFlow restores local files."""
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


def provenance(job: Job, links: tuple[str, ...]) -> bytes:
    """The provenance record written beside the checkpoint (``PROVENANCE_FILE``)."""
    the_plan, ckpt, counts = job.plan, job.ckpt, job.counts
    record: dict[str, Any] = {
        "ckptmigrate_version": __version__,
        "source_checkpoint": str(ckpt.prefix.resolve()),
        "map": os.path.abspath(the_plan.map.path) if the_plan.map is not NO_MAP else None,
        "target": the_plan.target,
        "map_sha256": the_plan.map.sha256,
        "counts": counts.to_dict(),
        "shards_carried_over": list(links),
        "renamed": {v.source: v.name for v in the_plan.outputs if v.source and v.renamed_by},
        "transformed": {
            v.name: [s.to_dict()["operation"] for s in v.steps] for v in the_plan.outputs if v.steps
        },
        "dropped": [d.source for d in the_plan.dropped],
        "initialised": [v.name for v in the_plan.outputs if v.init is not None],
        "from_target": [v.name for v in the_plan.outputs if v.from_target],
    }
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
