"""The HTML report at scale (issue 13, item 6): natural order, collapsible scopes, a missing
variable beside the unused one its hint suggests, shared hints folded, version / command line
/ time on the page, the page rebuilt from a saved ``check --json`` (``ckptmigrate report``),
and, in headless Chromium, a 5,000-variable report that loads and whose search box filters
rows. No TensorFlow: reports are compared from inventories made here, checkpoints written
with the project's BundleWriter."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import dump_dom, screenshot, wide_bands
from typer.testing import CliRunner

from ckptmigrate import CkptMigrateError
from ckptmigrate._version import __version__
from ckptmigrate.cli import CLI_FLAGS, app
from ckptmigrate.compare import Kind, Report, compare
from ckptmigrate.formats.bundle_writer import BundleWriter
from ckptmigrate.html_report import (
    KIND_COLOURS,
    OPEN_ALL_UP_TO,
    load_saved_report,
    natural_key,
    render_html,
    render_saved_report,
    write_html,
)
from ckptmigrate.inventory import Inventory, Scheme, VariableSpec
from ckptmigrate.render import check_dict, to_json

runner = CliRunner()
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
HOSTILE = '<script>alert("x")</script>&amp;'
WEIGHTS = {"kernel": (4, 4), "bias": (4,), "gamma": (4,), "beta": (4,), "moving_mean": (4,)}


def layered_report(layers: int, *, notes: tuple[str, ...] = ()) -> Report:
    """A TF1 checkpoint and target of ``layers`` layers of 5 variables (``model/layer_{i}/
    kernel``, ``bias``, ...). In every hundred layers, layer 3's bias is [8] in the checkpoint
    (a shape mismatch, the same hint each time), layer 7's kernel is stored as
    ``model/old_layer_7/kernel`` (missing, and unused: "did you mean"); every 250th layer
    from 5 has a float16 gamma in the checkpoint (dtype mismatch)."""
    ckpt: dict[str, VariableSpec] = {}
    target: dict[str, VariableSpec] = {}
    for i in range(layers):
        for weight, shape in WEIGHTS.items():
            name = f"model/layer_{i}/{weight}"
            target[name] = VariableSpec(name, shape, "float32")
            stored, stored_shape, dtype = name, shape, "float32"
            if i % 100 == 3 and weight == "bias":
                stored_shape = (8,)
            if i % 100 == 7 and weight == "kernel":
                stored = f"model/old_layer_{i}/kernel"
            if i % 250 == 5 and weight == "gamma":
                dtype = "float16"
            ckpt[stored] = VariableSpec(stored, stored_shape, dtype)
    return compare(
        Inventory("checkpoint", "runs/old", Scheme.TF1, ckpt, notes=notes),
        Inventory("checkpoint", "runs/new", Scheme.TF1, target),
    )


# -- reading the page back -------------------------------------------------------------


class _Page(HTMLParser):
    """Every finding's tbody in page order: its scope, attributes, the finding row's cell
    texts and the detail row's text; the scope titles; the shared-hint list items."""

    def __init__(self) -> None:
        super().__init__()
        self.scopes: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.shared: list[str] = []
        self.scripts = 0
        self._text: list[str] | None = None
        self._into: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "script":
            self.scripts += 1
        elif tag == "summary":
            self._text, self._into = [], "summary"
        elif tag == "li":
            self._text, self._into = [], "li"
        elif tag == "tbody":
            scope = self.scopes[-1].rsplit(" (", 1)[0]
            self.bodies.append({"scope": scope, **attributes, "cells": [], "detail": ""})
        elif tag == "td" and self.bodies and self._into in (None, "td"):
            self._text, self._into = [], "td"
        elif tag == "tr" and "detail" in attributes.get("class", ""):
            self._into = "detail"
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if self._text is None:
            return
        text = "".join(self._text)
        if tag == "summary" and self._into == "summary":
            self.scopes.append(text)
        elif tag == "li" and self._into == "li":
            self.shared.append(text)
        elif tag == "td" and self._into == "td":
            self.bodies[-1]["cells"].append(text)
        elif tag == "tr" and self._into == "detail":
            self.bodies[-1]["detail"] = text
        else:
            return
        self._text, self._into = None, None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def shown_name(body: dict[str, Any]) -> str:
    cells = body["cells"]
    return cells[0] if cells[0] != "(none)" else cells[4]


# -- the page --------------------------------------------------------------------------


