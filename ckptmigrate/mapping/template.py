"""Rename templates: the new name, built from the match's groups.

``{1}`` or ``{layer}`` is a group's text; ``{1+1}`` / ``{layer-2}`` is a group read as an
integer, plus or minus a constant (so ``hiddenlayer_3`` can become ``hiddenlayer_4`` when a
layer is inserted in front); ``{{`` and ``}}`` are literal braces. ``{0}`` is the whole name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..regex import RegexMatch, UserRegex

_FIELD = re.compile(r"\{([^{}]*)\}|\{\{|\}\}|[{}]")
_EXPR = re.compile(r"\s*(\d+|[A-Za-z_]\w*)\s*(?:([+-])\s*(\d+)\s*)?$")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Piece:
    literal: str = ""
    group: int | str | None = None  # None: a literal piece
    offset: int | None = None  # None: text; int: integer arithmetic

    def render(self, match: RegexMatch) -> str:
        if self.group is None:
            return self.literal
        text: str | None = match.group(self.group)
        if text is None:
            raise TemplateError(f"group {self.group} did not take part in the match")
        if self.offset is None:
            return text
        try:
            return str(int(text) + self.offset)
        except ValueError:
            raise TemplateError(
                f"group {self.group} is {text!r}, not a number, so it cannot take {self.offset:+d}"
            ) from None


@dataclass(frozen=True, slots=True)
class Template:
    pieces: tuple[Piece, ...]

    def render(self, match: RegexMatch) -> str:
        return "".join(piece.render(match) for piece in self.pieces)


def parse_template(text: str, pattern: UserRegex) -> Template:
    """Parse and check against the regex's groups; raises TemplateError with the reason."""
    pieces: list[Piece] = []
    pos = 0
    for found in _FIELD.finditer(text):
        if found.start() > pos:
            pieces.append(Piece(text[pos : found.start()]))
        token = found.group(0)
        pos = found.end()
        if token == "{{":
            pieces.append(Piece("{"))
            continue
        if token == "}}":
            pieces.append(Piece("}"))
            continue
        if token in ("{", "}"):
            raise TemplateError(
                f"unbalanced {token!r} at position {found.start()} "
                "(write {{ or }} for a literal brace)"
            )
        expr = _EXPR.match(found.group(1))
        if expr is None:
            raise TemplateError(
                f"{token!r} is not a group reference like {{1}}, {{name}} or {{1+1}}"
            )
        ref, sign, amount = expr.groups()
        group: int | str = int(ref) if ref.isdigit() else ref
        if isinstance(group, int) and group > pattern.groups:
            raise TemplateError(
                f"{token!r} refers to group {group}, but the pattern has {pattern.groups} group(s)"
            )
        if isinstance(group, str) and group not in pattern.groupindex:
            known = ", ".join(pattern.groupindex) or "none"
            raise TemplateError(
                f"{token!r} refers to a group named {group!r} (named groups: {known})"
            )
        offset = None if sign is None else (int(amount) if sign == "+" else -int(amount))
        pieces.append(Piece(group=group, offset=offset))
    if pos < len(text):
        pieces.append(Piece(text[pos:]))
    return Template(tuple(pieces))
