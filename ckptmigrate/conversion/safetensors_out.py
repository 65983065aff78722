"""A plan written as safetensors: one ``.safetensors`` file, or with ``max_shard_size`` /
``num_shards`` several ``<stem>-0000i-of-0000n.safetensors`` files and the
``<stem>.safetensors.index.json`` that maps each tensor to its file (the Hugging Face
convention). The header is known from the plan, so each value is computed and streamed
once; the metadata records where the tensors came from."""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import OutputError
from ..formats.safetensors import (
    INDEX_SUFFIX,
    SUFFIX,
    SafetensorsReader,
    SafetensorsWriter,
    TensorSpec,
    safetensors_dtype,
    shard_name,
)
from ..fs import staged_file
from ..mapping.rules import NO_MAP
from ..targets.torch_module import SAFETENSORS_HINT, SAFETENSORS_NOT_FROM_A_MODEL
from ..verification import Verification, compare_read_back, compare_values
from .job import Job
from .pipeline import stored_values_in_order
from .values import stored_value

__all__ = ["check_safetensors_output", "verify_safetensors", "write_safetensors"]


def check_safetensors_output(output: Any, target: Any, *, names_only: bool = False) -> None:
    """Refuse, before any work, what a safetensors output cannot be (with ``names_only``,
    only the target: a torch.save output takes the same targets).

    Raises:
        OutputError: a URL, a name not ending in ``.safetensors``, or a target.
    """
    if names_only:
        if target is not None and not _names_only(target):
            raise OutputError(SAFETENSORS_NOT_FROM_A_MODEL, path=output, hint=SAFETENSORS_HINT)
        return
    if not isinstance(output, Path):
        raise OutputError(
            "safetensors files are written locally only in this version",
            path=str(output),
            hint="write it locally, then upload it.",
        )
    if not output.name.endswith(SUFFIX):
        raise OutputError(
            "a safetensors output must be named *.safetensors",
            path=output,
            hint="model.safetensors",
        )
    if target is not None and not _names_only(target):
        raise OutputError(SAFETENSORS_NOT_FROM_A_MODEL, path=output, hint=SAFETENSORS_HINT)


def _names_only(target: Any) -> bool:
    """A target that is only names, shapes and dtypes (a safetensors or PyTorch file, a
    checkpoint, a spec file) or a torch module: the output takes exactly its tensors under
    their names. A builder is judged once built (``targets.model.open_conversion_target``)."""
    from ..targets.detect import TargetKind, detect_target
    from ..targets.torch_module import is_torch_module

    kind = detect_target(target).kind
    if kind is TargetKind.LIVE:
        return is_torch_module(target)
    return kind in (TargetKind.CHECKPOINT, TargetKind.SPEC, TargetKind.BUILDER)


def _metadata(job: Job) -> dict[str, str]:
    the_map = job.plan.map
    record = {
        # transformers reads a file only if it says which framework's layout it holds.
        "format": "pt",
        "producer": f"ckptmigrate {__version__}",
        "source_checkpoint": str(job.ckpt.prefix),
    }
    if the_map is not NO_MAP:
        record["map_sha256"] = the_map.sha256
    return record


def write_safetensors(job: Job, destination: Path) -> Path:
    """Write the plan's outputs as safetensors at ``destination`` (``model.safetensors``);
    with a sharding policy, its shards and index beside it. Each file appears whole (staged,
    then renamed); the index last, so no reader finds it before the files it names.

    Returns:
        The file to load: ``destination``, or the index for a sharded output.

    Raises:
        OutputError: a tensor safetensors cannot hold (strings), or the files cannot be written.
    """
    outputs = job.plan.outputs
    specs = [TensorSpec(v.name, v.dtype, v.shape) for v in outputs]
    for spec in specs:
        if safetensors_dtype(spec.dtype) is None:
            raise OutputError(
                f"{spec.name!r} is {spec.dtype}, which safetensors cannot hold",
                path=destination,
                hint="drop it with a map rule (or cast it).",
            )
    groups = job.options.shards.spread([(s.name, s.nbytes) for s in specs])
    by_name = {s.name: s for s in specs}
    stem = destination.name[: -len(SUFFIX)]
    files = (
        [destination]
        if len(groups) == 1
        else [destination.with_name(shard_name(stem, i, len(groups))) for i in range(len(groups))]
    )
    metadata = _metadata(job)
    computed = stored_values_in_order(job)
    placed = {name: i for i, group in enumerate(groups) for name in group}
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.closing(computed))
        # Every file staged and open at once: values come in plan order, shards interleave.
        writers = []
        for i, path in enumerate(files):
            staged = stack.enter_context(
                staged_file(path, overwrite=job.options.overwrite, durable=job.options.durable)
            )
            out = stack.enter_context(staged.open("wb"))
            order = [by_name[name] for name in groups[i]]
            writers.append(SafetensorsWriter(out, _in_plan_order(order, outputs), metadata))
        for variable, value in computed:
            writers[placed[variable.name]].write(variable.name, value)
            job.written(variable)
        for writer in writers:
            writer.finish()
    if len(files) == 1:
        return destination
    index = destination.with_name(stem + INDEX_SUFFIX)
    total = sum(s.nbytes for s in specs)
    content = {
        "metadata": {"total_size": total, **{k: v for k, v in metadata.items() if k != "format"}},
        "weight_map": {name: files[placed[name]].name for name in sorted(placed)},
    }
    with staged_file(index, overwrite=job.options.overwrite, durable=job.options.durable) as staged:
        staged.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return index


def _in_plan_order(specs: list[TensorSpec], outputs: Any) -> list[TensorSpec]:
    rank = {v.name: i for i, v in enumerate(outputs)}
    return sorted(specs, key=lambda s: rank[s.name])


def verify_safetensors(written: Path, job: Job) -> Verification:
    """Read the output back with the ``safetensors`` package when it is installed (the
    format's reference reader), else with ours, and compare every value with the plan's."""
    expected = {v.name: functools.partial(stored_value, job.sources, v) for v in job.plan.outputs}
    files = (
        [written]
        if written.name.endswith(SUFFIX)
        else [written.with_name(name) for name in _index_files(written)]
    )
    try:
        from safetensors import safe_open
    except ImportError:
        return compare_read_back(
            SafetensorsReader(written),
            expected,
            "read back by ckptmigrate's own safetensors reader "
            "(pip install safetensors to have the format's reference reader do it)",
            job.progress,
        )
    with contextlib.ExitStack() as stack:  # each file's handle closed when compared
        opened = [stack.enter_context(safe_open(str(f), framework="np")) for f in files]
        holder = {key: handle for handle in opened for key in handle.keys()}  # noqa: SIM118
        return compare_values(
            lambda key: holder[key].get_tensor(key) if key in holder else None,
            expected,
            "read back with the safetensors package (safe_open)",
            job.progress,
        )


def _index_files(index: Path) -> list[str]:
    return sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
