"""How the tensors a conversion writes are spread over data shards: one shard by default,
or at most a size per shard (``--max-shard-size``, as TensorFlow's ``MaxShardSizePolicy``),
or a given number of shards of about equal size (``--num-shards``, as a sharded Saver
writes one per device). Where a tensor lands changes nothing TensorFlow reads: the index
records each tensor's shard and offset."""

from __future__ import annotations

import heapq
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import CkptMigrateError

__all__ = ["ShardPolicy", "parse_size"]

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """``2GB`` (10^9), ``512MiB`` (2^20), ``1048576``: a size in bytes.

    Raises:
        CkptMigrateError: not a size.
    """
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise CkptMigrateError(
            f"{text!r} is not a size",
            hint="write bytes with an optional unit: 2GB, 500MB (powers of 10), 512MiB, "
            "1GiB (powers of 2), or a number of bytes.",
        )
    return int(float(m.group(1)) * _UNITS[unit])


@dataclass(frozen=True)
class ShardPolicy:
    """At most ``max_shard_size`` bytes per shard, or ``num_shards`` shards; neither: one."""

    max_shard_size: int | None = None
    num_shards: int | None = None

    def __post_init__(self) -> None:
        if self.max_shard_size is not None and self.num_shards is not None:
            raise CkptMigrateError(
                "[[max_shard_size]] and [[num_shards]] both decide the shards; give one",
            )
        if self.max_shard_size is not None and self.max_shard_size < 1:
            raise CkptMigrateError(
                f"[[max_shard_size]] must be at least one byte, got {self.max_shard_size}"
            )
        if self.num_shards is not None and not 1 <= self.num_shards <= 99_999:
            raise CkptMigrateError(
                f"[[num_shards]] must be from 1 to 99999 (TensorFlow's shard names have five "
                f"digits), got {self.num_shards}"
            )

    @property
    def active(self) -> bool:
        return self.max_shard_size is not None or self.num_shards is not None

    def spread(self, sizes: Sequence[tuple[str, int]]) -> list[list[str]]:
        """Put each named tensor, of the given size, in one of the returned shards.

        With a maximum, tensors fill shards in the order given and a shard is closed when
        the next tensor would make it larger than the maximum; a tensor larger than the
        maximum gets a shard of its own (TensorFlow's policy cuts it into slices; this one
        keeps it whole). With a count, there are exactly that many shards, each tensor,
        largest first, going to the shard holding least so far. Neither: one shard.
        """
        if self.num_shards is not None:
            shards: list[list[str]] = [[] for _ in range(self.num_shards)]
            loads = [(0, i) for i in range(self.num_shards)]
            for name, size in sorted(sizes, key=lambda item: -item[1]):
                load, i = heapq.heappop(loads)
                shards[i].append(name)
                heapq.heappush(loads, (load + size, i))
            return shards
        if self.max_shard_size is None:
            return [[name for name, _ in sizes]]
        shards = [[]]
        load = 0
        for name, size in sizes:
            if shards[-1] and load + size > self.max_shard_size:
                shards.append([])
                load = 0
            shards[-1].append(name)
            load += size
        return shards
