"""The one place a planned output's value is computed: read from its source checkpoint (or a
second one a ``from`` rule names), filled, concatenated, then each step of its rules."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from ..checkpoint import Checkpoint, open_checkpoint
from ..mapping.fills import make_fill
from ..mapping.located import MapError
from ..mapping.ops import OpError
from ..mapping.plan import PlannedVariable

__all__ = ["Sources", "stored_value", "value_of"]


class Sources:
    """The source checkpoint and any second ones ``from`` rules name, opened once each
    (and closed with ``stack``)."""

    def __init__(self, main: Checkpoint, stack: contextlib.ExitStack) -> None:
        self.main = main
        self._stack = stack
        self._others: dict[str, Checkpoint] = {}
        self._opening = threading.Lock()  # values are computed on several threads

    def provide(self, checkpoint: Checkpoint) -> None:
        """Use an already open checkpoint for its own prefix as an origin: a target's
        template that is no file (a torch module's state_dict) cannot be opened again."""
        self._others[str(checkpoint.prefix)] = checkpoint

    def get(self, origin: str | None) -> Checkpoint:
        """The checkpoint a variable comes from: ``origin``, or the main source for None."""
        if origin is None:
            return self.main
        with self._opening:
            if origin not in self._others:
                self._others[origin] = self._stack.enter_context(open_checkpoint(origin))
            return self._others[origin]


def stored_value(sources: Sources, variable: PlannedVariable) -> Any:
    """What ``variable`` holds once written: its stored tensor for a raw copy, else its
    computed value (what a verification compares the restored value with)."""
    if variable.raw_copy:
        assert variable.source is not None
        return sources.get(variable.origin).reader.read(variable.source)
    return value_of(sources, variable)


def value_of(sources: Sources, variable: PlannedVariable) -> Any:
    """A transformed variable's value: read (or filled, or concatenated), then each step.

    Raises:
        MapError: a step does not fit the value (naming the rule and the variable).
    """
    import numpy as np

    if variable.init is not None:
        rule = variable.init
        value = make_fill(rule.fill, rule.shape, rule.dtype, variable.name)
    elif variable.parts:
        value = np.concatenate(
            [value_of(sources, p) for p in variable.parts], axis=variable.concat_axis
        )
    else:
        assert variable.source is not None
        value = sources.get(variable.origin).reader.read(variable.source)
    for step in variable.steps:
        try:
            value = step.op.apply(value, variable.name)
        except OpError as e:
            raise MapError(
                step.rule, f"variable {variable.source or variable.name!r}: {e}"
            ) from None
    return value
