"""TF1 "V1" single-file checkpoints (``write_version=SaverDef.V1``, TF <= 1.x defaults before
1.2 and some exports). They are detected without TensorFlow (a table file with no `.index`
beside it) and read through TensorFlow's own reader, imported only here and only then.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import dtypes
from .._tf import import_tensorflow
from ..errors import CorruptCheckpointError
from .bundle_reader import TensorInfo

if TYPE_CHECKING:
    import numpy as np


class V1Reader:
    """The same listing/reading surface as BundleReader, backed by TensorFlow."""

    format = "v1"
    big_endian = False

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = Path(prefix)
        tf = import_tensorflow()
        try:
            self._reader = tf.train.load_checkpoint(str(self.prefix))
            shapes = self._reader.get_variable_to_shape_map()
            tf_dtypes = self._reader.get_variable_to_dtype_map()
        except Exception as e:  # TF raises DataLossError & co; translate once, here
            raise CorruptCheckpointError(
                f"TensorFlow cannot read this V1 checkpoint: {e}".splitlines()[0],
                path=self.prefix,
            ) from e
        self._infos = {}
        for key in sorted(shapes):
            dtype = dtypes.from_enum(int(tf_dtypes[key].as_datatype_enum))
            shape = tuple(int(d) for d in shapes[key])
            count = math.prod(shape)
            nbytes = count * (dtype.itemsize or 0)
            self._infos[key] = TensorInfo(key, dtype, shape, nbytes, None, None, None, ())

    def variable_keys(self) -> list[str]:
        return list(self._infos)

    def info(self, key: str) -> TensorInfo:
        return self._infos[key]

    def read(self, key: str, verify: bool = True) -> np.ndarray:
        import numpy as np

        value = self._reader.get_tensor(key)
        array = np.asarray(value)
        if array.dtype.kind == "S":
            array = array.astype(object)
        return array

    num_shards = 1  # one file

    def stored_keys(self) -> list[str]:
        """What ``verify`` reads: every variable (TensorFlow reassembles partitioned ones)."""
        return list(self._infos)

    def verify(self, on_tensor: Callable[[int], object] | None = None) -> int:
        # TF checks each slice's stored checksum as it reads it.
        total = 0
        for key in self._infos:
            try:
                size = self.read(key).nbytes
            except Exception as e:
                raise CorruptCheckpointError(
                    f"TensorFlow cannot read it: {e}", path=self.prefix, variable=key
                ) from e
            total += size
            if on_tensor is not None:
                on_tensor(size)
        return total

    def close(self) -> None:
        self._reader = None

    def __enter__(self) -> V1Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
