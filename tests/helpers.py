"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np


def tf_save(tf: Any, prefix: Path, tensors: dict[str, np.ndarray]) -> Path:
    """Write ``tensors`` with TensorFlow's own SaveV2 kernel (what every saver calls)."""
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )
    return prefix


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality (NaN payloads and -0.0 included); strings element-wise."""
    # np.asarray(b"..") would make an "S" array, which drops trailing NUL bytes.
    a, b = (np.array(x, dtype=object) if isinstance(x, bytes) else np.asarray(x) for x in (a, b))
    if a.shape != b.shape:
        return False
    if object in (a.dtype, b.dtype) or a.dtype.kind == "S":
        return [bytes(x) for x in a.reshape(-1)] == [bytes(x) for x in b.reshape(-1)]
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


def file_digests(directory: Path) -> dict[str, str]:
    """Each file's SHA-256 by name, but the provenance record (which names the output): two
    outputs with equal digests are byte for byte the same checkpoint."""
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(directory.iterdir())
        if f.is_file() and f.name != "ckptmigrate-provenance.json"
    }


# A map that renames, pads, casts and initialises, for tests that compare whole outputs
# (w_0..w_N of [32, 32] float32 in, layer_N/kernel out).
TRANSFORMING_MAP = """version: 1
rules:
  - {match: 'w_(\\d+)', rename: 'layer_{1}/kernel'}
  - {match: 'layer_[0-9]*[02468]/kernel', pad: {shape: [40, 36], fill: glorot_uniform}}
  - {match: 'layer_[0-9]*[13579]/kernel', cast: {dtype: float16, allow_precision_loss: true}}
  - {init: {name: extra/bias, shape: [1000], dtype: float32, fill: normal, stddev: 0.1}}
"""


def assert_damaged_copies_fail_cleanly(valid: bytes, path: Path, *, seed: int, count: int) -> None:
    """Write ``count`` damaged copies of ``valid`` to ``path`` (1-3 bytes changed, a fifth
    also truncated) and read every tensor of each: it reads, or fails with a
    CkptMigrateError (any other exception fails the test)."""
    import ckptmigrate
    from ckptmigrate.errors import CkptMigrateError

    rng = np.random.default_rng(seed)
    for _ in range(count):
        data = bytearray(valid)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            data = data[: int(rng.integers(0, len(data)))]
        path.write_bytes(bytes(data))
        try:
            with ckptmigrate.open_checkpoint(path) as ckpt:
                for key in ckpt.keys():  # noqa: SIM118 (a method, not a dict)
                    ckpt.read(key)
        except CkptMigrateError:
            pass
