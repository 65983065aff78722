"""PyTorch targets of a conversion: what they take (a safetensors output, the names of their
state_dict), and ``verify`` done as PyTorch would load the result: ``load_state_dict`` with
``strict=True`` into (a copy of) the target module, then every value compared with the
plan's. A state_dict file target has no module: its loading is done the same way on the
file's own tensors (every key present, none unexpected, shapes equal), with torch."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..formats.safetensors import SUFFIX
from ..output_format import OutputFormat
from ..targets.torch_module import is_torch_module, tensor_to_numpy
from ..verification import Verification, compare_values
from .job import Job
from .values import stored_value

__all__ = ["check_model_target", "is_torch_target", "torch_installed", "verify_in_torch"]


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
    loaded from safetensors (``load_state_dict``), not from a TensorFlow checkpoint."""
    if target_model is None or target_model.live is None:
        return
    if format is not OutputFormat.SAFETENSORS and is_torch_module(target_model.live):
        raise OutputError(
            f"a PyTorch module is loaded from a safetensors file, not from a {format.value} output",
            path=output,
            hint="convert to safetensors instead, to a file named *.safetensors, which "
            "safetensors.torch.load_file reads for load_state_dict.",
        )


def _output_files(written: Path) -> list[Path]:
    if written.name.endswith(SUFFIX):
        return [written]
    weight_map = json.loads(written.read_text(encoding="utf-8"))["weight_map"]
    return [written.with_name(name) for name in sorted(set(weight_map.values()))]


def verify_in_torch(written: Path, job: Job) -> Verification:
    """Load the output with ``safetensors.torch.load_file`` into the target as PyTorch
    does (``strict=True``), then compare what the target holds with the plan, bit for bit.
    A failed strict load is a failed verification, with torch's own message."""
    import torch
    from safetensors.torch import load_file

    state: dict[str, Any] = {}
    for path in _output_files(written):
        state.update(load_file(str(path)))
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
