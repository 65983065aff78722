"""Turn reports into styled text (:mod:`.styled`) or JSON. Nothing here prints or exits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .compare import FAILING, SCHEMA_VERSION, Finding, Kind, Report, ValueDiff
from .errors import redact_credentials
from .inspection import InspectReport
from .inventory import VariableSpec
from .names import VARIABLE_SUFFIX, Role, variable_path
from .styled import Column, Lines, Styled, StyledText, TextTable

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


def inspect_table(report: InspectReport) -> Styled:
    # User-supplied strings go in as plain Text, never as markup: "w[0]" must survive.
    show_original = any(row.original_name for row in report.rows)
    rows = report.rows
    # Checkpoints share a handful of shapes and sizes: each is formatted once.
    shape_texts = {shape: shape_text(shape) for shape in {row.shape for row in rows}}
    size_texts = {n: human_bytes(n) for n in {row.nbytes for row in rows}}
    shapes = [
        shape_texts[row.shape] + (f" ({len(row.slices)} slices)" if row.slices else "")
        for row in rows
    ]
    table_columns = [Column("name", [variable_path(row.key) for row in rows])]
    if show_original:
        table_columns.append(
            Column("original name", [row.original_name or "" for row in rows], "cyan")
        )
    table_columns += [
        Column("dtype", [row.dtype for row in rows]),
        Column("shape", shapes),
        Column("size", [size_texts[row.nbytes] for row in rows], right=True),
        Column(
            "role",
            [row.role.label for row in rows],
            [_ROLE_STYLE[row.role] for row in rows],
        ),
    ]
    table = TextTable(table_columns)

    totals = [*report.totals.items(), (None, report.total)]
    summary = TextTable(
        [
            Column(
                "role",
                [role.label if role else "total" for role, _ in totals],
                ["" if role else "bold" for role, _ in totals],
            ),
            Column("variables", [str(t.variables) for _, t in totals], right=True),
            Column("parameters", [f"{t.parameters:,}" for _, t in totals], right=True),
            Column("size", [human_bytes(t.nbytes) for _, t in totals], right=True),
        ]
    )

    heading = StyledText()
    heading.append(report.prefix, style="bold")
    if report.format in ("v1", "v2"):
        kind = "object-based (TF2)" if report.object_based else "name-based"
        heading.append(
            f"  {report.format.upper()} checkpoint, {kind}, "
            f"{report.num_shards} shard{'s' if report.num_shards != 1 else ''}"
        )
    else:
        heading.append(f"  {_FOREIGN_FORMATS.get(report.format, report.format)}")
    parts: list[Styled] = [heading]
    if any(row.key.endswith(VARIABLE_SUFFIX) for row in report.rows):
        parts.append(
            StyledText(f"names are checkpoint keys without {VARIABLE_SUFFIX}", style="dim")
        )
    parts += [StyledText(f"note: {note}", style="dim") for note in report.notes]
    if report.filter is not None:
        parts.append(StyledText(f"filter: {report.filter}", style="dim"))
    parts += [StyledText(""), table, StyledText(""), summary]
    if report.verified_bytes is not None:
        # safetensors and HDF5 weight files carry no checksums: all there is to verify is
        # that every tensor reads in full.
        what = (
            "matches its CRC32C"
            if report.format in ("v1", "v2")
            else "reads in full (the format has no checksums)"
        )
        parts.append(
            StyledText(
                f"verified: every tensor in the checkpoint {what} "
                f"({human_bytes(report.verified_bytes)} read)",
                style="green",
            )
        )
    return Lines(*parts)


# What inspect's heading calls a file that is not a TensorFlow checkpoint.
_FOREIGN_FORMATS = {
    "safetensors": "safetensors file",
    "keras_h5": "Keras weights (HDF5)",
    "torch": "PyTorch state_dict (torch.save)",
}

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


def _finding_line(f: Finding) -> StyledText:
    line = StyledText("    ")
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


def check_text(report: Report, *, show_matched: bool = False) -> Styled:
    """The check report: headline, then findings grouped by kind and role, then a verdict.
    Model variables carry TensorFlow's error and a hint; slots and counters stay compact."""
    parts: list[Styled] = []
    head = StyledText()
    head.append(report.headline, style="bold")
    parts.append(head)
    parts.append(StyledText(f"checkpoint: {report.checkpoint.source} ({report.checkpoint.naming})"))
    parts.append(
        StyledText(
            f"target:     {report.target.source} ({report.target.kind}, {report.target.naming})"
        )
    )
    parts.append(StyledText(f"compared:   {report.matching}"))
    parts += [StyledText(f"note: {note}", style="dim") for note in report.notes]

    differing = [f for f in report.findings if f.values is not None and not f.values.identical]
    for kind in (Kind.SHAPE_MISMATCH, Kind.DTYPE_MISMATCH, Kind.MISSING, Kind.UNUSED, Kind.MATCHED):
        group = [f for f in report.findings if f.kind is kind]
        if not group:
            continue
        if kind is Kind.MATCHED and not show_matched:
            if differing:
                parts.append(StyledText(""))
                parts.append(
                    StyledText(f"matched, values differ ({len(differing)})", style="yellow")
                )
                parts += [_finding_line(f) for f in differing]
            continue
        suffix = " (warning)" if kind is Kind.UNUSED and not report.options.strict else ""
        parts.append(StyledText(""))
        parts.append(
            StyledText(f"{kind.label} ({len(group)}){suffix}", style=f"bold {_KIND_STYLE[kind]}")
        )
        for role in Role:
            members = [f for f in group if f.role is role]
            if not members:
                continue
            parts.append(StyledText(f"  {_GROUP_LABELS[role]} ({len(members)})"))
            for f in members:
                parts.append(_finding_line(f))
                if role is Role.MODEL and f.kind is not Kind.MATCHED:
                    if f.tensorflow_error:
                        parts.append(
                            StyledText(f"      TensorFlow: {f.tensorflow_error}", style="dim")
                        )
                    if f.hint:
                        parts.append(StyledText(f"      hint: {f.hint}", style="cyan"))
    parts.append(StyledText(""))
    parts.append(verdict_text(report))
    return Lines(*parts)


