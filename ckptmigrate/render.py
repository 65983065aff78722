"""Turn reports into text, Rich renderables or JSON. Nothing here prints or exits."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from .inspection import InspectReport
from .names import VARIABLE_SUFFIX, Role, variable_path


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


Cell = tuple[str, str]  # (text, Rich style)


def columns(
    headers: list[str], rows: list[list[Cell]], right: frozenset[int] = frozenset()
) -> Text:
    """Aligned columns as one Text. Rich's Table measures every cell on every render, which
    costs a quarter second for a few hundred rows; names are never wrapped here."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], len(text))
    out = Text()

    def line(cells: list[Cell]) -> None:
        for i, (text, style) in enumerate(cells):
            if i:
                out.append("  ")
            pad = " " * (widths[i] - len(text))
            if i in right:
                out.append(pad)
            out.append(text, style=style)
            if i not in right and i != len(cells) - 1:
                out.append(pad)
        out.append("\n")

    line([(h, "bold") for h in headers])
    for row in rows:
        line(row)
    return out


def inspect_table(report: InspectReport) -> RenderableType:
    # User-supplied strings go in as plain Text, never as markup: "w[0]" must survive.
    show_original = any(row.original_name for row in report.rows)
    headers = [
        "name",
        *(["original name"] if show_original else []),
        "dtype",
        "shape",
        "size",
        "role",
    ]
    size_column = len(headers) - 2
    rows: list[list[Cell]] = []
    for row in report.rows:
        shape = shape_text(row.shape)
        if row.slices:
            shape += f" ({len(row.slices)} slices)"
        cells: list[Cell] = [(variable_path(row.key), "")]
        if show_original:
            cells.append((row.original_name or "", "cyan"))
        cells += [
            (row.dtype, ""),
            (shape, ""),
            (human_bytes(row.nbytes), ""),
            (row.role.label, _ROLE_STYLE[row.role]),
        ]
        rows.append(cells)
    table = columns(headers, rows, right=frozenset({size_column}))

    summary_rows: list[list[Cell]] = []
    for role, totals in report.totals.items():
        summary_rows.append(
            [
                (role.label, ""),
                (str(totals.variables), ""),
                (f"{totals.parameters:,}", ""),
                (human_bytes(totals.nbytes), ""),
            ]
        )
    total = report.total
    summary_rows.append(
        [
            ("total", "bold"),
            (str(total.variables), ""),
            (f"{total.parameters:,}", ""),
            (human_bytes(total.nbytes), ""),
        ]
    )
    summary = columns(
        ["role", "variables", "parameters", "size"], summary_rows, right=frozenset({1, 2, 3})
    )

    heading = Text()
    heading.append(report.prefix, style="bold")
    kind = "object-based (TF2)" if report.object_based else "name-based"
    heading.append(
        f"  {report.format.upper()} checkpoint, {kind}, "
        f"{report.num_shards} shard{'s' if report.num_shards != 1 else ''}"
    )
    parts: list[RenderableType] = [heading]
    if any(row.key.endswith(VARIABLE_SUFFIX) for row in report.rows):
        parts.append(Text(f"names are checkpoint keys without {VARIABLE_SUFFIX}", style="dim"))
    parts += [Text(f"note: {note}", style="dim") for note in report.notes]
    if report.filter is not None:
        parts.append(Text(f"filter: {report.filter}", style="dim"))
    parts += [Text(""), table, summary]
    if report.verified_bytes is not None:
        parts.append(
            Text(
                f"verified: every tensor in the checkpoint matches its CRC32C "
                f"({human_bytes(report.verified_bytes)} read)",
                style="green",
            )
        )
    return Group(*parts)


_ROLE_STYLE = {
    Role.MODEL: "",
    Role.OPTIMIZER: "yellow",
    Role.STEP: "magenta",
    Role.METADATA: "dim",
}
