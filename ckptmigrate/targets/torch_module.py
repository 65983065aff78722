"""A live ``torch.nn.Module`` (or a builder returning one) as a target: its ``state_dict()``
names, shapes and dtypes are what ``load_state_dict(strict=True)`` will want, and its values
are the template a conversion fills missing tensors from. torch is imported only here, and
only when such an object is passed (it is then already imported by the caller)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import dtypes
from ..checkpoint import Checkpoint
from ..errors import CheckpointNotFoundError, CkptMigrateError
from ..formats.bundle_reader import TensorInfo
from ..formats.locate import CheckpointLocation
from ..inventory import Inventory
from .checkpoint import inventory_of

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "SAFETENSORS_HINT",
    "SAFETENSORS_NOT_FROM_A_MODEL",
    "is_torch_module",
    "state_dict_checkpoint",
    "tensor_to_numpy",
    "torch_inventory",
]

# What a safetensors output takes as a target (conversion/safetensors_out.py refuses the
# other kinds before any work, this module's callers a builder's model once built).
SAFETENSORS_NOT_FROM_A_MODEL = (
    "a safetensors or PyTorch output takes its names from the map, or from a target that "
    "is only names (a safetensors or PyTorch state_dict file, a checkpoint, a spec) or is "
    "a PyTorch module, not from a model TensorFlow or Keras restores"
)
SAFETENSORS_HINT = (
    "write the names the consumer expects with rename rules, then compare the result with "
    "what it expects: [[check_command]]."
)
TORCH_NOTE = (
    "names, shapes and dtypes from the module's state_dict() (load_state_dict(strict=True))"
)


def is_torch_module(obj: Any) -> bool:
    """A ``torch.nn.Module`` that is not a Keras layer (Keras 3 on the torch backend makes
    its layers torch modules too; those are Keras targets)."""
    torch = sys.modules.get("torch")  # a module exists only if torch was imported
    if torch is None or not isinstance(obj, torch.nn.Module):
        return False
    keras = sys.modules.get("keras")
    layer = getattr(getattr(keras, "layers", None), "Layer", None)
    return not (isinstance(layer, type) and isinstance(obj, layer))


def tensor_to_numpy(tensor: Any) -> np.ndarray:
    """A torch tensor's values as numpy, bit for bit (bfloat16 and float8 through ml_dtypes,
    which torch's .numpy() does not know)."""
    import numpy as np

    name = str(tensor.dtype).removeprefix("torch.")
    dtype = dtypes.BY_NAME.get(name)
    if dtype is None or dtype.itemsize is None:
        raise CkptMigrateError(f"a tensor of dtype {tensor.dtype} has no numpy equivalent")
    cpu = tensor.detach().cpu().contiguous()
    if cpu.dtype.is_floating_point and cpu.element_size() in (1, 2) and name != "float16":
        import torch

        raw = cpu.reshape(-1).view(torch.uint8 if cpu.element_size() == 1 else torch.int16)
        return np.asarray(raw.numpy()).view(dtypes.numpy_dtype(dtype)).reshape(tuple(cpu.shape))
    return np.asarray(cpu.numpy())


class StateDictReader:
    """A module's state_dict as a checkpoint source (``TensorSource``), in memory."""

    format = "torch"
    big_endian = False
    num_shards = 1

    def __init__(self, state: dict[str, Any], source: str) -> None:
        self._state = state
        self._source = source
        self._infos: dict[str, TensorInfo] = {}
        for key, tensor in state.items():
            name = str(tensor.dtype).removeprefix("torch.")
            dtype = dtypes.BY_NAME.get(name)
            if dtype is None or dtype.itemsize is None:
                raise CkptMigrateError(
                    f"the state_dict holds a {tensor.dtype} tensor, which no checkpoint holds",
                    path=source,
                    variable=key,
                )
            shape = tuple(int(d) for d in tensor.shape)
            nbytes = math.prod(shape) * dtype.itemsize
            self._infos[key] = TensorInfo(key, dtype, shape, nbytes, 0, None, None, ())

    @property
    def prefix(self) -> Path:
        return Path(self._source)

    def variable_keys(self) -> list[str]:
        return sorted(self._infos)

    def stored_keys(self) -> list[str]:
        return self.variable_keys()

    def info(self, key: str) -> TensorInfo:
        try:
            return self._infos[key]
        except KeyError:
            raise CheckpointNotFoundError(
                f"the module's state_dict has no {key!r}", path=self._source, variable=key
            ) from None

    def read(self, key: str, verify: bool = True) -> np.ndarray:
        self.info(key)
        return tensor_to_numpy(self._state[key])

    def verify(self, on_tensor: Callable[[int], object] | None = None) -> int:
        return 0

    def close(self) -> None:
        pass


def state_dict_checkpoint(module: Any, source: str) -> Checkpoint:
    """The module's state_dict as an open checkpoint (the conversion's template)."""
    try:
        state = dict(module.state_dict())
    except Exception as e:
        raise CkptMigrateError(
            f"the module's state_dict() raised {type(e).__name__}: {e}", path=source
        ) from e
    if not state:
        raise CkptMigrateError(
            "the module's state_dict() is empty: it has no parameters or buffers",
            path=source,
            hint="build the layers first (lazy modules need one forward pass).",
        )
    location = CheckpointLocation(Path(source), "torch", Path(source), (TORCH_NOTE,))
    return Checkpoint(location, StateDictReader(state, source))


def torch_inventory(module: Any, source: str, kind: str = "model") -> Inventory:
    """What ``load_state_dict(strict=True)`` into ``module`` needs."""
    with state_dict_checkpoint(module, source) as checkpoint:
        return inventory_of(checkpoint, kind, source)
