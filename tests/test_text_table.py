"""The aligned columns every report prints: each cell lands in its column, right-aligned
columns end together, and on a terminal each style covers exactly its cell's text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ckptmigrate.styled import Column, TextTable, to_rich

cell_text = st.text(alphabet="ab[]/ .é", max_size=12)


@st.composite
def tables(draw: st.DrawFn) -> list[Column]:
    rows = draw(st.integers(0, 6))
    columns = []
    for i in range(draw(st.integers(1, 5))):
        cells = draw(st.lists(cell_text, min_size=rows, max_size=rows))
        per_cell = draw(st.booleans())
        style = (
            [draw(st.sampled_from(["", "red", "dim"])) for _ in cells]
            if per_cell
            else draw(st.sampled_from(["", "cyan"]))
        )
        columns.append(Column(f"h{i}", cells, style, right=draw(st.booleans())))
    return columns


@settings(max_examples=200, deadline=None)
@given(columns=tables())
def test_cells_are_aligned_and_styles_cover_them(columns: list[Column]) -> None:
    table = TextTable(columns)
    lines = table.plain.split("\n")
    assert lines[-1] == ""  # every line ends with a newline
    lines = lines[:-1]
    assert len(lines) == 1 + len(columns[0].cells)
    widths = [max([len(c.header), *(len(x) for x in c.cells)]) for c in columns]
    for row, line in enumerate(lines):
        at = 0
        for i, column in enumerate(columns):
            cell = column.header if row == 0 else column.cells[row - 1]
            last = i == len(columns) - 1
            field = line[at:] if last else line[at : at + widths[i]]
            if column.right:
                assert field == cell.rjust(widths[i])
            else:
                assert field == (cell if last else cell.ljust(widths[i]))
            at += widths[i] + 2

    text = to_rich(table)
    assert text.plain == table.plain
    styled = {(text.plain[s.start : s.end], str(s.style)) for s in text.spans}
    for row in range(len(lines)):
        for column in columns:
            cell = column.header if row == 0 else column.cells[row - 1]
            style = "bold" if row == 0 else column.style
            if not isinstance(style, str):
                style = style[row - 1]
            if style and cell:
                assert (cell, style) in styled
    assert all(s.end - s.start > 0 for s in text.spans)


def test_styles_stay_on_their_cells_when_a_name_holds_a_line_break() -> None:
    names = ["a\nb", "c\x85d", "e\u2028f", "plain"]
    table = TextTable(
        [
            Column("name", names),
            Column("size", ["1 B", "22 B", "333 B", "4 B"], right=True),
            Column("role", ["model", "slot", "step", "model"], ["", "yellow", "magenta", ""]),
        ]
    )
    text = to_rich(table)
    styled = [(text.plain[s.start : s.end], str(s.style)) for s in text.spans]
    assert styled[:3] == [("name", "bold"), ("size", "bold"), ("role", "bold")]
    assert styled[3:] == [("slot", "yellow"), ("step", "magenta")]
