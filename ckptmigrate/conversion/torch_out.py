"""PyTorch outputs and targets of a conversion: a ``torch.save`` file written natively
(``--format torch``), what PyTorch targets take (a safetensors or torch output, under their
state_dict's names), and ``verify`` done as PyTorch would load the result:
``load_state_dict`` with ``strict=True`` into (a copy of) the target module, then every value
compared with the plan's. A state_dict file target has no module: its loading is done the
same way on the file's own tensors (every key present, none unexpected, shapes equal), with
torch."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..formats.safetensors import SUFFIX
from ..formats.torch_file import TorchReader, TorchWriter, torch_dtype_supported
from ..fs import staged_file
from ..output_format import OutputFormat
from ..targets.torch_module import is_torch_module, tensor_to_numpy
from ..verification import Verification, compare_read_back, compare_values
from .job import Job
from .pipeline import stored_values_in_order
from .values import stored_value

__all__ = [
    "check_model_target",
    "check_torch_output",
    "is_torch_target",
    "torch_installed",
    "verify_in_torch",
    "verify_torch_file",
    "write_torch",
]

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
PYTORCH_OUTPUTS = (OutputFormat.SAFETENSORS, OutputFormat.TORCH)


def check_torch_output(output: Any, options: Any) -> None:
    """Refuse, before any work, what a torch.save output cannot be.

    Raises:
        OutputError: a URL, a name not ending in .pt/.pth/.bin, or sharding options.
    """
    if not isinstance(output, Path):
        raise OutputError(
            "PyTorch files are written locally only in this version",
            path=str(output),
            hint="write it locally, then upload it.",
        )
    if not output.name.lower().endswith(TORCH_SUFFIXES):
        raise OutputError(
            "a PyTorch output must be named *.pt, *.pth or *.bin",
            path=output,
            hint="model.pt, or pytorch_model.bin for Hugging Face's layout.",
        )
    if options.shards.active:
        raise OutputError(
            "a torch.save file is one file: [[max_shard_size]] and [[num_shards]] do not apply",
            path=output,
            hint="write safetensors for a sharded output (an index and its shards).",
        )


def write_torch(job: Job, destination: Path) -> Path:
    """Write the plan's outputs as one ``torch.save`` file (a state_dict of tensors, each on
    its own storage), streamed tensor by tensor and published whole (staged, then renamed).

    Raises:
        OutputError: a tensor torch cannot hold (strings), or the file cannot be written.
    """
    outputs = job.plan.outputs
    for variable in outputs:
        if not torch_dtype_supported(variable.dtype):
            raise OutputError(
                f"{variable.name!r} is {variable.dtype}, which a torch.save file cannot hold",
                path=destination,
                hint="drop it with a map rule (or cast it).",
            )
    computed = stored_values_in_order(job)
    # torch.save names the archive's folder after the file (model.pt -> model/).
    folder = destination.name.split(".")[0] or "archive"
    specs = [(v.name, v.dtype, v.shape) for v in outputs]
    with (
        contextlib.closing(computed),
        staged_file(
            destination, overwrite=job.options.overwrite, durable=job.options.durable
        ) as staged,
        staged.open("wb") as out,
    ):
        writer = TorchWriter(out, specs, folder)
        for variable, value in computed:
            writer.write(variable.name, value)
            job.written(variable)
        writer.finish()
    return destination


def torch_installed() -> bool:
    """PyTorch targets are verified with torch and safetensors.torch where both are
    installed (pip install 'ckptmigrate[torch]'); without them, the safetensors output is
    read back and compared with the plan as for any other target."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "safetensors"))


def is_torch_target(target_model: Any) -> bool:
    """A live or built torch module, or a PyTorch state_dict file."""
    if target_model is None:
        return False
    if target_model.live is not None:
        return is_torch_module(target_model.live)
    template = target_model.template
    return template is not None and template.reader.format == "torch"


