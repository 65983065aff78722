"""A checkpoint written on a Dask cluster (issue 16): the plan is split per output data
shard; each task re-opens the source, re-plans from the same inputs, streams its shard's
tensors into the coordinator's staging directory and returns the shard's index entries;
the coordinator (the calling process) links the unchanged shards, merges the entries into
the one index, written last (as TensorFlow's ``MergeV2Checkpoints`` merges the shards'
indexes), and publishes as a conversion in one process does: a local output by renaming
its staging directory, a store's with the index uploaded after the data.

Tasks get the inputs, never the plan: a plan holds compiled patterns, and planning is
deterministic, so each task checks that the tensors it would write to its shard are the
ones the coordinator planned there, and refuses to write otherwise. Dask itself is
imported only here, and only when a conversion asks for it."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..checkpoint import open_checkpoint
from ..errors import CkptMigrateError
from ..formats.bundle_proto import BundleEntry
from ..formats.bundle_reader import RemoteBundleReader
from ..formats.bundle_writer import PARTS_DIR, ShardWriter
from ..formats.locate import AnyPath
from ..formats.remote import RemotePath, as_path, remote_concurrency
from ..mapping.plan import PlannedVariable
from ..mapping.rules import Map
from .bundle_out import (
    PROVENANCE_FILE,
    bundle_writer,
    layout_for,
    link_shards,
    provenance,
    shard_contents,
    write_checkpoint,
    write_tensors,
)
from .job import Job
from .options import ConvertOptions
from .planning import as_map, plan_for, target_model
from .sharding import ShardPolicy
from .values import Sources

__all__ = ["DaskInputs", "require_dask", "write_checkpoint_on_dask", "write_shard"]

TASK_RETRIES = 2
"""A task that fails (its worker lost, an I/O error) is run again this many times; it
rewrites its shard whole, so a retry gives the same bytes."""

_INSTALL = "pip install 'ckptmigrate[dask]' (or: pip install 'dask[distributed]')"


def require_dask() -> None:
    """Refuse early, before planning, when Dask's distributed scheduler is not installed.

    Raises:
        CkptMigrateError: it is not.
    """
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise CkptMigrateError(
            "running a conversion on a Dask cluster ([[dask]]) needs Dask's distributed "
            "scheduler, which is not installed",
            hint=f"install it with {_INSTALL}, or leave [[dask]] out to convert in this process.",
        ) from None


@dataclass(frozen=True)
class DaskInputs:
    """What a task re-plans from: the caller's inputs, as paths every worker can open."""

    checkpoint: str
    mapping: str | None
    target: str | None

    @staticmethod
    def of(checkpoint: str | Path, mapping: Map | str | Path | None, target: Any) -> DaskInputs:
        """The inputs, local paths made absolute (a worker's working directory is its own).

        Raises:
            CkptMigrateError: a loaded map or a live target, which cannot be sent to a
                worker to re-plan from.
        """
        if isinstance(mapping, Map):
            raise CkptMigrateError(
                "a conversion on a Dask cluster ([[dask]]) re-plans on every worker from the "
                "map's file; a loaded Map cannot be sent",
                hint="pass the map as a path or a bundled map's name.",
            )
        if target is not None and not isinstance(target, str | Path):
            raise CkptMigrateError(
                "a conversion on a Dask cluster ([[dask]]) re-plans on every worker from the "
                f"target's path; a live {type(target).__name__} cannot be sent",
                hint="pass the target as a file or builder spec, or leave [[dask]] out.",
            )
        return DaskInputs(
            _absolute(checkpoint),
            None if mapping is None else _absolute(mapping),
            None if target is None else _absolute(target),
        )


def _absolute(path: str | Path) -> str:
    """A local path that exists, made absolute; anything else (URLs, bundled map names,
    builder specs) as given."""
    where = as_path(path)
    if isinstance(where, Path) and where.exists():
        return str(where.absolute())
    return str(path)


@dataclass(frozen=True)
class ShardTask:
    """One task: write data shard ``shard`` of ``num_shards`` into the staging."""

    inputs: DaskInputs
    options: ConvertOptions
    shard: int
    num_shards: int
    linked: frozenset[int]
    staging_prefix: str
    expected: tuple[tuple[str, tuple[int, ...], str], ...]
    """The (key, shape, dtype) the coordinator planned in this shard, in order."""


