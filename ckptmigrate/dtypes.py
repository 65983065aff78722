"""TensorFlow's DataType enum (types.proto) and its numpy equivalents, without TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class DType:
    """One TensorFlow dtype: enum value, TF's name, and how its elements are stored."""

    enum: int
    name: str
    numpy_name: str | None  # None: no fixed-width numpy layout (string, variant)
    itemsize: int | None = None  # bytes per element; None for string/variant/resource

    @property
    def is_string(self) -> bool:
        return self.enum == STRING

    @property
    def is_variant(self) -> bool:
        return self.enum == VARIANT


STRING = 7
VARIANT = 21

# Values from tensorflow/core/framework/types.proto. Quantized types are stored as their
# underlying integers; float8 types come from ml_dtypes, as in TensorFlow itself.
_TABLE = [
    DType(1, "float32", "float32", 4),
    DType(2, "float64", "float64", 8),
    DType(3, "int32", "int32", 4),
    DType(4, "uint8", "uint8", 1),
    DType(5, "int16", "int16", 2),
    DType(6, "int8", "int8", 1),
    DType(STRING, "string", None),
    DType(8, "complex64", "complex64", 8),
    DType(9, "int64", "int64", 8),
    DType(10, "bool", "bool", 1),
    DType(11, "qint8", "int8", 1),
    DType(12, "quint8", "uint8", 1),
    DType(13, "qint32", "int32", 4),
    DType(14, "bfloat16", "bfloat16", 2),
    DType(15, "qint16", "int16", 2),
    DType(16, "quint16", "uint16", 2),
    DType(17, "uint16", "uint16", 2),
    DType(18, "complex128", "complex128", 16),
    DType(19, "float16", "float16", 2),
    DType(20, "resource", None),
    DType(VARIANT, "variant", None),
    DType(22, "uint32", "uint32", 4),
    DType(23, "uint64", "uint64", 8),
    DType(24, "float8_e5m2", "float8_e5m2", 1),
    DType(25, "float8_e4m3fn", "float8_e4m3fn", 1),
    DType(26, "float8_e4m3fnuz", "float8_e4m3fnuz", 1),
    DType(27, "float8_e4m3b11fnuz", "float8_e4m3b11fnuz", 1),
    DType(28, "float8_e5m2fnuz", "float8_e5m2fnuz", 1),
]
BY_ENUM = {d.enum: d for d in _TABLE}
BY_NAME = {d.name: d for d in _TABLE}
# Aliases users type, mapped to TF's canonical names.
BY_NAME.update(
    {"half": BY_NAME["float16"], "float": BY_NAME["float32"], "double": BY_NAME["float64"]}
)


def from_enum(value: int) -> DType:
    """The dtype for an enum value; unknown values stay opaque rather than failing."""
    known = BY_ENUM.get(value)
    return known if known is not None else DType(value, f"dtype_{value}", None)


def numpy_dtype(dtype: DType) -> np.dtype[np.generic]:
    import numpy as np

    if dtype.numpy_name is None:
        return np.dtype(object)
    return _numpy_dtype(dtype.numpy_name)


# Keyed by the table's numpy names, not by DType: a damaged file's unknown enum values
# (from_enum makes one DType each) would otherwise add an entry per value, for the life of
# a process that reads many files.
@cache
def _numpy_dtype(numpy_name: str) -> np.dtype[np.generic]:
    import numpy as np

    if numpy_name == "bfloat16" or numpy_name.startswith("float8"):
        import ml_dtypes

        custom: np.dtype[np.generic] = np.dtype(getattr(ml_dtypes, numpy_name))
        return custom
    return np.dtype(numpy_name)


def from_numpy(array_dtype: np.dtype[np.generic]) -> DType:
    """The TF dtype a numpy array is saved as (object arrays are strings)."""
    if array_dtype.kind in ("O", "S", "U"):
        return BY_NAME["string"]
    name = array_dtype.name
    if name not in BY_NAME:
        raise ValueError(f"numpy dtype {name} has no TensorFlow checkpoint equivalent")
    return BY_NAME[name]
