"""CRC32C as TensorFlow and LevelDB use it, including their "masked" form.

Masking exists because a CRC of data that itself contains CRCs is weak; stored checksums
are rotated and offset. Constants are part of the on-disk format.
"""

from __future__ import annotations

from typing import Any


def _load_crc32c() -> Any:
    """The crc32c package's C extension, loaded without the package's ``__init__``, which
    looks its own version up with importlib.metadata (~20 ms on every command). Falls
    back to the plain import if the package is laid out differently."""
    import importlib.machinery
    import importlib.util

    try:
        package = importlib.util.find_spec("crc32c")
        locations = package.submodule_search_locations if package else None
        if locations is None:  # not a package: nothing of its own to load directly
            raise ImportError("crc32c is not a package")
        spec = importlib.machinery.PathFinder.find_spec("crc32c._crc32c", locations)
        if spec is None or spec.loader is None:
            raise ImportError("crc32c._crc32c not found")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        # Trust it only if it computes CRC32C (the standard check value of "123456789").
        if module.crc32c(b"123456789") != 0xE3069283:
            raise ImportError("crc32c._crc32c is not a CRC32C")
        return module
    except (ImportError, AttributeError):
        import crc32c

        return crc32c


_crc32c = _load_crc32c()

BytesLike = bytes | bytearray | memoryview

_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


def extend(crc: int, data: BytesLike) -> int:
    """Continue a CRC32C over more bytes (``crc=0`` starts a new one)."""
    return int(_crc32c.crc32c(data, crc))


def value(data: BytesLike) -> int:
    return int(_crc32c.crc32c(data))


def mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32
