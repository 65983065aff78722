"""What a conversion writes: the one enumeration every output decision dispatches on."""

from __future__ import annotations

from enum import Enum

from .errors import CkptMigrateError

__all__ = ["OutputFormat"]


class OutputFormat(str, Enum):
    """The kind of file a conversion writes."""

    CHECKPOINT = "checkpoint"
    """A TensorFlow checkpoint directory (TensorBundle), for TF1 and TF2 restores."""
    KERAS = "keras"
    """A Keras 3 ``.weights.h5`` file, or a whole ``.keras`` archive."""
    SAFETENSORS = "safetensors"
    """A ``.safetensors`` file (or shards and their index), as PyTorch, JAX and Hugging Face
    tools load."""
    TORCH = "torch"
    """A PyTorch ``torch.save`` file (``.pt``, ``.bin``) of a state_dict, which
    ``torch.load(path, weights_only=True)`` loads."""

    @classmethod
    def parse(cls, value: str | OutputFormat) -> OutputFormat:
        """The format named ``value``.

        Raises:
            CkptMigrateError: no format has that name.
        """
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(f.value for f in cls)
            raise CkptMigrateError(
                f"unknown output format {value!r}", hint=f"the formats are: {names}."
            ) from None
