"""Hypothesis strategies for checkpoint contents: every dtype TF checkpoints carry."""

from __future__ import annotations

import ml_dtypes
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

FIXED_DTYPES = [
    np.dtype(np.float16),
    np.dtype(ml_dtypes.bfloat16),
    np.dtype(np.float32),
    np.dtype(np.float64),
    np.dtype(np.int8),
    np.dtype(np.int16),
    np.dtype(np.int32),
    np.dtype(np.int64),
    np.dtype(np.uint8),
    np.dtype(np.uint16),
    np.dtype(np.uint32),
    np.dtype(np.uint64),
    np.dtype(np.bool_),
    np.dtype(np.complex64),
    np.dtype(np.complex128),
]

shapes = array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)


@st.composite
def tensors(draw: st.DrawFn) -> np.ndarray:
    """Any bit pattern (NaNs, -0.0, subnormals) of any dtype and shape, or a string tensor."""
    shape = draw(shapes)
    count = int(np.prod(shape, dtype=np.int64))
    kind = draw(st.sampled_from([*FIXED_DTYPES, "string"]))
    if kind == "string":
        elements = draw(st.lists(st.binary(max_size=40), min_size=count, max_size=count))
        out = np.empty(count, dtype=object)
        out[:] = elements
        return out.reshape(shape)
    dtype = np.dtype(kind)
    if dtype == np.bool_:
        bits = draw(st.lists(st.booleans(), min_size=count, max_size=count))
        return np.array(bits, dtype=np.bool_).reshape(shape)
    raw = draw(st.binary(min_size=count * dtype.itemsize, max_size=count * dtype.itemsize))
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


# Names as people write them: scopes, digits, dots, dashes, a little Unicode.
names = st.text(alphabet=st.sampled_from("abcxyzABC019_/.-:é名"), min_size=1, max_size=30).filter(
    lambda s: not s.startswith("/")
)

checkpoints = st.dictionaries(names, tensors(), min_size=1, max_size=5)
