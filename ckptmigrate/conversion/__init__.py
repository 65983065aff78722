"""Running a plan: open the source and target, plan, check the output, write it in the
chosen :class:`OutputFormat`, and (with ``verify``) have TensorFlow restore what was written.

Every output format goes through :func:`run_conversion`, so planning, output checks, counts
and verification are wired once; the writers (``bundle_out``, ``keras_out``) only write.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._tf import require_keras, require_tensorflow
from ..checkpoint import open_checkpoint
from ..errors import OutputError
from ..formats.locate import AnyPath, check_output
from ..formats.remote import RemotePath, as_path
from ..mapping.plan import Plan
from ..mapping.rules import Map
from ..output_format import OutputFormat
from ..progress import Progress
from .bundle_out import PROVENANCE_FILE, download, write_checkpoint
from .dask_out import DaskInputs, require_dask, write_checkpoint_on_dask
from .job import Job, OnVariable
from .keras_out import check_keras_output, keras_value, write_keras
from .options import (
    ConvertOptions,
    ConvertResult,
    Counts,
    dask_cluster,
    frozen_params,
    kind_of,
)
from .planning import as_map, plan_for, target_model
from .safetensors_out import check_safetensors_output, verify_safetensors, write_safetensors
from .sharding import ShardPolicy, parse_size
from .torch_out import (
    check_model_target,
    check_torch_output,
    is_torch_target,
    torch_installed,
    verify_in_torch,
    verify_torch_file,
    write_torch,
)
from .values import Sources, stored_value

if TYPE_CHECKING:
    from ..verification import Verification

__all__ = [
    "PROVENANCE_FILE",
    "ConvertOptions",
    "ConvertResult",
    "Counts",
    "OutputFormat",
    "ShardPolicy",
    "convert",
    "dask_cluster",
    "kind_of",
    "parse_size",
    "plan",
    "run_conversion",
]


def plan(
    checkpoint: str | Path,
    map: Map | str | Path | None = None,
    *,
    target: Any = None,
    root: str | None = "model",
    fill_missing_from_target: bool = False,
    strict: bool = False,
    require_all: bool = False,
    format: OutputFormat | str = OutputFormat.CHECKPOINT,
    params: Mapping[str, int] | None = None,
) -> Plan:
    """What :func:`convert` would do, without writing anything.

    Args:
        checkpoint: the source checkpoint (any path ``open_checkpoint`` takes).
        map: a loaded map, a map file, a bundled map's name, or None (target only).
        target, root, fill_missing_from_target, strict, require_all, format, params: as
            for :func:`convert`.

    Returns:
        The plan: every output variable, where it comes from and what is done to it.

    Raises:
        CkptMigrateError: the checkpoint, map or target is unusable, or the map does not fit.
    """
    options = ConvertOptions(
        root=root,
        format=OutputFormat.parse(format),
        fill_missing_from_target=fill_missing_from_target,
        strict=strict,
        require_all=require_all,
        params=frozen_params(params),
    )
    the_map = as_map(map, target, options)
    with open_checkpoint(checkpoint) as ckpt, target_model(target, options, ckpt) as opened_target:
        return plan_for(ckpt, the_map, opened_target, options)


def convert(
    checkpoint: str | Path,
    map: Map | str | Path | None,
    output: str | Path,
    *,
    target: Any = None,
    root: str | None = "model",
    fill_missing_from_target: bool = False,
    overwrite: bool = False,
    strict: bool = False,
    require_all: bool = False,
    copy: bool = False,
    durable: bool = False,
    verify: bool = False,
    format: OutputFormat | str = OutputFormat.CHECKPOINT,
    params: Mapping[str, int] | None = None,
    max_shard_size: int | str | None = None,
    num_shards: int | None = None,
    workers: int | None = None,
    max_memory: int | str | None = None,
    dask: Any = None,
    on_variable: OnVariable | None = None,
    progress: Progress | None = None,
) -> ConvertResult:
    """Apply ``map`` to ``checkpoint`` and write the result to ``output``.

    Shards whose tensors all survive unchanged are reflinked or hard-linked (copied with
    ``copy``); everything else is written tensor by tensor; the output appears atomically.

    Args:
        checkpoint: the source checkpoint (a path, prefix, directory or URL).
        map: a loaded map, a map file, a bundled map's name, or None (target only).
        output: the checkpoint directory to create (a URL too), or for
            ``format="keras"`` a ``*.weights.h5`` / ``*.keras`` file.
        target: the model to write for (a path, builder spec or live object, as ``check``
            takes): the output then holds exactly its variables under its own keys (and a
            TF2 target's object graph).
        root: the attribute a TF2 target is restored through
            (``tf.train.Checkpoint(model=...)``); None: the target itself is the root.
        fill_missing_from_target: target variables the map does not supply keep the
            target's own values.
        overwrite: replace an existing output.
        strict: every rule must match.
        require_all: every checkpoint variable must be matched by a rule.
        copy: copy unchanged shards instead of linking them.
        durable: fsync every file before publishing (TensorFlow's savers don't).
        verify: restore the output with TensorFlow (into the target, in a subprocess when
            it can be rebuilt there) and compare every value with the plan's; the verdict
            is ``result.verification`` (a failed one leaves the output in place).
        format: ``"checkpoint"`` or ``"keras"`` (a Keras 3 weights file for a Keras 3
            model target).
        params: values for parameters the map declares (``params: {heads: 12}`` in the
            map; ``--set heads=16`` on the command line), used by its size expressions.
        max_shard_size: write several data shards of at most this size (bytes, or a
            string such as ``"2GB"`` or ``"512MiB"``); a tensor larger than it gets a shard
            of its own.
        num_shards: write the tensors to this many data shards of about equal size.
            Shards carried over whole from the source come on top of either.
        workers: threads that read and transform the next variables while the current
            one is written (default: one per CPU, at most 8); the output is the same byte
            for byte whatever the number.
        max_memory: bytes of computed values that may wait for the writer (default
            128 MiB; a single larger value still goes); a string such as ``"1GB"`` too.
        dask: write the data shards on a Dask cluster (``pip install 'ckptmigrate[dask]'``):
            ``"local:4"`` starts a LocalCluster of 4 worker processes, a scheduler's address
            (``"tcp://host:8786"``) or a ``distributed.Client`` uses that cluster. Each
            shard is a task that re-plans from the same inputs (so the map and target go
            as paths) and writes its ``.data`` file; this process writes the index last
            and publishes. Without ``max_shard_size``/``num_shards``: one shard per
            worker. The output is byte for byte the one-process output with the same
            shards. The workers must see the output's staging directory (beside a local
            output; on this machine for a URL output): other machines need a shared
            filesystem mounted at the same path.
        on_variable: called with each output variable as it is written.
        progress: told the totals, then each variable written, then the verification's
            steps (:class:`~ckptmigrate.progress.Progress`; set its ``listener``).

    Returns:
        What was written: the output, the plan, counts and the verification.

    Raises:
        CkptMigrateError: bad input, a map or target that doesn't fit, an unusable output
            (:class:`~ckptmigrate.OutputError`); nothing is written then.
    """
    options = ConvertOptions(
        root=root,
        format=OutputFormat.parse(format),
        fill_missing_from_target=fill_missing_from_target,
        strict=strict,
        require_all=require_all,
        overwrite=overwrite,
        copy=copy,
        durable=durable,
        verify=verify,
        params=frozen_params(params),
        shards=ShardPolicy(
            None if max_shard_size is None else parse_size(max_shard_size), num_shards
        ),
        workers=workers,
        max_memory=None if max_memory is None else parse_size(max_memory),
        dask=dask,
    )
    return run_conversion(
        checkpoint, map, output, target, options, on_variable=on_variable, progress=progress
    )


def run_conversion(
    checkpoint: str | Path,
    mapping: Map | str | Path | None,
    output: str | Path,
    target: Any,
    options: ConvertOptions,
    *,
    on_variable: OnVariable | None = None,
    on_plan: Callable[[Plan], object] | None = None,
    progress: Progress | None = None,
) -> ConvertResult:
    """:func:`convert` with its options in one object (what the CLI builds); ``on_plan``
    is called with the plan before anything is written (the CLI shows its warnings then,
    not after a long conversion)."""
    the_map = as_map(mapping, target, options)
    destination = as_path(output)
    on_dask = None
    if options.dask is not None:  # refused now rather than after planning
        require_dask()
        on_dask = DaskInputs.of(checkpoint, mapping, target)
    if options.verify and options.format is OutputFormat.KERAS:
        require_keras("verifying the output ([[verify]])")  # Keras loads it, on any backend
    elif options.verify and options.format is OutputFormat.CHECKPOINT:
        require_tensorflow("verifying the output ([[verify]])")
    if options.format is OutputFormat.SAFETENSORS:
        check_safetensors_output(destination, target)
    if options.format is OutputFormat.TORCH:
        check_safetensors_output(destination, target, names_only=True)
        check_torch_output(destination, options)
    if options.format is OutputFormat.KERAS:
        require_keras("a Keras output ([[format_keras]])")
        if isinstance(destination, RemotePath):
            raise OutputError(
                "Keras weight files are written locally only",
                path=str(destination),
                hint="write the .weights.h5 locally, then upload it.",
            )
        check_keras_output(destination, target)
    with (
        open_checkpoint(checkpoint) as ckpt,
        target_model(target, options, ckpt) as opened_target,
        contextlib.ExitStack() as stack,
    ):
        check_model_target(opened_target, options.format, destination)
        the_plan = plan_for(ckpt, the_map, opened_target, options)
        check_output(destination, ckpt.location.given, ckpt.prefix, options.overwrite)
        if on_plan is not None:
            on_plan(the_plan)
        sources = Sources(ckpt, stack)
        if is_torch_target(opened_target) and opened_target.live is not None:
            sources.provide(opened_target.template)
        job = Job(ckpt, the_plan, options, sources, target, opened_target, on_variable)
        if progress is not None:
            job.progress = progress
        job.begin()
        links: tuple[str, ...] = ()
        match options.format:
            case OutputFormat.CHECKPOINT if on_dask is not None:
                written, links = write_checkpoint_on_dask(job, destination, on_dask)
            case OutputFormat.CHECKPOINT:
                written, links = write_checkpoint(job, destination)
            case OutputFormat.KERAS:
                assert isinstance(destination, Path)
                write_keras(job, destination, stack)
                written = destination
            case OutputFormat.SAFETENSORS:
                assert isinstance(destination, Path)
                written = write_safetensors(job, destination)
            case OutputFormat.TORCH:
                assert isinstance(destination, Path)
                written = write_torch(job, destination)
        verification = None
        if options.verify:
            if options.format in (OutputFormat.SAFETENSORS, OutputFormat.TORCH):
                assert isinstance(written, Path)
                if is_torch_target(opened_target) and torch_installed():
                    verification = verify_in_torch(written, job)
                elif options.format is OutputFormat.SAFETENSORS:
                    verification = verify_safetensors(written, job)
                else:
                    verification = verify_torch_file(written, job)
            else:
                verification = _verify(job, written)
    return ConvertResult.of(
        written, the_plan, job.counts, linked_shards=links, verification=verification
    )


def _verify(job: Job, output: AnyPath) -> Verification:
    from ..verification import verify

    with contextlib.ExitStack() as stack:
        # TensorFlow restores local files: a remote output is verified as downloaded from
        # the store, so what is checked is what was published, not the local staging.
        local = output if isinstance(output, Path) else download(output, stack)
        keras = job.options.format is OutputFormat.KERAS
        value = keras_value if keras else stored_value
        expected = {v.name: functools.partial(value, job.sources, v) for v in job.plan.outputs}
        target_model = job.target_model
        if target_model is None:  # nothing to restore into: TensorFlow reads it back
            return verify(local, None, None, None, expected, progress=job.progress)
        root = None if keras else target_model.root
        return verify(
            local,
            target_model.live,
            target_model.rebuild,
            root,
            expected,
            format=job.options.format,
            progress=job.progress,
        )