def test_natural_order_of_scopes_and_names() -> None:
    names = ["layer_10", "layer_2", "layer_02", "a", "layer_1/x10", "layer_1/x9"]
    assert sorted(names, key=natural_key) == [
        "a",
        "layer_1/x9",
        "layer_1/x10",
        "layer_02",  # 2 as a number; before layer_2 by its text, so the order is total
        "layer_2",
        "layer_10",
    ]
    page = parse(render_html(layered_report(12), generated_at=WHEN))
    scopes = [s.rsplit(" (", 1)[0] for s in page.scopes]
    assert scopes == [f"model/layer_{i}" for i in range(12)]  # not layer_0, layer_1, layer_10


def test_a_missing_variable_is_followed_by_the_unused_one_its_hint_suggests() -> None:
    report = layered_report(12)
    missing = next(f for f in report.findings if f.kind is Kind.MISSING)
    assert missing.suggested == "model/old_layer_7/kernel"
    assert missing.to_dict()["suggested"] == "model/old_layer_7/kernel"
    page = parse(render_html(report, generated_at=WHEN))
    names = [shown_name(b) for b in page.bodies]
    at = names.index("model/layer_7/kernel")
    first, second = page.bodies[at], page.bodies[at + 1]
    assert names[at + 1] == "model/old_layer_7/kernel"
    assert (first["data-k"], second["data-k"]) == ("missing", "unused")
    assert first["class"] == second["class"] == "f pair"
    assert first["scope"] == second["scope"] == "model/layer_7"  # listed beside, not apart
    assert "model/old_layer_7" not in [s.rsplit(" (", 1)[0] for s in page.scopes]
    assert names.count("model/old_layer_7/kernel") == 1
    # searching for either name finds both rows
    assert (first["data-also"], second["data-also"]) == (
        "model/old_layer_7/kernel",
        "model/layer_7/kernel",
    )
    assert "suggested source below" in first["cells"][3]
    assert "did you mean 'model/old_layer_7/kernel'" in first["detail"]


def test_a_hint_many_variables_share_is_shown_once() -> None:
    # The case: 256 variables in 256 scopes, one hint.
    ckpt = {f"m/layer_{i}/w": VariableSpec(f"m/layer_{i}/w", (2,), "float16") for i in range(256)}
    target = {k: VariableSpec(k, (2,), "float32") for k in ckpt}
    report = compare(
        Inventory("checkpoint", "a", Scheme.TF1, ckpt),
        Inventory("checkpoint", "b", Scheme.TF1, target),
    )
    html = render_html(report, generated_at=WHEN)
    hint = "cast it from float16 to float32 with a map"
    assert all(f.hint == hint for f in report.findings)
    assert html.count(hint) == 1
    page = parse(html)
    assert page.shared == [f"H1 same hint for 256 variables: {hint}"]
    assert len(page.bodies) == 256
    for body in page.bodies:
        assert "hint: H1 (same hint for 256 variables, shown above the table)" in body["detail"]
        assert "TensorFlow: tensor_name = m/layer_" in body["detail"]  # each its own: kept

    layered = parse(render_html(layered_report(300), generated_at=WHEN))
    shape_hint = (
        "the checkpoint holds [8], the model needs [4]: slice/pad/reshape it with a map, or "
        "drop it and initialise"
    )
    # the dtype hint two variables share stays in its rows
    assert layered.shared == [f"H1 same hint for 3 variables: {shape_hint}"]


def test_version_command_line_and_time_are_on_the_page() -> None:
    report = layered_report(2)
    command = ["ckptmigrate", "check", HOSTILE, "--target", "new dir/m.ckpt", "--html", "r.html"]
    html = render_html(report, command=command, generated_at=WHEN)
    assert f"<dt>checked by</dt><dd><code>ckptmigrate {__version__}: ckptmigrate check " in html
    assert "&#x27;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp;&#x27;" in html
    assert "&#x27;new dir/m.ckpt&#x27;" in html  # shell-quoted, to copy and paste
    assert '<time datetime="2025-01-02T03:04:05+00:00">2025-01-02 03:04:05 UTC</time>' in html
    # deterministic but for the time
    later = render_html(
        report, command=command, generated_at=datetime(2026, 6, 7, 8, 9, 10, tzinfo=timezone.utc)
    )
    time = re.compile(r"<time [^>]*>[^<]*</time>")
    assert later != html
    assert time.sub("", later) == time.sub("", html)
    assert render_html(report, command=command, generated_at=WHEN) == html


