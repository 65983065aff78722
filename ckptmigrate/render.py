"""Turn reports into text, Rich renderables or JSON. Nothing here prints or exits."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
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


def inspect_table(report: InspectReport) -> RenderableType:
    # User-supplied strings go in as Text, never as markup: names like "w[0]" must survive.
    show_original = any(row.original_name for row in report.rows)
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("name", overflow="fold")
    if show_original:
        table.add_column("original name", overflow="fold", style="cyan")
    table.add_column("dtype")
    table.add_column("shape")
    table.add_column("size", justify="right")
    table.add_column("role")
    for row in report.rows:
        shape = shape_text(row.shape)
        if row.slices:
            shape += f" ({len(row.slices)} slices)"
        cells: list[Text] = [Text(variable_path(row.key))]
        if show_original:
            cells.append(Text(row.original_name or ""))
        cells += [
            Text(row.dtype),
            Text(shape),
            Text(human_bytes(row.nbytes)),
            Text(row.role.label, style=_ROLE_STYLE[row.role]),
        ]
        table.add_row(*cells)

    summary = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    summary.add_column("role")
    summary.add_column("variables", justify="right")
    summary.add_column("parameters", justify="right")
    summary.add_column("size", justify="right")
    for role, totals in report.totals.items():
        summary.add_row(
            Text(role.label),
            str(totals.variables),
            f"{totals.parameters:,}",
            human_bytes(totals.nbytes),
        )
    total = report.total
    summary.add_row(
        Text("total", style="bold"),
        str(total.variables),
        f"{total.parameters:,}",
        human_bytes(total.nbytes),
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
    parts += [Text(""), table, Text(""), summary]
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