def check_model_target(target_model: Any, format: OutputFormat, output: Any) -> None:
    """Refuse, once the target is built, an output a torch module cannot load: it is
    loaded from safetensors or torch.save files (``load_state_dict``), not from a
    TensorFlow checkpoint or a Keras file."""
    if target_model is None or target_model.live is None:
        return
    if format not in PYTORCH_OUTPUTS and is_torch_module(target_model.live):
        raise OutputError(
            "a PyTorch module is loaded from a safetensors or torch.save file, not from a "
            f"{format.value} output",
            path=output,
            hint="write safetensors (model.safetensors) or a torch.save file (model.pt) "
            "instead, which load_state_dict takes once loaded.",
        )


def _output_files(written: Path) -> list[Path]:
    if written.name.endswith(SUFFIX):
        return [written]
    weight_map = json.loads(written.read_text(encoding="utf-8"))["weight_map"]
    return [written.with_name(name) for name in sorted(set(weight_map.values()))]


def _load_output(written: Path) -> dict[str, Any]:
    """The output as PyTorch loads it: ``torch.load(weights_only=True)`` for a torch.save
    file, ``safetensors.torch.load_file`` for safetensors (each shard)."""
    import torch

    if written.name.lower().endswith(TORCH_SUFFIXES):
        return dict(torch.load(str(written), weights_only=True))
    from safetensors.torch import load_file

    state: dict[str, Any] = {}
    for path in _output_files(written):
        state.update(load_file(str(path)))
    return state


def verify_torch_file(written: Path, job: Job) -> Verification:
    """A torch.save output for a target that is no PyTorch module (or without torch): read
    back with torch.load(weights_only=True) where torch is installed, else with this
    package's reader, and every value compared with the plan."""
    expected = {v.name: functools.partial(stored_value, job.sources, v) for v in job.plan.outputs}
    if torch_installed():
        state = _load_output(written)
        return compare_values(
            lambda key: tensor_to_numpy(state[key]) if key in state else None,
            expected,
            "read back with torch.load(weights_only=True)",
            job.progress,
        )
    return compare_read_back(
        TorchReader(written),
        expected,
        "read back by ckptmigrate's own torch.save reader (pip install "
        "'ckptmigrate[torch]' to have torch.load do it)",
        job.progress,
    )


def verify_in_torch(written: Path, job: Job) -> Verification:
    """Load the output as PyTorch does (``torch.load`` or ``safetensors.torch.load_file``)
    into the target with ``strict=True``, then compare what the target holds with the plan,
    bit for bit. A failed strict load is a failed verification, with torch's own message."""
    import torch

    state = _load_output(written)
    expected = {v.name: functools.partial(stored_value, job.sources, v) for v in job.plan.outputs}
    live = job.target_model.live
    if live is not None:
        module = copy.deepcopy(live)  # the caller's own module keeps its values
        how = "loaded with load_state_dict(strict=True) into a copy of the target module"
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            return Verification(False, len(expected), error=" ".join(str(e).split()), how=how)
        held = module.state_dict()
    else:
        how = (
            "loaded as load_state_dict(strict=True) loads, into the tensors torch.load("
            "weights_only=True) reads from the target file"
        )
        held = torch.load(str(job.target_model.template.prefix), weights_only=True)
        problem = _strict_problem(held, state)
        if problem is not None:
            return Verification(False, len(expected), error=problem, how=how)
        with torch.no_grad():
            for key, tensor in held.items():
                tensor.copy_(state[key])

    def restored(key: str) -> Any:
        tensor = held.get(key)
        return None if tensor is None else tensor_to_numpy(tensor)

    return compare_values(restored, expected, how, job.progress)


def _strict_problem(held: dict[str, Any], state: dict[str, Any]) -> str | None:
    """What ``load_state_dict(strict=True)`` would raise, in its words, or None."""
    missing = sorted(set(held) - set(state))
    unexpected = sorted(set(state) - set(held))
    sizes = [
        f"size mismatch for {key}: copying a param with shape {list(state[key].shape)} from "
        f"checkpoint, the shape in current model is {list(held[key].shape)}"
        for key in sorted(set(held) & set(state))
        if held[key].shape != state[key].shape
    ]
    parts = []
    if missing:
        parts.append("Missing key(s) in state_dict: " + ", ".join(map(repr, missing)))
    if unexpected:
        parts.append("Unexpected key(s) in state_dict: " + ", ".join(map(repr, unexpected)))
    parts.extend(sizes)
    return "; ".join(parts) if parts else None