def test_hostile_strings_stay_text_and_the_page_stays_self_contained() -> None:
    ckpt = {HOSTILE + "/w": VariableSpec(HOSTILE + "/w", (2,), "float32")}
    target = {"x" + HOSTILE: VariableSpec("x" + HOSTILE, (3,), "float32")}
    report = compare(
        Inventory("checkpoint", HOSTILE, Scheme.TF1, ckpt, notes=(HOSTILE,)),
        Inventory("checkpoint", "b", Scheme.TF1, target),
    )
    html = render_html(report, command=["ckptmigrate", HOSTILE], generated_at=WHEN)
    page = parse(html)
    assert page.scripts == 1  # the page's own, after every table
    assert html.count("<script") == 1
    assert html.index("<script>") > html.rindex("</section>")
    for outside in ("src=", "href=", "url(", "http://", "https://", "@import"):
        assert outside not in html
    assert [shown_name(b) for b in page.bodies] == ["x" + HOSTILE, HOSTILE + "/w"]
    # in an attribute too: the missing row's partner, found by search
    assert 'data-also="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp;/w"' in html


def test_scopes_with_only_matched_rows_start_collapsed_in_large_reports() -> None:
    small = render_html(layered_report(10), generated_at=WHEN)
    assert small.count("<details") == small.count('<details class="scope" open>') == 10
    layers = OPEN_ALL_UP_TO // 5 + 100
    large = render_html(layered_report(layers), generated_at=WHEN)
    problems = sum(1 for i in range(layers) if i % 100 in (3, 7) or i % 250 == 5)
    assert large.count("<details") == layers
    assert large.count('<details class="scope" open>') == problems


# -- the JSON carries the page ---------------------------------------------------------


def test_the_page_from_the_saved_json_is_the_same_page() -> None:
    report = layered_report(30, notes=("a note",))
    command = ["ckptmigrate", "check", "runs/old", "--target", "runs/new", "--json"]
    data = json.loads(to_json(check_dict(report, command=command)))
    assert data["schema_version"] == 1
    assert data["produced_by"] == {
        "tool": "ckptmigrate",
        "version": __version__,
        "command": command,
    }
    assert data["summary"]["verdict"].startswith("FAIL: a strict restore would not succeed")
    suggested = {f["name"]: f["suggested"] for f in data["findings"] if f["suggested"]}
    assert suggested == {"model/layer_7/kernel": "model/old_layer_7/kernel"}
    assert render_saved_report(data, generated_at=WHEN) == render_html(
        report, command=command, generated_at=WHEN
    )


def test_json_saved_before_the_page_fields_still_renders() -> None:
    data = json.loads(to_json(check_dict(layered_report(10))))
    del data["produced_by"]
    del data["summary"]["verdict"]
    for finding in data["findings"]:
        del finding["suggested"]
    page = parse(render_saved_report(data, generated_at=WHEN))
    assert len(page.bodies) == 51
    assert not any("pair" in b["class"] for b in page.bodies)  # nothing to pair by


def _checkpoint(directory: Path, tensors: dict[str, np.ndarray]) -> Path:
    with BundleWriter(directory, "model.ckpt") as writer:
        for name, value in tensors.items():
            writer.add_array(name, value)
        return Path(writer.commit())


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two checkpoints (a missing variable with its suggestion, a shape mismatch, a hostile
    name) and check's JSON for them saved to a file."""
    f32 = np.float32
    old = _checkpoint(
        tmp_path / "old",
        {
            "enc/old_dense/kernel": np.ones((4, 2), f32),
            "enc/b": np.ones(2, f32),
            HOSTILE: np.ones(1),
        },
    )
    new = _checkpoint(
        tmp_path / "new",
        {"enc/dense/kernel": np.ones((4, 2), f32), "enc/b": np.ones(3, f32), HOSTILE: np.ones(1)},
    )
    result = runner.invoke(app, ["check", str(old), "--target", str(new), "--json"])
    assert result.exit_code == 1, result.output
    path = tmp_path / "saved.json"
    path.write_text(result.stdout)
    return old, new, path


