"""The check report as one self-contained HTML page (``check --html report.html``,
``ckptmigrate report saved.json -o page.html``).

A side-by-side table, target on the left and checkpoint on the right, grouped by role (as
the text report does, so optimizer slots and step counters don't drown the model) and
within a role by scope, each scope a collapsible ``<details>``, scopes and names in natural
order (``layer_2`` before ``layer_10``). A missing variable is followed by the unused
checkpoint variable its hint suggests; a hint or TensorFlow error shared by several
variables of a role is shown once above its table. A search box and one checkbox per kind
of finding filter the rows (a small inline script; without it every row shows).

The page is built from the JSON object ``check --json`` prints (``render.check_dict``), so a
saved copy renders the same page. Inline CSS and script only, no external resources: the
file opens from disk, from a CI artefact or a mail attachment. Every user string (names,
paths, notes) is escaped. Deterministic but for the time it was written. Pure Python, no
TensorFlow.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, NoReturn

from .compare import SCHEMA_VERSION, Finding, Kind, Report, ValueDiff
from .errors import CkptMigrateError, OutputError
from .fs import staged_file
from .inventory import Scheme, VariableSpec
from .names import OPTIMIZER_SLOT_MARKER, Role, classify, variable_path
from .render import check_dict, shape_text

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
# long form, shown with the filters.
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
# Above this many findings, scopes holding only matched rows start collapsed: the page
# opens on what needs attention and lays out a fraction of the rows.
OPEN_ALL_UP_TO = 1000
_FILTER_ORDER = (Kind.SHAPE_MISMATCH, Kind.DTYPE_MISMATCH, Kind.MISSING, Kind.UNUSED, Kind.MATCHED)
_FOLD_AT = 3  # a hint or error text shared by this many variables of a role is folded

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5em 1.5em; color: #111;
  background: #fff; }
h1 { font-size: 1.35em; margin: 1em 0 .3em; }
h2 { font-size: 1.1em; margin: 1.6em 0 .4em; }
[hidden] { display: none !important; }
.verdict { font-weight: bold; padding: .3em .6em; border-left: 6px solid; }
.verdict.fail { color: #9b0000; border-color: #9b0000; }
.verdict.ok { color: #1b5e20; border-color: #1b5e20; }
dl { display: grid; grid-template-columns: max-content auto; gap: .1em 1em; }
dt { font-weight: bold; } dd { margin: 0; }
#controls { position: sticky; top: 0; z-index: 1; background: #fff; padding: .5em 0;
  border-bottom: 1px solid #bbb; display: flex; flex-wrap: wrap; gap: .4em .6em;
  align-items: center; }
#search { font: inherit; width: 24em; padding: .15em .4em; }
#controls label { padding: .1em .5em; border: 1px solid #888; border-radius: 3px;
  white-space: nowrap; }
#controls button { font: inherit; }
#shown { color: #555; }
code, td { font-family: ui-monospace, monospace; font-size: 13px; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; }
col.name { width: 28%; } col.shape { width: 9%; } col.dtype { width: 7%; }
col.status { width: 12%; }
th, td { text-align: left; padding: .15em .5em; vertical-align: top; overflow-wrap: anywhere; }
tr.finding td { border-top: 3px solid #fff; }
table.head th { border-bottom: 2px solid #444; }
table.head th.gap { border-bottom: none; }
table.head th.side { text-align: center; border-bottom: 1px solid #444; }
td.status { font-weight: bold; white-space: nowrap; border-left: 1px solid #bbb;
  border-right: 1px solid #bbb; }
/* Scopes off screen are laid out when scrolled to: a page of thousands of rows opens fast. */
details.scope { content-visibility: auto; contain-intrinsic-size: auto 1.9em; }
details.scope > summary { background: #e8ecf2; font-family: ui-monospace, monospace;
  font-weight: bold; padding: .25em .5em; margin-top: 3px; cursor: pointer; }
tr.detail td { font-family: system-ui, sans-serif; font-size: 12.5px; padding-left: 2em; }
.absent { color: #777; }
.pair-note { display: block; font-weight: normal; font-size: 11.5px; color: #444;
  white-space: normal; }
tbody.pair td.status { box-shadow: inset 4px 0 #5a5a5a; }
.ref { font-family: ui-monospace, monospace; font-weight: bold; }
.shared { font-size: 12.5px; margin: .3em 0 .6em; }
.shared li { margin: .15em 0; }
tr.values-differ td { background: #ddd4ff; }
"""