def verdict_text(report: Report) -> StyledText:
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
        return StyledText(
            f"FAIL: a strict restore would not succeed ({', '.join(problems)}){also}",
            style="bold red",
        )
    if differ:
        return StyledText(
            f"FAIL: the values are not identical ({differ_text}, --values); a strict restore "
            "would succeed",
            style="bold red",
        )
    extra = f"; {counts[Kind.UNUSED]} checkpoint entries unused" if counts[Kind.UNUSED] else ""
    what = (
        "the same shape, dtype and values" if report.options.values else "the same shape and dtype"
    )
    return StyledText(f"OK: every target variable restores with {what}{extra}", style="bold green")


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


def plan_text(the_plan: Plan) -> Styled:
    """The dry-run: every output variable with its source, operations and shapes, then
    what is dropped, then warnings."""
    into = f" into the target {the_plan.target}" if the_plan.target else ""
    parts: list[Styled] = [
        StyledText(f"plan for {the_plan.checkpoint} with {the_plan.map.path}{into}", style="bold")
    ]
    operations = []
    for v in the_plan.outputs:
        if v.from_target:
            operations.append("the target's initial value")
        elif v.init is not None:
            operations.append(f"init ({v.init.fill.kind})")
        elif v.raw_copy:
            operations.append("copy" if not v.renamed_by else "rename (copy)")
        else:
            operations.append("; ".join(s.op.describe() for s in v.steps))
    outputs = the_plan.outputs
    table = TextTable(
        [
            Column("output", [variable_path(v.name) for v in outputs]),
            Column(
                "from",
                [
                    variable_path(v.source or "-") if not v.from_target else "(target)"
                    for v in outputs
                ],
                "dim",
            ),
            Column(
                "before",
                [
                    f"{shape_text(v.source_shape)} {v.source_dtype}" if v.source else "-"
                    for v in outputs
                ],
            ),
            Column("after", [f"{shape_text(v.shape)} {v.dtype}" for v in outputs]),
            Column("operations", operations, "cyan"),
        ]
    )
    parts += [StyledText(""), table]
    if the_plan.dropped:
        parts.append(StyledText(f"dropped ({len(the_plan.dropped)})", style="bold yellow"))
        parts += [
            StyledText(f"    {variable_path(d.source)}  ({d.rule})") for d in the_plan.dropped
        ]
    parts += [StyledText(f"warning: {w}", style="yellow") for w in the_plan.warnings]
    return Lines(*parts)


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
