"""Turn reports into text, Rich renderables or JSON. Nothing here prints or exits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.text import Text

from ._version import __version__
from .compare import FAILING, SCHEMA_VERSION, Finding, Kind, Report, ValueDiff
from .errors import redact_credentials
from .inspection import InspectReport
from .inventory import VariableSpec
from .names import VARIABLE_SUFFIX, Role, variable_path

if TYPE_CHECKING:
    from .mapping.plan import Plan
    from .suggestion import Suggestion


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
    costs a quarter second for a few hundred rows, and appending cell by cell to a Text
    seconds for 100,000; the text is joined once and styles laid over it as spans. Names
    are never wrapped here."""
    from rich.text import Span

    widths = [len(h) for h in headers]
    for row in rows:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], len(text))
    last = len(headers) - 1
    pieces: list[str] = []
    spans: list[Span] = []
    at = 0

    def line(cells: list[Cell]) -> None:
        nonlocal at
        for i, (text, style) in enumerate(cells):
            pad = " " * (widths[i] - len(text))
            lead = ("  " if i else "") + (pad if i in right else "")
            tail = "" if i in right or i == last else pad
            start = at + len(lead)
            pieces.append(lead + text + tail)
            at += len(lead) + len(text) + len(tail)
            if style and text:
                spans.append(Span(start, start + len(text), style))
        pieces.append("\n")
        at += 1

    line([(h, "bold") for h in headers])
    for row in rows:
        line(row)
    return Text("".join(pieces), spans=spans)


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
    parts += [Text(""), table, Text(""), summary]
    if report.verified_bytes is not None:
        # safetensors and HDF5 weight files carry no checksums: all there is to verify is
        # that every tensor reads in full.
        what = (
            "matches its CRC32C"
            if report.format in ("v1", "v2")
            else "reads in full (the format has no checksums)"
        )
        parts.append(
            Text(
                f"verified: every tensor in the checkpoint {what} "
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


# -- check -----------------------------------------------------------------------------

_KIND_STYLE = {
    Kind.SHAPE_MISMATCH: "red",
    Kind.DTYPE_MISMATCH: "red",
    Kind.MISSING: "red",
    Kind.UNUSED: "yellow",
    Kind.MATCHED: "green",
}
_GROUP_LABELS = {
    Role.MODEL: "model variables",
    Role.OPTIMIZER: "optimizer slots",
    Role.STEP: "step counters",
    Role.METADATA: "checkpoint metadata",
}


def _spec_text(spec: VariableSpec | None) -> str:
    return "-" if spec is None else f"{shape_text(spec.shape)} {spec.dtype}"


def _finding_line(f: Finding) -> Text:
    line = Text("    ")
    line.append(f.name)
    if f.checkpoint_name and f.checkpoint_name != f.name:
        line.append(f"  <- {f.checkpoint_name}", style="dim")
    if f.kind in (Kind.SHAPE_MISMATCH, Kind.DTYPE_MISMATCH):
        line.append(f"  target {_spec_text(f.target)}, checkpoint {_spec_text(f.checkpoint)}")
    elif f.kind is Kind.MISSING:
        line.append(f"  target {_spec_text(f.target)}")
    elif f.kind is Kind.UNUSED:
        line.append(f"  {_spec_text(f.checkpoint)}")
    elif f.values is not None:
        line.append(f"  {_values_text(f.values)}", style="" if f.values.identical else "yellow")
    return line


def _values_text(values: ValueDiff) -> str:
    if values.identical:
        return "values identical"
    if values.max_abs_diff is None:
        return "values differ"
    return f"values differ: max |diff| {values.max_abs_diff:.6g}, rms {values.rms_diff:.6g}"


def check_text(report: Report, *, show_matched: bool = False) -> RenderableType:
    """The check report: headline, then findings grouped by kind and role, then a verdict.
    Model variables carry TensorFlow's error and a hint; slots and counters stay compact."""
    parts: list[RenderableType] = []
    head = Text()
    head.append(report.headline, style="bold")
    parts.append(head)
    parts.append(Text(f"checkpoint: {report.checkpoint.source} ({report.checkpoint.scheme.label})"))
    parts.append(
        Text(
            f"target:     {report.target.source} ({report.target.kind}, "
            f"{report.target.scheme.label})"
        )
    )
    parts.append(Text(f"compared:   {report.matching}"))
    parts += [Text(f"note: {note}", style="dim") for note in report.notes]

    differing = [f for f in report.findings if f.values is not None and not f.values.identical]
    for kind in (Kind.SHAPE_MISMATCH, Kind.DTYPE_MISMATCH, Kind.MISSING, Kind.UNUSED, Kind.MATCHED):
        group = [f for f in report.findings if f.kind is kind]
        if not group:
            continue
        if kind is Kind.MATCHED and not show_matched:
            if differing:
                parts.append(Text(""))
                parts.append(Text(f"matched, values differ ({len(differing)})", style="yellow"))
                parts += [_finding_line(f) for f in differing]
            continue
        suffix = " (warning)" if kind is Kind.UNUSED and not report.options.strict else ""
        parts.append(Text(""))
        parts.append(
            Text(f"{kind.label} ({len(group)}){suffix}", style=f"bold {_KIND_STYLE[kind]}")
        )
        for role in Role:
            members = [f for f in group if f.role is role]
            if not members:
                continue
            parts.append(Text(f"  {_GROUP_LABELS[role]} ({len(members)})"))
            for f in members:
                parts.append(_finding_line(f))
                if role is Role.MODEL and f.kind is not Kind.MATCHED:
                    if f.tensorflow_error:
                        parts.append(Text(f"      TensorFlow: {f.tensorflow_error}", style="dim"))
                    if f.hint:
                        parts.append(Text(f"      hint: {f.hint}", style="cyan"))
    parts.append(Text(""))
    parts.append(verdict_text(report))
    return Group(*parts)


def verdict_text(report: Report) -> Text:
    """The one verdict line, for the question the report answers (``Report.question``):
    FAIL exactly when ``report.ok`` is false, as the exit code, JSON and HTML say."""
    counts = {kind: report.count(kind) for kind in Kind}
    problems = [f"{counts[k]} {k.label}" for k in FAILING if counts[k]]
    if report.below_min_match:
        problems.append(
            f"match ratio {report.match_ratio:.2f} below --min-match {report.options.min_match}"
        )
    if report.options.strict and counts[Kind.UNUSED]:
        problems.append(f"{counts[Kind.UNUSED]} unused (--strict)")
    differ = report.differing_values if report.options.values else 0
    differ_text = f"{differ} matched variable{'s' if differ != 1 else ''} with different values"
    if problems:
        also = f"; and {differ_text} (--values)" if differ else ""
        return Text(
            f"FAIL: a strict restore would not succeed ({', '.join(problems)}){also}",
            style="bold red",
        )
    if differ:
        return Text(
            f"FAIL: the values are not identical ({differ_text}, --values); a strict restore "
            "would succeed",
            style="bold red",
        )
    extra = f"; {counts[Kind.UNUSED]} checkpoint entries unused" if counts[Kind.UNUSED] else ""
    what = (
        "the same shape, dtype and values" if report.options.values else "the same shape and dtype"
    )
    return Text(f"OK: every target variable restores with {what}{extra}", style="bold green")


def check_dict(report: Report, *, command: Sequence[str] | None = None) -> dict[str, Any]:
    """What ``check --json`` prints: :meth:`Report.to_dict`, with the verdict line as the
    text says it (``summary.verdict``) and what produced it (``produced_by``: this version
    and, from the command line, its arguments). Everything the HTML page shows is here, so
    a saved copy renders the same page (``ckptmigrate report``)."""
    data = report.to_dict()
    data["summary"]["verdict"] = verdict_text(report).plain
    data["produced_by"] = {
        "tool": "ckptmigrate",
        "version": __version__,
        "command": None if command is None else [redact_credentials(a) for a in command],
    }
    return data


# -- convert ---------------------------------------------------------------------------


def plan_text(the_plan: Plan) -> RenderableType:
    """The dry-run: every output variable with its source, operations and shapes, then
    what is dropped, then warnings."""
    into = f" into the target {the_plan.target}" if the_plan.target else ""
    parts: list[RenderableType] = [
        Text(f"plan for {the_plan.checkpoint} with {the_plan.map.path}{into}", style="bold")
    ]
    rows: list[list[Cell]] = []
    for v in the_plan.outputs:
        before = f"{shape_text(v.source_shape)} {v.source_dtype}" if v.source else "-"
        after = f"{shape_text(v.shape)} {v.dtype}"
        if v.from_target:
            how = "the target's initial value"
        elif v.init is not None:
            how = f"init ({v.init.fill.kind})"
        elif v.raw_copy:
            how = "copy" if not v.renamed_by else "rename (copy)"
        else:
            how = "; ".join(s.op.describe() for s in v.steps)
        rows.append(
            [
                (variable_path(v.name), ""),
                (variable_path(v.source or "-") if not v.from_target else "(target)", "dim"),
                (before, ""),
                (after, ""),
                (how, "cyan"),
            ]
        )
    parts += [Text(""), columns(["output", "from", "before", "after", "operations"], rows)]
    if the_plan.dropped:
        parts.append(Text(f"dropped ({len(the_plan.dropped)})", style="bold yellow"))
        parts += [Text(f"    {variable_path(d.source)}  ({d.rule})") for d in the_plan.dropped]
    parts += [Text(f"warning: {w}", style="yellow") for w in the_plan.warnings]
    return Group(*parts)


# -- suggest ---------------------------------------------------------------------------


def suggestion_dict(suggestion: Suggestion) -> dict[str, Any]:
    """``suggest --json``: the map's rules (as the YAML writes them), which of them a
    reviewer should look at and why, the notes, and what the map achieves."""
    predicted = suggestion.predicted
    return {
        "schema_version": SCHEMA_VERSION,
        "checkpoint": suggestion.checkpoint,
        "target": suggestion.target,
        "headline": None if predicted is None else predicted.headline,
        "ok": None if predicted is None else predicted.ok,
        "description": suggestion.description,
        "rules": [dict(rule.body) for rule in suggestion.rules],
        "uncertain": [
            {"rule": index, "reason": rule.uncertain}
            for index, rule in enumerate(suggestion.rules)
            if rule.uncertain
        ],
        "notes": list(suggestion.notes),
    }


def plain_text(renderable: RenderableType) -> str:
    """The text of our renderers' output without styling, for pipes and files: Rich's
    layout pass costs most of a second on a 10,000-row table and changes nothing there."""
    if isinstance(renderable, Group):
        return "".join(plain_text(part) for part in renderable.renderables)
    if isinstance(renderable, Text):
        return renderable.plain if renderable.plain.endswith("\n") else renderable.plain + "\n"
    raise TypeError(f"cannot render {type(renderable).__name__} as plain text")
