"""One conversion in progress: what every output writer is handed."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import dtypes
from ..checkpoint import Checkpoint
from ..mapping.plan import Plan, PlannedVariable
from ..progress import Progress
from .options import ConvertOptions, Counts
from .values import Sources

__all__ = ["Job", "OnVariable", "planned_bytes"]

OnVariable = Callable[[PlannedVariable], object]


def planned_bytes(variable: PlannedVariable) -> int:
    """The size of an output variable's values (0 for strings, whose size is unknown)."""
    return math.prod(variable.shape) * (dtypes.BY_NAME[variable.dtype].itemsize or 0)


@dataclass
class Job:
    """The opened source, its plan, the target and the options; writers count what they
    write here, so every output format reports the same way."""

    ckpt: Checkpoint
    plan: Plan
    options: ConvertOptions
    sources: Sources
    target: Any = None
    """The target as the caller gave it (a path, builder spec or live object)."""
    target_model: Any = None
    """The opened target (``targets.model.TargetModel``), or None without a target."""
    on_variable: OnVariable | None = None
    progress: Progress = field(default_factory=Progress)
    counts: Counts = field(default_factory=Counts)

    def begin(self) -> None:
        """Announce the conversion's totals, before anything is written."""
        outputs = self.plan.outputs
        self.progress.begin("converting", len(outputs), sum(map(planned_bytes, outputs)))

    def written(self, variable: PlannedVariable) -> None:
        """Record that ``variable`` was written (and tell the progress callback)."""
        self.counts.add(variable)
        self.progress.advance(planned_bytes(variable))
        if self.on_variable is not None:
            self.on_variable(variable)
