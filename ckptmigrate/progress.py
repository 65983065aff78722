"""How far a long task has come: the items and bytes done of the known totals, the rate and
the time left. The library reports into a ``Progress`` it is handed (converting, checking
CRCs, comparing values, verifying, suggesting); the CLI listens and renders it (a live line
on a terminal, a line every few seconds in a log). A leaf: it imports nothing of ours, so
every layer may report into it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Progress", "human_bytes"]


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``2.0 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@dataclass
class Progress:
    """One task at a time: ``begin`` names it and gives its totals (none when they are not
    known: a restore in TensorFlow), ``advance`` counts what is done; every change is passed
    to ``listener``."""

    task: str = ""
    unit: str = "variables"
    total_items: int = 0
    total_bytes: int = 0
    done_items: int = 0
    done_bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    listener: Callable[[Progress], object] | None = field(default=None, repr=False)

    def begin(self, task: str, items: int = 0, nbytes: int = 0, unit: str = "variables") -> None:
        """Start ``task`` (``"converting"``) over ``items`` things of ``nbytes`` in all."""
        self.task, self.unit = task, unit
        self.total_items, self.total_bytes = items, nbytes
        self.done_items = self.done_bytes = 0
        self.started = time.monotonic()
        self._tell()

    def advance(self, nbytes: int = 0, items: int = 1) -> None:
        """Count ``items`` more done, of ``nbytes``."""
        self.done_items += items
        self.done_bytes += nbytes
        self._tell()

    def _tell(self) -> None:
        if self.listener is not None:
            self.listener(self)

    @property
    def determinate(self) -> bool:
        """Whether there are totals to count against."""
        return self.total_items > 0

    @property
    def fraction(self) -> float:
        """Done, by bytes (by items where nothing has bytes), from 0 to 1."""
        if self.total_bytes:
            return min(1.0, self.done_bytes / self.total_bytes)
        return min(1.0, self.done_items / self.total_items) if self.total_items else 0.0

    def rate(self, now: float | None = None) -> float:
        """Bytes (items, where there are no bytes) per second so far."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        done = self.done_bytes if self.total_bytes else self.done_items
        return done / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the rate so far; None before there is a rate."""
        rate = self.rate(now)
        if rate <= 0 or not self.determinate:
            return None
        left = (
            self.total_bytes - self.done_bytes
            if self.total_bytes
            else self.total_items - self.done_items
        )
        return max(0.0, left / rate)

    def line(self, now: float | None = None) -> str:
        """``converting: 120/256 variables, 512.0 MiB of 1.0 GiB (50%), 210.3 MiB/s, 3 s
        left``; without totals, the task alone (a terminal shows the time it has taken)."""
        now = time.monotonic() if now is None else now
        if not self.determinate:
            return f"{self.task} ..."
        text = f"{self.task}: {self.done_items}/{self.total_items} {self.unit}"
        if self.total_bytes:
            text += f", {human_bytes(self.done_bytes)} of {human_bytes(self.total_bytes)}"
        text += f" ({self.fraction:.0%})"
        rate = self.rate(now)
        if rate > 0:
            text += (
                f", {human_bytes(rate)}/s" if self.total_bytes else f", {rate:.1f} {self.unit}/s"
            )
        eta = self.eta(now)
        if eta is not None and self.done_items < self.total_items:
            text += f", {math.ceil(eta)} s left"
        return text