# Filters rows as the search box is typed into and the kind boxes are ticked. Reads names
# with textContent, writes only the hidden and open properties and a count: no user string
# is ever parsed as HTML.
_SCRIPT = """
(function () {
  "use strict";
  var search = document.getElementById("search");
  var shown = document.getElementById("shown");
  var boxes = [].slice.call(document.querySelectorAll("#controls input[data-kind]"));
  var rows = [];
  var scopes = [].slice.call(document.querySelectorAll("details.scope")).map(function (d) {
    var members = [].slice.call(d.querySelectorAll("tbody.f")).map(function (row) {
      rows.push(row);
      return rows.length - 1;
    });
    return { details: d, rows: members };
  });
  var sections = [].slice.call(document.querySelectorAll("section.role")).map(function (s) {
    return { section: s, scopes: [].slice.call(s.querySelectorAll("details.scope")) };
  });
  var texts = null;
  var opened = null;

  function textOf(row) {
    var parts = [row.getAttribute("data-also") || ""];
    var cells = row.querySelectorAll("td.n");
    for (var i = 0; i < cells.length; i++) parts.push(cells[i].textContent);
    return parts.join("\\n").toLowerCase();
  }

  function apply() {
    var terms = search.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var on = {};
    boxes.forEach(function (b) { on[b.getAttribute("data-kind")] = b.checked; });
    if (terms.length && texts === null) texts = rows.map(textOf);
    if (terms.length && opened === null) {
      opened = scopes.map(function (s) { return s.details.open; });
    }
    var total = 0;
    scopes.forEach(function (scope) {
      var visible = 0;
      scope.rows.forEach(function (i) {
        var show = on[rows[i].getAttribute("data-k")] !== false;
        for (var t = 0; show && t < terms.length; t++) show = texts[i].indexOf(terms[t]) >= 0;
        if (rows[i].hidden === show) rows[i].hidden = !show;
        if (show) visible++;
      });
      if (scope.details.hidden === (visible > 0)) scope.details.hidden = visible === 0;
      if (terms.length && visible && !scope.details.open) scope.details.open = true;
      total += visible;
    });
    if (!terms.length && opened !== null) {
      scopes.forEach(function (s, j) { s.details.open = opened[j]; });
      opened = null;
    }
    sections.forEach(function (s) {
      s.section.hidden = s.scopes.every(function (d) { return d.hidden; });
    });
    shown.textContent = total + " of " + rows.length + " rows match";
  }

  function openAll(open) {
    scopes.forEach(function (s) { s.details.open = open; });
  }

  search.addEventListener("input", apply);
  boxes.forEach(function (b) { b.addEventListener("change", apply); });
  document.getElementById("expand").addEventListener("click", function () { openAll(true); });
  document.getElementById("collapse").addEventListener("click", function () { openAll(false); });
  if (search.value || boxes.some(function (b) { return !b.checked; })) apply();
})();
"""


def render_html(
    report: Report,
    *,
    command: Sequence[str] | None = None,
    generated_at: datetime | None = None,
) -> str:
    """The report as a complete HTML document; every name and message is escaped.

    Args:
        report: what :func:`ckptmigrate.check` returned.
        command: the command line that made the report, shown on the page (and recorded
            as ``produced_by.command`` in the JSON), or None.
        generated_at: the time shown on the page (default: now); the only part of the
            page that is not determined by the report.

    Returns:
        The page, as text.
    """
    return render_saved_report(
        check_dict(report, command=command), generated_at=generated_at, source="the report"
    )


