"""CRC32C as TensorFlow and LevelDB use it, including their "masked" form.

Masking exists because a CRC of data that itself contains CRCs is weak; stored checksums
are rotated and offset. Constants are part of the on-disk format.
"""

from __future__ import annotations

import crc32c as _crc32c

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
