"""TensorFlow's DataType enum (types.proto) and its numpy equivalents, without TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np


@dataclass(frozen=True, slots=True)
class DType:
    """One TensorFlow dtype: enum value, TF's name, and how its elements are stored."""

    enum: int
    name: str
    numpy_name: str | None  # None: no fixed-width numpy layout (string, variant)

    @property
    def is_string(self) -> bool:
        return self.enum == STRING

    @property
    def is_variant(self) -> bool:
        return self.enum == VARIANT

    @property
    def itemsize(self) -> int | None:
        return None if self.numpy_name is None else numpy_dtype(self).itemsize


STRING = 7
VARIANT = 21

# Values from tensorflow/core/framework/types.proto. Quantized types are stored as their
# underlying integers; float8 types come from ml_dtypes, as in TensorFlow itself.
_TABLE = [
    DType(1, "float32", "float32"),
    DType(2, "float64", "float64"),
    DType(3, "int32", "int32"),
    DType(4, "uint8", "uint8"),
    DType(5, "int16", "int16"),
    DType(6, "int8", "int8"),
    DType(STRING, "string", None),
    DType(8, "complex64", "complex64"),
    DType(9, "int64", "int64"),
    DType(10, "bool", "bool"),
    DType(11, "qint8", "int8"),
    DType(12, "quint8", "uint8"),
    DType(13, "qint32", "int32"),
    DType(14, "bfloat16", "bfloat16"),
    DType(15, "qint16", "int16"),
    DType(16, "quint16", "uint16"),
    DType(17, "uint16", "uint16"),
    DType(18, "complex128", "complex128"),
    DType(19, "float16", "float16"),
    DType(20, "resource", None),
    DType(VARIANT, "variant", None),
    DType(22, "uint32", "uint32"),
    DType(23, "uint64", "uint64"),
    DType(24, "float8_e5m2", "float8_e5m2"),
    DType(25, "float8_e4m3fn", "float8_e4m3fn"),
    DType(26, "float8_e4m3fnuz", "float8_e4m3fnuz"),
    DType(27, "float8_e4m3b11fnuz", "float8_e4m3b11fnuz"),
    DType(28, "float8_e5m2fnuz", "float8_e5m2fnuz"),
]
BY_ENUM = {d.enum: d for d in _TABLE}
BY_NAME = {d.name: d for d in _TABLE}
# Aliases users type, mapped to TF's canonical names.
BY_NAME.update(
    {"half": BY_NAME["float16"], "float": BY_NAME["float32"], "double": BY_NAME["float64"]}
)


def from_enum(value: int) -> DType:
    """The dtype for an enum value; unknown values stay opaque rather than failing."""
    return BY_ENUM.get(value) or DType(value, f"dtype_{value}", None)


@cache
def numpy_dtype(dtype: DType) -> np.dtype[np.generic]:
    if dtype.numpy_name is None:
        return np.dtype(object)
    if dtype.numpy_name in ("bfloat16",) or dtype.numpy_name.startswith("float8"):
        import ml_dtypes

        custom: np.dtype[np.generic] = np.dtype(getattr(ml_dtypes, dtype.numpy_name))
        return custom
    return np.dtype(dtype.numpy_name)


def from_numpy(array_dtype: np.dtype[np.generic]) -> DType:
    """The TF dtype a numpy array is saved as (object arrays are strings)."""
    if array_dtype.kind in ("O", "S", "U"):
        return BY_NAME["string"]
    name = array_dtype.name
    if name not in BY_NAME:
        raise ValueError(f"numpy dtype {name} has no TensorFlow checkpoint equivalent")
    return BY_NAME[name]
