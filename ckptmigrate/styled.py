"""Styled report text without Rich: what the renderers build, written plain to pipes and
files, and turned into Rich renderables only for a terminal.

Importing Rich's console and text costs a fifth of a second-long command's start-up
(about 20 ms), and a report sent to a pipe or a CI log never needs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["Column", "Lines", "Span", "StyledText", "TextTable", "plain_text", "to_rich"]


class Span(NamedTuple):
    """A style over ``text[start:end]`` (a Rich style name such as ``"bold red"``)."""

    start: int
    end: int
    style: str


class StyledText:
    """A run of text with one style over all of it and styled spans inside it."""

    __slots__ = ("plain", "spans", "style")

    def __init__(self, text: str = "", style: str = "", spans: Sequence[Span] = ()) -> None:
        self.plain = text
        self.style = style
        self.spans = list(spans)

    def append(self, text: str, style: str = "") -> StyledText:
        if style and text:
            self.spans.append(Span(len(self.plain), len(self.plain) + len(text), style))
        self.plain += text
        return self

    def __repr__(self) -> str:
        return f"StyledText({self.plain!r}, style={self.style!r}, spans={self.spans!r})"


@dataclass(frozen=True)
class Column:
    """One column of a :class:`TextTable`: its header, its cells, and their style (one for
    the whole column, or one per cell)."""

    header: str
    cells: Sequence[str]
    style: str | Sequence[str] = ""
    right: bool = False


class TextTable:
    """Aligned columns. Rich's Table measures every cell on every render, which costs a
    quarter second for a few hundred rows; this pads whole columns at once (str.ljust over
    a column), so the plain text of 100,000 rows is a few hundredths of a second, and lays
    styles over it as spans only when it is shown on a terminal. Names never wrap."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = columns
        self.widths = [max(len(c.header), max(map(len, c.cells), default=0)) for c in self.columns]

    @property
    def plain(self) -> str:
        padded: list[Iterable[str]] = []
        last = len(self.columns) - 1
        for i, (column, width) in enumerate(zip(self.columns, self.widths, strict=True)):
            cells = [column.header, *column.cells]
            if column.right:
                padded.append(map(str.rjust, cells, repeat(width)))
            elif i == last:
                padded.append(cells)
            else:
                padded.append(map(str.ljust, cells, repeat(width)))
        return "".join(line + "\n" for line in map("  ".join, zip(*padded, strict=True)))

    def styled(self) -> StyledText:
        """The plain text with a span per styled cell (headers bold)."""
        starts = [0]
        for width in self.widths[:-1]:
            starts.append(starts[-1] + width + 2)
        last = self.columns[-1]
        spans: list[Span] = []
        at = 0  # where the row starts in the text
        # Offsets are counted, not found by splitting the text into lines: a name may hold
        # a newline or another character str.splitlines breaks at.
        for row in range(len(self.columns[0].cells) + 1):
            for i, column in enumerate(self.columns):
                cell = column.header if row == 0 else column.cells[row - 1]
                style = "bold" if row == 0 else column.style
                if not isinstance(style, str):
                    style = style[row - 1]
                if style and cell:
                    begin = at + starts[i] + (self.widths[i] - len(cell) if column.right else 0)
                    spans.append(Span(begin, begin + len(cell), style))
            last_cell = last.header if row == 0 else last.cells[row - 1]
            at += starts[-1] + (self.widths[-1] if last.right else len(last_cell)) + 1
        return StyledText(self.plain, spans=spans)


class Lines:
    """Renderables shown one below the other."""

    __slots__ = ("parts",)

    def __init__(self, *parts: Styled) -> None:
        self.parts = parts


Styled: TypeAlias = "StyledText | TextTable | Lines"


def plain_text(styled: Styled) -> str:
    """The text without styling, each line ending in a newline."""
    if isinstance(styled, Lines):
        return "".join(plain_text(part) for part in styled.parts)
    text = styled.plain
    return text if text.endswith("\n") else text + "\n"


def to_rich(styled: Styled) -> RenderableType:
    """The Rich renderable that shows ``styled`` on a terminal."""
    from rich.console import Group
    from rich.text import Span as RichSpan
    from rich.text import Text

    if isinstance(styled, Lines):
        return Group(*(to_rich(part) for part in styled.parts))
    text = styled.styled() if isinstance(styled, TextTable) else styled
    return Text(
        text.plain,
        style=text.style,
        spans=[RichSpan(s.start, s.end, s.style) for s in text.spans],
    )
