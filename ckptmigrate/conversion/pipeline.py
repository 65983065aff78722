"""Computing output values ahead of the writer: a bounded pool of threads reads, fills and
transforms the next variables while the writer appends the current one, so reading,
computing, checksumming and writing overlap. The writer still takes the values in plan
order, so the output is byte for byte the same whatever the number of workers.

Threads, not processes: the work is numpy copies and casts, ``pread`` and checksums, which
release the GIL, and values need no pickling on the way to the writer."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..mapping.plan import PlannedVariable
from .job import Job, planned_bytes
from .values import stored_value

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "default_workers",
    "stored_values_in_order",
    "values_in_order",
    "workers_for",
]

DEFAULT_MAX_MEMORY = 128 * 2**20
"""Bytes of computed values waiting for the writer, by default."""


def default_workers() -> int:
    """The CPUs this process may use, at most 8 (past that the disk is the limit)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def workers_for(reader: object, requested: int | None) -> int:
    """How many threads compute values from ``reader``: as asked, else one per CPU for
    ckptmigrate's own readers, as many as a store's concurrency for a store (its reads wait
    on latency, not on CPUs), and one for a checkpoint read through TensorFlow's own reader,
    which is not known to be safe to call from several threads."""
    from ..formats.bundle_reader import BundleReader
    from ..formats.remote import remote_concurrency
    from ..formats.safetensors import SafetensorsReader

    if requested:
        return requested
    if getattr(reader, "is_remote", False):  # our readers of a store say so
        return remote_concurrency()
    if isinstance(reader, BundleReader | SafetensorsReader):
        return default_workers()
    return 1


def values_in_order(
    variables: Sequence[PlannedVariable],
    compute: Callable[[PlannedVariable], Any],
    *,
    needs_value: Callable[[PlannedVariable], bool],
    workers: int,
    max_memory: int = DEFAULT_MAX_MEMORY,
) -> Generator[tuple[PlannedVariable, Any], None, None]:
    """Each variable in order, with ``compute(variable)`` where ``needs_value`` says so
    (None for the others, which the writer copies itself).

    With more than one worker, values are computed ahead on a pool while the values
    waiting for the writer add up to at most ``max_memory`` bytes (one at least, however
    large); an error in a worker is raised when its variable's turn comes, and the work
    ahead is cancelled.
    """
    if workers <= 1:
        for variable in variables:
            yield variable, compute(variable) if needs_value(variable) else None
        return
    pending: deque[tuple[PlannedVariable, Future[Any] | None, int]] = deque()
    ahead = 0  # bytes of values submitted and not yet handed to the writer
    upcoming = iter(variables)
    held: PlannedVariable | None = None  # next in line, waiting for room in the budget
    with ThreadPoolExecutor(workers, thread_name_prefix="ckptmigrate-compute") as pool:
        try:
            exhausted = False
            while True:
                # Submit ahead while the budget allows; the head of the queue always goes.
                while not exhausted and (not pending or ahead < max_memory):
                    following = held if held is not None else next(upcoming, None)
                    held = None
                    if following is None:
                        exhausted = True
                        break
                    if not needs_value(following):
                        pending.append((following, None, 0))
                        continue
                    size = planned_bytes(following)
                    if ahead and ahead + size > max_memory:
                        # Over budget: wait for the writer (a value alone always goes).
                        held = following
                        break
                    ahead += size
                    pending.append((following, pool.submit(compute, following), size))
                if not pending:
                    return
                variable, future, size = pending.popleft()
                value = future.result() if future is not None else None
                ahead -= size
                yield variable, value
                del value  # the writer has it; don't hold it while waiting for the next
        finally:
            for _, future, _ in pending:
                if future is not None:
                    future.cancel()


def stored_values_in_order(job: Job) -> Generator[tuple[PlannedVariable, Any], None, None]:
    """Every output of ``job``'s plan with its value as stored, in plan order, computed
    ahead as the job's options allow: what a writer of a one-file format (safetensors, a
    torch.save file), which writes every value itself, consumes."""
    return values_in_order(
        job.plan.outputs,
        lambda variable: stored_value(job.sources, variable),
        needs_value=lambda variable: True,
        workers=workers_for(job.ckpt.reader, job.options.workers),
        max_memory=job.options.max_memory or DEFAULT_MAX_MEMORY,
    )