def write_checkpoint_on_dask(
    job: Job, destination: AnyPath, inputs: DaskInputs
) -> tuple[AnyPath, tuple[str, ...]]:
    """:func:`~.bundle_out.write_checkpoint` with each data shard written by a task on the
    cluster ``job.options.dask`` names (one shard per worker unless the options decide).

    Returns:
        The output prefix, and how each carried-over shard went (reflink, hard link, copy).
    """
    with _client(job.options.dask) as client:
        if not job.options.shards.active:
            workers = max(1, len(client.nthreads()))
            job.options = replace(job.options, shards=ShardPolicy(num_shards=workers))
        bundle, layout = layout_for(job)
        if layout.free in layout.linked:  # every shard carried over: nothing to distribute
            return write_checkpoint(job, destination)
        shards = [s for s in range(layout.num_shards) if s not in layout.linked]
        contents = {s: shard_contents(job, bundle, layout, s) for s in shards}
        by_shard: dict[int, list[PlannedVariable]] = {}
        for variable in job.plan.outputs:
            by_shard.setdefault(layout.shard_for(variable.name), []).append(variable)
        with bundle_writer(job, destination, bundle, layout) as writer:
            links = link_shards(writer, bundle, layout)
            writer.parts_dir()
            task_options = replace(job.options, dask=None)  # a Client does not travel
            run = uuid.uuid4().hex
            futures = [
                client.submit(
                    write_shard,
                    ShardTask(
                        inputs,
                        task_options,
                        shard,
                        layout.num_shards,
                        layout.linked,
                        str(writer.staging_prefix),
                        tuple(contents[shard]),
                    ),
                    key=f"ckptmigrate-shard-{shard}-{run}",
                    retries=TASK_RETRIES,
                    pure=False,
                )
                for shard in shards
                if contents[shard]  # an empty shard is created by the commit
            ]
            from distributed import as_completed

            try:
                for future in as_completed(futures):
                    shard, entries = future.result()
                    writer.add_written_shard(shard, entries)
                    for variable in by_shard.get(shard, ()):
                        job.written(variable)
            except BaseException:
                client.cancel(futures)  # nothing is published: the writer discards the staging
                raise
            writer.add_file(PROVENANCE_FILE, provenance(job, links))
            return writer.commit(), links


@contextlib.contextmanager
def _client(spec: Any) -> Iterator[Any]:
    """A client of the cluster ``spec`` names (closed after, with a cluster started here)."""
    require_dask()
    from distributed import Client, LocalCluster

    if not isinstance(spec, str):
        yield spec  # the caller's Client: theirs to close
        return
    if spec.startswith("local:"):
        with warnings.catch_warnings():
            # Without a dashboard the scheduler still serves HTTP (health checks), moving
            # to a free port when another cluster holds 8787: not the user's concern.
            warnings.filterwarnings("ignore", "Port .* is already in use", UserWarning)
            cluster = LocalCluster(
                n_workers=int(spec.removeprefix("local:")),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
        with cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(spec, timeout="30s")
    except (OSError, TimeoutError) as e:
        raise CkptMigrateError(
            f"cannot reach the Dask scheduler at {spec} ({type(e).__name__}: {e})",
            hint="check the address (tcp://host:8786) and that the scheduler is running.",
        ) from None
    with client:
        yield client


def write_shard(task: ShardTask) -> tuple[int, Mapping[str, BundleEntry]]:
    """A task: re-plan, check the plan agrees with the coordinator's, write the shard.

    Returns:
        The shard's number and its index entries.
    """
    staging = Path(task.staging_prefix).parent
    if not (staging / PARTS_DIR).is_dir():
        raise CkptMigrateError(
            f"the Dask worker on {socket.gethostname()} cannot see the output's staging "
            f"directory {staging}",
            hint="with workers on other machines, write the output to a filesystem every "
            "worker mounts at the same path (an s3:// output is staged on the calling "
            "machine), or run on a local cluster (local:N as [[dask]]).",
        )
    options, inputs = task.options, task.inputs
    the_map = as_map(inputs.mapping, inputs.target, options)
    with (
        open_checkpoint(inputs.checkpoint) as ckpt,
        target_model(inputs.target, options, ckpt) as opened_target,
        contextlib.ExitStack() as stack,
    ):
        the_plan = plan_for(ckpt, the_map, opened_target, options)
        job = Job(ckpt, the_plan, options, Sources(ckpt, stack), inputs.target, opened_target)
        bundle, layout = layout_for(job)
        layout = replace(layout, checked_aside=frozenset())  # each copy checked as it goes
        found = tuple(shard_contents(job, bundle, layout, task.shard))
        if (layout.num_shards, layout.linked, found) != (
            task.num_shards,
            task.linked,
            task.expected,
        ):
            raise CkptMigrateError(
                f"the plan made on the Dask worker on {socket.gethostname()} (pid "
                f"{os.getpid()}) differs from the calling process's for shard {task.shard}; "
                "nothing was published",
                path=inputs.checkpoint,
                hint="run the same ckptmigrate version on every worker, with the same "
                "source, map and target reachable under the same paths.",
            )
        remote = isinstance(bundle, RemoteBundleReader) or isinstance(
            as_path(inputs.checkpoint), RemotePath
        )
        with ShardWriter(
            Path(task.staging_prefix),
            task.shard,
            layout.num_shards,
            linked=layout.linked,
            big_endian=bundle.big_endian if bundle else False,
            durable=options.durable,
        ) as writer:
            # Tasks share the cluster's CPUs: one value at a time, unless a store's
            # latency is the limit.
            workers = options.workers or (remote_concurrency() if remote else 1)
            write_tensors(
                job, writer, bundle, layout, stack, only_shard=task.shard, workers=workers
            )
            return task.shard, writer.finish()