def render_saved_report(
    data: Mapping[str, Any],
    *,
    command: Sequence[str] | None = None,
    generated_at: datetime | None = None,
    source: str = "the JSON",
) -> str:
    """The page for a check report given as its JSON object (``check --json``, or
    :func:`ckptmigrate.render.check_dict`).

    Args:
        data: the parsed JSON object.
        command: the command line writing this page when it is not the check's own (the
            ``report`` command), shown beside the check's.
        generated_at: the time shown on the page (default: now).
        source: where ``data`` came from, for error messages.

    Raises:
        CkptMigrateError: ``data`` is not a check report this version can read.
    """
    page = _Page.from_dict(data, source)
    when = generated_at or datetime.now(timezone.utc)
    return _document(page, tuple(command) if command is not None else None, when)


def load_saved_report(path: str | Path) -> dict[str, Any]:
    """Read a saved ``check --json`` output, refusing anything the page could not show.

    Raises:
        CkptMigrateError: the file is missing, not JSON, or not a check report of a schema
            version this ckptmigrate reads.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CkptMigrateError("no such file", path=source) from None
    except IsADirectoryError:
        raise CkptMigrateError(
            "is a directory; give the file a check's JSON output was saved to", path=source
        ) from None
    except UnicodeDecodeError:
        _Reader(source).fail("the file", "UTF-8 text")
    except OSError as e:
        raise CkptMigrateError(f"cannot read: {e.strerror or e}", path=source) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        _Reader(source).fail(f"line {e.lineno}, column {e.colno}", f"valid JSON ({e.msg})")
    if not isinstance(data, dict):
        _Reader(source).fail("the top level", "a JSON object")
    _Page.from_dict(data, source)  # every field the page reads, checked now
    return data


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


def write_html(
    report: Report,
    path: str | Path,
    *,
    command: Sequence[str] | None = None,
    generated_at: datetime | None = None,
) -> Path:
    """Write :func:`render_html` to ``path`` atomically (replacing an earlier report)."""
    out = check_html_output(path)
    return _publish(render_html(report, command=command, generated_at=generated_at), out)


def write_saved_report(
    data: Mapping[str, Any],
    path: str | Path,
    *,
    command: Sequence[str] | None = None,
    generated_at: datetime | None = None,
    source: str = "the JSON",
) -> Path:
    """Write :func:`render_saved_report` to ``path`` atomically (replacing an earlier
    report, never another kind of file)."""
    out = check_html_output(path)
    page = render_saved_report(data, command=command, generated_at=generated_at, source=source)
    return _publish(page, out)


def _publish(page: str, out: Path) -> Path:
    if out.is_dir():
        raise OutputError("is a directory; give a file name for the HTML report", path=out)
    if not out.parent.is_dir():
        raise OutputError("the directory for the HTML report does not exist", path=out)
    try:
        with staged_file(out, overwrite=True) as staged:  # a reloading browser never sees half
            staged.write_bytes(page.encode("utf-8"))
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


_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key putting ``layer_2`` before ``layer_10``: digit runs compare as numbers
    (``layer_02`` and ``layer_2`` then by their text, so the order is total)."""
    parts = _DIGITS.split(text)
    return (tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), text)


# -- the report, read back from its JSON -----------------------------------------------


