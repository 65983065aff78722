"""One conversion in progress: what every output writer is handed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..checkpoint import Checkpoint
from ..mapping.plan import Plan, PlannedVariable
from .options import ConvertOptions, Counts
from .values import Sources

__all__ = ["Job", "OnVariable"]

OnVariable = Callable[[PlannedVariable], object]


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
    counts: Counts = field(default_factory=Counts)

    def written(self, variable: PlannedVariable) -> None:
        """Record that ``variable`` was written (and tell the progress callback)."""
        self.counts.add(variable)
        if self.on_variable is not None:
            self.on_variable(variable)
