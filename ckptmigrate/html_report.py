"""The check report as one self-contained HTML page (``check --html report.html``).

A side-by-side table, target on the left and checkpoint on the right, grouped by role (as
the text report does, so optimizer slots and step counters don't drown the model) and
within a role by scope. Inline CSS only, no scripts and no external resources: the file
opens from disk, from a CI artefact or a mail attachment. Pure Python, no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from html import escape
from pathlib import Path

from .compare import Finding, Kind, Report
from .errors import OutputError
from .fs import staged_file
from .inventory import VariableSpec
from .names import OPTIMIZER_SLOT_MARKER, Role, classify, variable_path
from .render import shape_text, verdict_text

# Row backgrounds, one per kind; a kind's text label sits in every row as well, so nothing
# is said by colour alone. Public so tests can look for the exact colour in a screenshot.
KIND_COLOURS = {
    Kind.SHAPE_MISMATCH: "#ffb3b3",
    Kind.DTYPE_MISMATCH: "#f7b3e6",
    Kind.MISSING: "#ffd08a",
    Kind.UNUSED: "#fff1a8",
    Kind.MATCHED: "#ffffff",
}
# Short labels for the status column; Kind.label ("missing from the checkpoint") is the
# long form, shown in the summary.
_STATUS = {
    Kind.SHAPE_MISMATCH: "SHAPE MISMATCH",
    Kind.DTYPE_MISMATCH: "DTYPE MISMATCH",
    Kind.MISSING: "MISSING",
    Kind.UNUSED: "UNUSED",
    Kind.MATCHED: "matched",
}
_ROLE_TITLES = {
    Role.MODEL: "Model variables",
    Role.OPTIMIZER: "Optimizer slots",
    Role.STEP: "Step counters",
    Role.METADATA: "Checkpoint metadata",
}
TOP_LEVEL = "(top level)"
_COLUMNS = 7  # target name, shape, dtype | status | checkpoint name, shape, dtype

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #111; background: #fff; }
h1 { font-size: 1.35em; margin: 0 0 .3em; }
h2 { font-size: 1.1em; margin: 1.6em 0 .4em; }
.verdict { font-weight: bold; padding: .3em .6em; border-left: 6px solid; }
.verdict.fail { color: #9b0000; border-color: #9b0000; }
.verdict.ok { color: #1b5e20; border-color: #1b5e20; }
dl { display: grid; grid-template-columns: max-content auto; gap: .1em 1em; }
dt { font-weight: bold; } dd { margin: 0; }
.counts span { display: inline-block; margin: 0 .5em .3em 0; padding: .1em .5em;
  border: 1px solid #888; border-radius: 3px; }
code, td { font-family: ui-monospace, monospace; font-size: 13px; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
col.name { width: 28%; } col.shape { width: 9%; } col.dtype { width: 7%; }
col.status { width: 12%; }
th, td { text-align: left; padding: .15em .5em; vertical-align: top; overflow-wrap: anywhere; }
tr.finding td { border-top: 3px solid #fff; }
thead th { border-bottom: 2px solid #444; }
thead th.gap { border-bottom: none; }
th.side { text-align: center; border-bottom: 1px solid #444; }
td.status { font-weight: bold; white-space: nowrap; border-left: 1px solid #bbb;
  border-right: 1px solid #bbb; }
tr.scope th { background: #e8ecf2; font-family: ui-monospace, monospace; padding-top: .4em; }
tr.detail td { font-family: system-ui, sans-serif; font-size: 12.5px; padding-left: 2em; }
.absent { color: #777; }
label.filter { display: block; margin: 1em 0; }
tr.values-differ td { background: #ddd4ff; }
body:has(#problems-only:checked) tr.k-matched:not(.values-differ) { display: none; }
"""