class _Reader:
    """Typed access to the JSON object, every failure one message naming the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, expected: str) -> NoReturn:
        raise CkptMigrateError(
            f"{where} is not {expected}: not a check report this version of ckptmigrate "
            f"reads (a JSON object of schema_version {SCHEMA_VERSION})",
            path=self.source,
            hint="give the JSON output of [[check_command]] saved to a file (from Python: "
            "json.dumps(ckptmigrate.render.check_dict(report))).",
        )

    def obj(self, parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
        value = parent.get(key)
        if not isinstance(value, dict):
            self.fail(f"'{where}{key}'", "an object")
        return value

    def text(self, parent: Mapping[str, Any], key: str, where: str) -> str:
        value = parent.get(key)
        if not isinstance(value, str):
            self.fail(f"'{where}{key}'", "a string")
        return value

    def optional_text(self, parent: Mapping[str, Any], key: str, where: str) -> str | None:
        value = parent.get(key)
        if value is not None and not isinstance(value, str):
            self.fail(f"'{where}{key}'", "a string or null")
        return value

    def items(self, parent: Mapping[str, Any], key: str, where: str) -> list[Any]:
        value = parent.get(key)
        if not isinstance(value, list):
            self.fail(f"'{where}{key}'", "a list")
        return value

    def texts(self, parent: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        values = self.items(parent, key, where)
        if not all(isinstance(v, str) for v in values):
            self.fail(f"'{where}{key}'", "a list of strings")
        return tuple(values)

    def number(self, parent: Mapping[str, Any], key: str, where: str) -> float | None:
        value = parent.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            self.fail(f"'{where}{key}'", "a number or null")
        return value

    def flag(self, parent: Mapping[str, Any], key: str, where: str) -> bool:
        value = parent.get(key)
        if not isinstance(value, bool):
            self.fail(f"'{where}{key}'", "true or false")
        return value

    def spec(
        self, parent: Mapping[str, Any], key: str, where: str, role: Role
    ) -> VariableSpec | None:
        if parent.get(key) is None:
            return None
        side = self.obj(parent, key, where)
        where = f"{where}{key}."
        shape = self.items(side, "shape", where)
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            self.fail(f"'{where}shape'", "a list of integers")
        return VariableSpec(
            self.text(side, "name", where),
            tuple(shape),
            self.text(side, "dtype", where),
            role,
            self.optional_text(side, "original_name", where),
        )

    def finding(self, item: Any, where: str) -> Finding:
        if not isinstance(item, dict):
            self.fail(f"'{where}'", "an object")
        where += "."
        kind_name = self.text(item, "kind", where)
        role_name = self.text(item, "role", where)
        try:
            kind, role = Kind(kind_name), Role(role_name)
        except ValueError:
            self.fail(
                f"'{where}kind' or '{where}role' ({kind_name!r}, {role_name!r})",
                "a kind and role this version knows",
            )
        values = None
        if item.get("values") is not None:
            diff = self.obj(item, "values", where)
            values = ValueDiff(
                self.flag(diff, "identical", f"{where}values."),
                self.number(diff, "max_abs_diff", f"{where}values."),
                self.number(diff, "rms_diff", f"{where}values."),
            )
        return Finding(
            kind,
            self.text(item, "name", where),
            role,
            self.optional_text(item, "checkpoint_name", where),
            self.spec(item, "target", where, role),
            self.spec(item, "checkpoint", where, role),
            self.optional_text(item, "tensorflow_error", where),
            self.optional_text(item, "hint", where),
            values,
            # absent from JSON written before it existed: nothing is paired then
            self.optional_text(item, "suggested", where),
        )


def _naming(read: _Reader, side: Mapping[str, Any], where: str) -> str:
    """How a side names its variables: as the report says, or (a report saved by a version
    without "naming") from its scheme."""
    naming = read.optional_text(side, "naming", where)
    if naming is not None:
        return naming
    value = read.text(side, "scheme", where)
    try:
        return Scheme(value).label
    except ValueError:  # a scheme a later version added: its name says enough
        return value


@dataclass(frozen=True)
class _Page:
    headline: str
    ok: bool
    verdict: str
    checkpoint: str
    target: str
    compared: str
    notes: tuple[str, ...]
    findings: tuple[Finding, ...]
    version: str | None
    command: tuple[str, ...] | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> _Page:
        read = _Reader(source)
        if "variables" in data and "findings" not in data:
            read.fail("the object", "a check report (it is inspect's JSON)")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            read.fail("'schema_version'", f"{SCHEMA_VERSION} (it is {version!r})")
        ckpt = read.obj(data, "checkpoint", "")
        target = read.obj(data, "target", "")
        summary = read.obj(data, "summary", "")
        ok = read.flag(data, "ok", "")
        findings = tuple(
            read.finding(item, f"findings[{i}]")
            for i, item in enumerate(read.items(data, "findings", ""))
        )
        produced = data.get("produced_by")
        command = None
        version_text = None
        if produced is not None:
            produced = read.obj(data, "produced_by", "")
            version_text = read.optional_text(produced, "version", "produced_by.")
            if produced.get("command") is not None:
                command = read.texts(produced, "command", "produced_by.")
        verdict = read.optional_text(summary, "verdict", "summary.")
        if verdict is None:  # written before the verdict line was in the JSON
            verdict = "OK" if ok else "FAIL"
        return cls(
            headline=read.text(summary, "headline", "summary."),
            ok=ok,
            verdict=verdict,
            checkpoint=(
                f"{read.text(ckpt, 'path', 'checkpoint.')} ({_naming(read, ckpt, 'checkpoint.')})"
            ),
            target=(
                f"{read.text(target, 'path', 'target.')} "
                f"({read.text(target, 'kind', 'target.')}, "
                f"{_naming(read, target, 'target.')})"
            ),
            compared=read.text(data, "scheme", ""),
            notes=read.texts(data, "notes", ""),
            findings=findings,
            version=version_text,
            command=command,
        )

    def count(self, kind: Kind) -> int:
        return sum(1 for f in self.findings if f.kind is kind)


# -- the document ----------------------------------------------------------------------


def _document(page: _Page, command: tuple[str, ...] | None, when: datetime) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>ckptmigrate check: {escape(page.headline)}</title>",
        f"<style>{_CSS}{_kind_css()}</style>",
        "</head><body>",
        *_header(page, command, when),
        *_controls(page),
    ]
    open_all = len(page.findings) <= OPEN_ALL_UP_TO
    for role in Role:
        findings = [f for f in page.findings if f.role is role]
        if findings:
            parts += _role_section(role, findings, open_all=open_all)
    parts.append(f"<script>{_SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _kind_css() -> str:
    rules = [
        f"tr.k-{kind.value} td {{ background: {colour}; }}"
        for kind, colour in KIND_COLOURS.items()
        if kind is not Kind.MATCHED  # matched rows stay plain
    ]
    rules += [
        f"#controls label.k-{kind.value} {{ background: {colour}; }}"
        for kind, colour in KIND_COLOURS.items()
    ]
    return "\n" + "\n".join(rules) + "\n"


def _header(page: _Page, command: tuple[str, ...] | None, when: datetime) -> Iterator[str]:
    yield f"<h1>{escape(page.headline)}</h1>"
    yield f'<p class="verdict {"ok" if page.ok else "fail"}">{escape(page.verdict)}</p>'
    yield "<dl>"
    yield _pair("checkpoint", page.checkpoint)
    yield _pair("target", page.target)
    yield _pair("compared", page.compared)
    for note in page.notes:
        yield _pair("note", note)
    checked_by = f"ckptmigrate {page.version}" if page.version else "ckptmigrate"
    if page.command:
        checked_by += f": {shlex.join(page.command)}"
    yield _pair("checked by", checked_by)
    if command:
        yield _pair("page by", shlex.join(command))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc).replace(microsecond=0)
    stamp = when.strftime("%Y-%m-%d %H:%M:%S UTC")
    yield f'<dt>written</dt><dd><time datetime="{escape(when.isoformat())}">{stamp}</time></dd>'
    yield "</dl>"


def _pair(term: str, text: str) -> str:
    return f"<dt>{escape(term)}</dt><dd><code>{escape(text)}</code></dd>"


def _controls(page: _Page) -> Iterator[str]:
    yield '<div id="controls">'
    yield (
        '<input type="search" id="search" placeholder="filter by name" '
        'aria-label="filter rows by variable name" autocomplete="off">'
    )
    # One box per kind present: a clean report shows no mismatch colour anywhere.
    for kind in _FILTER_ORDER:
        n = page.count(kind)
        if n:
            yield (
                f'<label class="k-{kind.value}"><input type="checkbox" '
                f'data-kind="{kind.value}" checked> {n:,} {escape(kind.label)}</label>'
            )
    yield '<button type="button" id="expand">expand all</button>'
    yield '<button type="button" id="collapse">collapse all</button>'
    n = len(page.findings)
    yield f'<output id="shown">{n} of {n} rows match</output>'
    yield "</div>"


def _counted(findings: Sequence[Finding]) -> str:
    problems = sum(1 for f in findings if f.kind is not Kind.MATCHED)
    return f"{len(findings)}, {problems} need attention"


_COLGROUP = (
    '<colgroup><col class="name"><col class="shape"><col class="dtype"><col class="status">'
    '<col class="name"><col class="shape"><col class="dtype"></colgroup>'
)


class _Shared:
    """Texts several findings of a role carry (the same hint, the same TensorFlow error):
    each is listed once, numbered, and the rows name it."""

    def __init__(self, prefix: str, texts: Iterable[str]) -> None:
        counts = Counter(texts)
        shared = sorted((t for t, n in counts.items() if n >= _FOLD_AT), key=lambda t: -counts[t])
        self.label = {t: f"{prefix}{i}" for i, t in enumerate(shared, 1)}
        self.counts = counts

    def cell(self, title: str, noun: str, text: str) -> str:
        label = self.label.get(text)
        if label is None:
            return f"<b>{title}:</b> {escape(text)}"
        return (
            f'<b>{title}:</b> <span class="ref">{label}</span> (same {noun} for '
            f"{self.counts[text]:,} variables, shown above the table)"
        )

    def listing(self, noun: str) -> Iterator[str]:
        for text, label in self.label.items():
            yield (
                f'<li><span class="ref">{label}</span> same {noun} for '
                f"{self.counts[text]:,} variables: {escape(text)}</li>"
            )


def _role_section(role: Role, findings: list[Finding], *, open_all: bool) -> Iterator[str]:
    detailed = role is Role.MODEL
    partners = _partners(findings)
    paired = {p.name for p in partners.values()}
    listed = [f for f in findings if not (f.kind is Kind.UNUSED and f.name in paired)]
    hints = _Shared("H", (f.hint for f in findings if f.hint))
    errors = _Shared("E", (f.tensorflow_error for f in findings if detailed and f.tensorflow_error))
    yield f'<section class="role role-{role.value}">'
    yield f"<h2>{_ROLE_TITLES[role]} ({_counted(findings)})</h2>"
    shared = [*errors.listing("TensorFlow error"), *hints.listing("hint")]
    if shared:
        yield '<ul class="shared">' + "".join(shared) + "</ul>"
    # One header table; every scope's table has the same fixed column widths, so they
    # line up under it.
    yield (
        f'<table class="head">{_COLGROUP}<thead><tr><th class="side" colspan="3">target</th>'
        '<th class="gap"></th><th class="side" colspan="3">checkpoint</th></tr>'
        "<tr><th>name</th><th>shape</th><th>dtype</th><th>status</th>"
        "<th>name</th><th>shape</th><th>dtype</th></tr></thead></table>"
    )
    for scope, members in _by_scope(listed):
        everything = [m for f in members for m in (f, partners.get(f.name)) if m is not None]
        problems = any(f.kind is not Kind.MATCHED for f in everything)
        is_open = " open" if open_all or problems else ""
        yield f'<details class="scope"{is_open}>'
        yield f"<summary>{escape(scope)} ({_counted(everything)})</summary>"
        yield f"<table>{_COLGROUP}"
        for finding in members:
            partner = partners.get(finding.name)
            yield from _rows(finding, partner, "missing" if partner else None, hints, errors)
            if partner is not None:
                yield from _rows(partner, finding, "unused", hints, errors)
        yield "</table></details>"
    yield "</section>"


def _partners(findings: Sequence[Finding]) -> dict[str, Finding]:
    """Missing name -> the unused finding its hint suggests (each unused one once, to the
    first missing variable in page order that names it)."""
    unused = {f.name: f for f in findings if f.kind is Kind.UNUSED}
    out: dict[str, Finding] = {}
    taken: set[str] = set()
    for f in sorted(findings, key=lambda f: natural_key(f.name)):
        if f.kind is Kind.MISSING and f.suggested in unused and f.suggested not in taken:
            out[f.name] = unused[f.suggested]
            taken.add(f.suggested)
    return out


def _by_scope(findings: Iterable[Finding]) -> list[tuple[str, list[Finding]]]:
    groups: dict[str, list[Finding]] = {}
    for finding in findings:
        groups.setdefault(scope_of(finding), []).append(finding)
    # Scopes and names in natural order (layer_2 before layer_10): the model's own order,
    # so the two sides can be read against each other; colour marks what needs attention.
    return [
        (scope, sorted(groups[scope], key=lambda f: natural_key(f.name)))
        for scope in sorted(groups, key=lambda s: (s == TOP_LEVEL, natural_key(s)))
    ]


def _rows(
    finding: Finding,
    partner: Finding | None,
    pair_side: str | None,
    hints: _Shared,
    errors: _Shared,
) -> Iterator[str]:
    """One finding's tbody: the side-by-side row, then (model variables, as in the text
    report) a row with TensorFlow's error and the hint; slots and counters get the hint
    only. A missing variable and the unused one its hint suggests are marked as a pair,
    and each is found by searching for the other's name."""
    kind = finding.kind.value
    classes = f"k-{kind}"
    differ = finding.values is not None and not finding.values.identical
    if differ:
        classes += " values-differ"
    status = escape(_STATUS[finding.kind] + (" (values differ)" if differ else ""))
    attributes = f'class="f{" pair" if pair_side else ""}" data-k="{kind}"'
    if partner is not None:
        attributes += f' data-also="{escape(variable_path(partner.name))}"'
        note = "suggested source below" if pair_side == "missing" else "suggested for above"
        status += f'<span class="pair-note">{note}</span>'
    yield f"<tbody {attributes}>"
    yield (
        f'<tr class="finding {classes}">{_side(finding.target)}'
        f'<td class="status">{status}</td>{_side(finding.checkpoint)}</tr>'
    )
    details = []
    if finding.tensorflow_error and finding.tensorflow_error in errors.counts:
        details.append(errors.cell("TensorFlow", "TensorFlow error", finding.tensorflow_error))
    if finding.hint:
        details.append(hints.cell("hint", "hint", finding.hint))
    if finding.values is not None:
        details.append(f"<b>values:</b> {escape(_values_text(finding.values))}")
    if details:
        yield (
            f'<tr class="detail {classes}"><td colspan="{_COLUMNS}">'
            + "<br>".join(details)
            + "</td></tr>"
        )
    yield "</tbody>"


def _side(spec: VariableSpec | None) -> str:
    if spec is None:
        return '<td class="absent">(none)</td><td></td><td></td>'
    name = escape(variable_path(spec.name))
    if spec.original_name and spec.original_name != spec.name:
        name += f'<br><span class="absent">{escape(spec.original_name)}</span>'
    return (
        f'<td class="n">{name}</td><td>{escape(shape_text(spec.shape))}</td>'
        f"<td>{escape(spec.dtype)}</td>"
    )


def _values_text(values: ValueDiff) -> str:
    if values.identical:
        return "identical"
    if values.max_abs_diff is None:
        return "differ"
    return f"differ: max |diff| {values.max_abs_diff:.6g}, rms {values.rms_diff:.6g}"
