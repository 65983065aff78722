"""What a suggestion is: its rules (each in a section of the map, maybe UNCERTAIN), the pairs
behind them, and the map they make."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from ..compare import Report
from .yaml_out import render_yaml

if TYPE_CHECKING:
    pass


class Section(int, Enum):
    """Where a rule goes in the map; the value is the order."""

    BASE = -1  # the rules of the bundled map the suggestion starts from
    FREE = 0  # drops of variables whose name a rename will take
    RENAME = 1
    SHAPE = 2
    DROP = 3
    INIT = 4

    @property
    def title(self) -> str:
        """The comment heading this section's rules in the map."""
        return _SECTION_TITLES[self]


@dataclass(frozen=True)
class SuggestedRule:
    """One rule of the suggested map, as the map writes it (selector, operation, note)."""

    section: Section
    body: dict[str, Any]
    uncertain: str | None = None  # why a reviewer should look at this one

    @property
    def kind(self) -> str:
        selectors = ("name", "match", "role", "optional", "note")
        return next(key for key in self.body if key not in selectors)


@dataclass(frozen=True)
class Pair:
    """A checkpoint variable paired with a target variable (display names)."""

    source: str
    target: str
    score: float  # 1.0 for pairs compare() made by name
    uncertain: str | None = None


@dataclass(frozen=True)
class Suggestion:
    checkpoint: str
    target: str
    rules: tuple[SuggestedRule, ...]
    pairs: tuple[Pair, ...]
    predicted: Report | None = None  # the target compared with the converted checkpoint
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def uncertain(self) -> tuple[SuggestedRule, ...]:
        return tuple(r for r in self.rules if r.uncertain)

    @property
    def description(self) -> str:
        return f"suggested by ckptmigrate: {self.checkpoint} -> {self.target}"

    def __repr__(self) -> str:
        predicted = f"; with it: {self.predicted.headline}" if self.predicted else ""
        return (
            f"<Suggestion {self.checkpoint} -> {self.target}: {len(self.rules)} rules, "
            f"{len(self.uncertain)} uncertain{predicted}>"
        )

    def to_dict(self) -> dict[str, Any]:
        """The map as data (what ``to_yaml`` writes, without the comments)."""
        return {
            "version": 1,
            "description": self.description,
            "rules": [dict(r.body) for r in self.rules],
        }

    def to_yaml(self) -> str:
        return render_yaml(self)


_SECTION_TITLES = {
    Section.BASE: "the bundled map this suggestion starts from (see above)",
    Section.FREE: "drops that free a name a rename takes",
    Section.RENAME: "renames onto the target's names",
    Section.SHAPE: "shape and dtype fixes (on the new names)",
    Section.DROP: "drops: what the target does not restore",
    Section.INIT: "new variables: what the checkpoint lacks",
}


def make_rule(
    section: Section, body: dict[str, Any], uncertain: str | None = None
) -> SuggestedRule:
    """A suggested rule."""
    return SuggestedRule(section, body, uncertain)
