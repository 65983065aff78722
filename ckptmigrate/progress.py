"""How far a conversion has come: variables and bytes written of the plan's totals, the
rate and the time left. Computed here, rendered by the CLI (a live line on a terminal, a
line every few seconds in a log)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from . import dtypes
from .mapping.plan import Plan, PlannedVariable

__all__ = ["ConversionProgress"]


def _nbytes(variable: PlannedVariable) -> int:
    return math.prod(variable.shape) * (dtypes.BY_NAME[variable.dtype].itemsize or 0)


def _bytes(n: float) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@dataclass
class ConversionProgress:
    """Totals come from the plan (``start``), progress from each variable written."""

    total_variables: int = 0
    total_bytes: int = 0
    done_variables: int = 0
    done_bytes: int = 0
    started: float = field(default_factory=time.monotonic)

    def start(self, the_plan: Plan) -> None:
        """Take the totals from the plan, before anything is written."""
        self.total_variables = len(the_plan.outputs)
        self.total_bytes = sum(_nbytes(v) for v in the_plan.outputs)
        self.started = time.monotonic()

    def advance(self, variable: PlannedVariable) -> None:
        """Count one variable as written."""
        self.done_variables += 1
        self.done_bytes += _nbytes(variable)

    @property
    def fraction(self) -> float:
        """Done, by bytes (by variables where nothing has bytes), from 0 to 1."""
        if self.total_bytes:
            return min(1.0, self.done_bytes / self.total_bytes)
        return self.done_variables / self.total_variables if self.total_variables else 0.0

    def rate(self, now: float | None = None) -> float:
        """Bytes per second so far."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        return self.done_bytes / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the rate so far; None before there is a rate."""
        rate = self.rate(now)
        return (self.total_bytes - self.done_bytes) / rate if rate > 0 else None

    def line(self, now: float | None = None) -> str:
        """``converting: 120/256 variables, 512.0 MiB of 1.0 GiB (50%), 210.3 MiB/s, 3 s left``."""
        text = (
            f"converting: {self.done_variables}/{self.total_variables} variables, "
            f"{_bytes(self.done_bytes)} of {_bytes(self.total_bytes)} "
            f"({self.fraction:.0%})"
        )
        rate = self.rate(now)
        if rate > 0:
            text += f", {_bytes(rate)}/s"
        eta = self.eta(now)
        if eta is not None and self.done_variables < self.total_variables:
            text += f", {math.ceil(eta)} s left"
        return text