def render_html(report: Report) -> str:
    """The report as a complete HTML document; every name and message is escaped."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>ckptmigrate check: {escape(report.headline)}</title>",
        f"<style>{_CSS}{_kind_css()}</style>",
        "</head><body>",
        *_header(report),
        '<label class="filter"><input type="checkbox" id="problems-only"> '
        "show only rows that need attention</label>",
    ]
    for role in Role:
        findings = [f for f in report.findings if f.role is role]
        if findings:
            parts += _role_section(role, findings)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def check_html_output(path: str | Path) -> Path:
    """Refuse, before any work, a report path that is a URL or an existing file that is not
    an HTML page (a typo must not replace a checkpoint's .index); an earlier report is
    replaced, as a CI job rerunning the check expects."""
    from .formats.remote import is_url

    if is_url(str(path)):
        raise OutputError(
            "the HTML report is written to a local file", path=str(path), hint="give a path."
        )
    out = Path(path)
    try:
        head = _head(out)
    except OSError as e:
        raise OutputError.from_os_error(e, out) from e
    if head is not None and not head.startswith((b"<!doctype html", b"<html")):
        raise OutputError(
            "exists and is not an HTML page; refusing to replace it",
            path=out,
            hint="choose another file name for the report.",
        )
    return out


def _head(path: Path) -> bytes | None:
    """The first bytes of an existing file (lower-cased), or None if there is none."""
    if not path.is_file():
        return None
    with path.open("rb") as f:
        return f.read(64).lstrip().lower()


def write_html(report: Report, path: str | Path) -> Path:
    """Write :func:`render_html` to ``path`` atomically (replacing an earlier report)."""
    out = check_html_output(path)
    if out.is_dir():
        raise OutputError("is a directory; give a file name for the HTML report", path=out)
    if not out.parent.is_dir():
        raise OutputError("the directory for the HTML report does not exist", path=out)
    try:
        with staged_file(out, overwrite=True) as staged:  # a reloading browser never sees half
            staged.write_bytes(render_html(report).encode("utf-8"))
    except OSError as e:
        raise OutputError.from_os_error(e, out) from e
    return out


def scope_of(finding: Finding) -> str:
    """The scope a finding is listed under: its name's leading path components.

    An optimizer slot goes with the variable it belongs to (``dnn/hiddenlayer_0/kernel/
    Adagrad`` under ``dnn/hiddenlayer_0``), so a layer's slots stay together in their
    own section rather than each forming a one-row scope.
    """
    path = variable_path(finding.name)
    if OPTIMIZER_SLOT_MARKER in path:
        path = path.split(OPTIMIZER_SLOT_MARKER, 1)[0]
    elif finding.role is Role.OPTIMIZER:
        owner = path.rpartition("/")[0]
        if "/" in owner and classify(owner) is Role.MODEL:  # a TF1 slot: owner/SlotName
            path = owner
    return path.rpartition("/")[0] or TOP_LEVEL


# -- pieces ----------------------------------------------------------------------------


def _kind_css() -> str:
    rules = [
        f"tr.k-{kind.value} td {{ background: {colour}; }}"
        for kind, colour in KIND_COLOURS.items()
        if kind is not Kind.MATCHED  # matched rows stay plain
    ]
    rules += [
        f".counts span.k-{kind.value} {{ background: {colour}; }}"
        for kind, colour in KIND_COLOURS.items()
    ]
    return "\n" + "\n".join(rules) + "\n"


def _header(report: Report) -> Iterator[str]:
    verdict = verdict_text(report).plain
    yield f"<h1>{escape(report.headline)}</h1>"
    yield f'<p class="verdict {"ok" if report.ok else "fail"}">{escape(verdict)}</p>'
    yield "<dl>"
    yield _pair("checkpoint", f"{report.checkpoint.source} ({report.checkpoint.scheme.label})")
    yield _pair(
        "target",
        f"{report.target.source} ({report.target.kind}, {report.target.scheme.label})",
    )
    yield _pair("compared", report.matching)
    for note in report.notes:
        yield _pair("note", note)
    yield "</dl>"
    # Counts only for kinds present: a clean report shows no mismatch colour anywhere.
    chips = [
        f'<span class="k-{kind.value}">{report.count(kind)} {escape(kind.label)}</span>'
        for kind in Kind
        if report.count(kind)
    ]
    yield f'<p class="counts">{"".join(chips)}</p>'


def _pair(term: str, text: str) -> str:
    return f"<dt>{escape(term)}</dt><dd><code>{escape(text)}</code></dd>"


def _role_section(role: Role, findings: list[Finding]) -> Iterator[str]:
    yield f'<section class="role-{role.value}">'
    yield f"<h2>{_ROLE_TITLES[role]} ({_counted(findings)})</h2>"
    side = '<col class="name"><col class="shape"><col class="dtype">'
    # The same fixed column widths in every section, so the tables line up.
    yield f'<table><colgroup>{side}<col class="status">{side}</colgroup>'
    yield (
        '<thead><tr><th class="side" colspan="3">target</th><th class="gap"></th>'
        '<th class="side" colspan="3">checkpoint</th></tr>'
        "<tr><th>name</th><th>shape</th><th>dtype</th><th>status</th>"
        "<th>name</th><th>shape</th><th>dtype</th></tr></thead>"
    )
    for scope, members in _by_scope(findings):
        yield '<tbody class="scope-group">'
        yield (
            f'<tr class="scope"><th colspan="{_COLUMNS}">{escape(scope)} '
            f"({_counted(members)})</th></tr>"
        )
        for finding in members:
            yield from _rows(finding, detailed=role is Role.MODEL)
        yield "</tbody>"
    yield "</table></section>"


def _counted(findings: list[Finding]) -> str:
    problems = sum(1 for f in findings if f.kind is not Kind.MATCHED)
    return f"{len(findings)}, {problems} need attention"


def _by_scope(findings: Iterable[Finding]) -> list[tuple[str, list[Finding]]]:
    groups: dict[str, list[Finding]] = {}
    for finding in findings:
        groups.setdefault(scope_of(finding), []).append(finding)
    # Alphabetical scopes and names: the same layout as the model's own listing, so the
    # two sides can be read against each other; colour marks what needs attention.
    return [
        (scope, sorted(groups[scope], key=lambda f: f.name))
        for scope in sorted(groups, key=lambda s: (s == TOP_LEVEL, s))
    ]


def _rows(finding: Finding, *, detailed: bool) -> Iterator[str]:
    """The side-by-side row, then (model variables, as in the text report) a row with
    TensorFlow's error and the hint; slots and counters get the hint only."""
    classes = f"k-{finding.kind.value}"
    differ = finding.values is not None and not finding.values.identical
    if differ:
        classes += " values-differ"
    status = _STATUS[finding.kind] + (" (values differ)" if differ else "")
    yield (
        f'<tr class="finding {classes}">{_side(finding.target)}'
        f'<td class="status">{escape(status)}</td>{_side(finding.checkpoint)}</tr>'
    )
    details = []
    if detailed and finding.tensorflow_error:
        details.append(f"<b>TensorFlow:</b> {escape(finding.tensorflow_error)}")
    if finding.hint:
        details.append(f"<b>hint:</b> {escape(finding.hint)}")
    if finding.values is not None:
        details.append(f"<b>values:</b> {escape(_values_text(finding))}")
    if details:
        yield (
            f'<tr class="detail {classes}"><td colspan="{_COLUMNS}">'
            + "<br>".join(details)
            + "</td></tr>"
        )


def _side(spec: VariableSpec | None) -> str:
    if spec is None:
        return '<td class="absent">(none)</td><td></td><td></td>'
    name = escape(variable_path(spec.name))
    if spec.original_name and spec.original_name != spec.name:
        name += f'<br><span class="absent">{escape(spec.original_name)}</span>'
    return f"<td>{name}</td><td>{escape(shape_text(spec.shape))}</td><td>{escape(spec.dtype)}</td>"


def _values_text(finding: Finding) -> str:
    values = finding.values
    assert values is not None
    if values.identical:
        return "identical"
    if values.max_abs_diff is None:
        return "differ"
    return f"differ: max |diff| {values.max_abs_diff:.6g}, rms {values.rms_diff:.6g}"