def test_report_renders_a_saved_check_json(saved: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, new, path = saved
    data = json.loads(path.read_text())
    assert data["produced_by"]["command"] == [
        "ckptmigrate",
        "check",
        str(old),
        "--target",
        str(new),
        "--json",
    ]
    page = tmp_path / "page.html"
    result = runner.invoke(app, ["report", str(path), "-o", str(page)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == f"wrote {page}: {data['summary']['headline']}\n"
    html = page.read_text(encoding="utf-8")
    assert f"ckptmigrate {__version__}: ckptmigrate check {old} --target {new} --json" in html
    assert f"<dt>page by</dt><dd><code>ckptmigrate report {path} -o {page}</code></dd>" in html
    # the rows are the rows check --html writes for the same checkpoints
    direct = tmp_path / "direct.html"
    args = ["check", str(old), "--target", str(new), "--html", str(direct)]
    assert runner.invoke(app, args).exit_code == 1
    assert parse(html).bodies == parse(direct.read_text(encoding="utf-8")).bodies
    assert [(b["scope"], shown_name(b), b["data-k"]) for b in parse(html).bodies] == [
        ('<script>alert("x")<', HOSTILE, "matched"),
        ("enc", "enc/b", "shape_mismatch"),
        ("enc/dense", "enc/dense/kernel", "missing"),
        ("enc/dense", "enc/old_dense/kernel", "unused"),  # beside it, not under enc/old_dense
    ]
    assert json.loads(path.read_text()) == load_saved_report(path)  # read, not changed
    again = runner.invoke(app, ["report", str(path), "-o", str(page)])
    assert again.exit_code == 0, again.output  # an earlier page is replaced


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "line 1, column 2 is not valid JSON (Expecting property name"),
        ("[1, 2]", "the top level is not a JSON object"),
        ('{"schema_version": 1, "variables": []}', "the object is not a check report (it is "),
        ('{"schema_version": 2}', "'schema_version' is not 1 (it is 2)"),
        ("BROKEN_KIND", "'findings[0].kind' or 'findings[0].role' ('bogus', 'model') is not"),
        ("BROKEN_SHAPE", "'findings[0].target.shape' is not a list of integers"),
    ],
)
def test_report_refuses_what_is_not_a_check_report(
    saved: tuple[Path, Path, Path], tmp_path: Path, content: str, message: str
) -> None:
    _, _, path = saved
    data = json.loads(path.read_text())
    if content == "BROKEN_KIND":
        data["findings"][0]["kind"] = "bogus"
        content = json.dumps(data)
    elif content == "BROKEN_SHAPE":
        data["findings"][0]["target"]["shape"] = [2, "x"]
        content = json.dumps(data)
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    page = tmp_path / "page.html"
    result = runner.invoke(app, ["report", str(bad), "-o", str(page)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {bad}: {message}"), result.stderr
    assert "`ckptmigrate check CKPT --target T`" in result.stderr  # the CLI's spelling
    assert "\n" not in result.stderr.rstrip("\n")  # one paragraph
    assert not page.exists()
    with pytest.raises(CkptMigrateError) as raised:
        load_saved_report(bad)
    assert "ckptmigrate.check(checkpoint, target)" in str(raised.value)  # the API's
    assert "[[" not in raised.value.render(CLI_FLAGS)


def test_report_never_replaces_a_file_that_is_not_a_page(
    saved: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    old, _, path = saved
    index = Path(f"{old}.index")
    before = index.read_bytes()
    refused = runner.invoke(app, ["report", str(path), "-o", str(index)])
    assert refused.exit_code == 2
    assert "not an HTML page" in refused.stderr
    assert index.read_bytes() == before
    missing = runner.invoke(app, ["report", str(tmp_path / "nope.json"), "-o", "p.html"])
    assert missing.exit_code == 2
    assert f"error: {tmp_path / 'nope.json'}: no such file" in missing.stderr


# -- what a browser does with 5,000 variables ------------------------------------------

# Appended to a copy of the page: once it has loaded (and been laid out), measure, then type
# into the search box and tick the kind boxes as a user would (the events the page listens
# to), counting after each step the rows Chromium actually renders.
_PROBE = """
<script>
window.addEventListener("load", function () {
  document.body.offsetHeight;  // style and layout of the whole page
  var loaded = performance.now();
  var search = document.getElementById("search");
  var matched = document.querySelector('#controls input[data-kind="matched"]');
  function state(query, showMatched, ms) {
    var rows = document.querySelectorAll("tbody.f");
    var rendered = 0;
    for (var i = 0; i < rows.length; i++) if (rows[i].checkVisibility()) rendered++;
    var shown = document.getElementById("shown").textContent;
    return { query: query, matched: showMatched, rendered: rendered, shown: shown, ms: ms };
  }
  function step(query, showMatched) {
    var start = performance.now();
    search.value = query;
    search.dispatchEvent(new Event("input"));
    if (matched.checked !== showMatched) {
      matched.checked = showMatched;
      matched.dispatchEvent(new Event("change"));
    }
    document.body.offsetHeight;
    return state(query, showMatched, performance.now() - start);
  }
  var steps = [state("", true, 0), step("layer_12", true), step("LAYER_107 kernel", true),
               step("", false), step("", true)];
  var nav = performance.getEntriesByType("navigation")[0];
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(
    { loaded_ms: loaded, dom_content_loaded_ms: nav.domContentLoadedEventEnd, steps: steps });
  document.body.appendChild(out);
});
</script>
"""


def _variant(page: Path, name: str, script: str) -> Path:
    html = page.read_text(encoding="utf-8")
    at = html.rindex("</body>")
    variant = page.with_name(name)
    variant.write_text(html[:at] + script + html[at:], encoding="utf-8")
    return variant


@pytest.mark.slow  # fault trials / a browser run: make test, not make check
def test_5000_variables_load_and_the_search_box_filters_rows(tmp_path: Path) -> None:
    report = layered_report(1000)
    assert report.target_variables == 5000
    counts = {kind: report.count(kind) for kind in Kind}
    problems = 10 + 4 + 10 + 10  # shape, dtype, missing, and its unused suggestion
    assert counts[Kind.MATCHED] == 5000 - problems + 10
    page = write_html(report, tmp_path / "big.html", generated_at=WHEN)

    dom = dump_dom(_variant(page, "probe.html", _PROBE))
    probe = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    assert probe is not None, dom[-2000:]
    result = json.loads(probe[1].replace("&quot;", '"').replace("&amp;", "&"))
    size = page.stat().st_size
    # A measurement, not an assertion (no timed assertions in tests): -s shows it.
    print(
        f"\n5,000-variable report, {size / 1e6:.1f} MB: Chromium load (parse, script, style,"
        f" layout) {result['loaded_ms']:.0f} ms; DOMContentLoaded "
        f"{result['dom_content_loaded_ms']:.0f} ms; filter steps "
        + ", ".join(f"{s['query'] or '-'!r}: {s['ms']:.0f} ms" for s in result["steps"][1:])
    )
    total = len(report.findings)
    rendered = [(s["query"], s["matched"], s["rendered"], s["shown"]) for s in result["steps"]]
    assert rendered == [
        # on load: the scopes that need attention are open, the all-matched ones collapsed
        ("", True, 130, f"{total} of {total} rows match"),
        # layer_12 and layer_120 ... layer_129, five variables each
        ("layer_12", True, 55, f"55 of {total} rows match"),
        # terms are ANDed, case-insensitive; the missing kernel and its suggested source
        ("LAYER_107 kernel", True, 2, f"2 of {total} rows match"),
        # matched rows off: only what needs attention
        ("", False, problems, f"{problems} of {total} rows match"),
        # and back: the scopes open as they were before the search
        ("", True, 130, f"{total} of {total} rows match"),
    ]

    # What a user sees after typing the pair's name: the two rows, one missing, one unused.
    typed = _variant(
        page,
        "typed.html",
        '<script>var s = document.getElementById("search"); s.value = "layer_107 kernel";'
        's.dispatchEvent(new Event("input"));</script>',
    )
    image = screenshot(typed, tmp_path / "typed.png", size=(1200, 900))
    # (the kind boxes above the table wear the colours too: only table-wide bands count)
    assert wide_bands(image, KIND_COLOURS[Kind.MISSING]) == 1
    assert wide_bands(image, KIND_COLOURS[Kind.UNUSED]) == 1
    assert wide_bands(image, KIND_COLOURS[Kind.SHAPE_MISMATCH]) == 0
    # Unfiltered, it opens on what needs attention: layer_3's scope first, its mismatch
    # highlighted, the all-matched layers 0 to 2 collapsed above it.
    whole = screenshot(page, tmp_path / "big.png", size=(1200, 1600))
    assert wide_bands(whole, KIND_COLOURS[Kind.SHAPE_MISMATCH]) >= 1
