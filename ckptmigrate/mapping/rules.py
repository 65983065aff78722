"""A validated map: frozen rules (what each selects and does, and where it is written) and
the map that holds them. :mod:`.schema` builds these from YAML; nothing here parses."""

from __future__ import annotations

from dataclasses import dataclass

from ..names import Role
from ..regex import RegexMatch, UserRegex
from .fills import Fill
from .located import Where
from .ops import Operation

__all__ = [
    "NO_MAP",
    "AnyRule",
    "ConcatRule",
    "FromRule",
    "InitRule",
    "KeepRule",
    "Map",
    "Rule",
    "Selector",
]


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    pattern: UserRegex
    is_regex: bool
    roles: frozenset[Role] | None = None  # `role:` selects by role; the pattern is then .*

    def match(self, name: str, role: Role | None = None) -> RegexMatch | None:
        if self.roles is not None and role not in self.roles:
            return None
        return self.pattern.fullmatch(name)


class _Numbered:
    """What every rule has: its position in the map and where it is written."""

    __slots__ = ()
    number: int
    where: Where

    @property
    def label(self) -> str:
        return f"rule {self.number} ({self.where})"


@dataclass(frozen=True, slots=True)
class Rule(_Numbered):
    number: int  # 1-based position in the map, as users count
    where: Where
    selector: Selector
    op: Operation
    note: str | None = None
    optional: bool = False  # matching nothing is expected: no warning


@dataclass(frozen=True, slots=True)
class KeepRule(_Numbered):
    number: int
    where: Where
    patterns: tuple[Selector, ...]
    note: str | None = None
    optional: bool = False


@dataclass(frozen=True, slots=True)
class InitRule(_Numbered):
    number: int
    where: Where
    name: str
    shape: tuple[int, ...]
    dtype: str
    fill: Fill
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ConcatRule(_Numbered):
    number: int
    where: Where
    sources: tuple[str, ...]
    axis: int
    into: str
    note: str | None = None
    optional: bool = False  # none of the sources present: skipped (some present: an error)


@dataclass(frozen=True, slots=True)
class FromRule(_Numbered):
    """Bring variables from a second checkpoint into the flow, under their own names."""

    number: int
    where: Where
    checkpoint: str
    selector: Selector
    note: str | None = None


AnyRule = Rule | KeepRule | InitRule | ConcatRule | FromRule


@dataclass(frozen=True)
class Map:
    path: str
    description: str | None
    rules: tuple[AnyRule, ...]
    sha256: str
    params: tuple[tuple[str, int], ...] = ()
    """The parameters the map was loaded with (declared defaults and the caller's values)."""


NO_MAP = Map("(no map)", None, (), "")
"""The map of a conversion given only a target: every variable pairs by name."""
