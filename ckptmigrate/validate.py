"""``validate``: load and check maps without a checkpoint (editors, pre-commit, CI).

Everything a map can be checked for on its own is checked, exactly as a conversion loads
it: YAML, keys, regexes, templates, slices, dtypes, fills. What needs a checkpoint (a rule
matching nothing, an index out of range) is left to ``convert --dry-run``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import CkptMigrateError
from .mapping.schema import load_map

__all__ = ["MapValidation", "validate_maps"]


@dataclass(frozen=True, slots=True)
class MapValidation:
    """One map's verdict: its rule count, or the error that refuses it."""

    map: str
    """The map as given (a path, or a bundled map's name)."""
    rules: int | None
    """How many rules it has; None when it is refused."""
    error: CkptMigrateError | None = None
    """Why it is refused (``file:line:column`` and a hint); None when it loads."""

    @property
    def ok(self) -> bool:
        return self.error is None


def validate_maps(maps: Iterable[str | Path]) -> list[MapValidation]:
    """Load and completely validate each map, collecting every verdict.

    Args:
        maps: map files, or names of bundled maps (``strip-optimizer``).

    Returns:
        One :class:`MapValidation` per map, in the order given; a refused map does not
        stop the others.

    Raises:
        Nothing for a bad map (its error is in its verdict).
    """
    out = []
    for spec in maps:
        try:
            mapping = load_map(spec)
        except CkptMigrateError as e:
            out.append(MapValidation(str(spec), None, e))
        else:
            out.append(MapValidation(str(spec), len(mapping.rules)))
    return out
