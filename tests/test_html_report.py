"""`check --html`: the self-contained HTML report, its structure, and what Chromium shows
of it. Checkpoints are written by TensorFlow; the screenshot is taken by a real Chromium."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from browser import highlighted_bands, screenshot
from helpers import tf_save
from models import save_estimator_checkpoint
from typer.testing import CliRunner

from ckptmigrate import OutputError, check
from ckptmigrate.cli import app
from ckptmigrate.compare import Finding, Kind, Report
from ckptmigrate.html_report import KIND_COLOURS, TOP_LEVEL, render_html, scope_of, write_html
from ckptmigrate.names import Role

runner = CliRunner()
SCOPE_COLOUR = "#e8ecf2"  # the scope heading rows' background in html_report's CSS
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
HOSTILE = '<script>alert("x")</script>&amp;/w'


# -- fixtures: checkpoints made by TensorFlow -------------------------------------------


@pytest.fixture(scope="module")
def estimator_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The README's story: a [10, 10] DNN checkpoint and the [20, 20] model it should fit."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("estimator")
    small, _ = save_estimator_checkpoint(tf, root / "h10", partitioned=False)
    large, _ = save_estimator_checkpoint(tf, root / "h20", hidden_units=(20, 20), partitioned=False)
    return {"h10": small, "h20": large}


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """A checkpoint and a target (both written by TensorFlow's SaveV2) that produce every
    kind of finding, one of them under a name made to break naive HTML."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("kinds")
    f32 = np.float32
    ckpt = tf_save(
        tf,
        root / "ckpt",
        {
            "enc/dense/kernel": np.ones((4, 2), f32),  # matched
            "enc/dense/kernel/Adam": np.ones((4, 2), f32),  # matched optimizer slot
            "enc/dense/bias": np.ones(2, f32),  # shape mismatch
            "enc/embedding": np.ones(3, np.float64),  # dtype mismatch
            "old/extra": np.ones(5, f32),  # unused
            HOSTILE: np.ones(2, f32),  # shape mismatch, hostile name
            "global_step": np.array(7, np.int64),
        },
    )
    target = tf_save(
        tf,
        root / "target",
        {
            "enc/dense/kernel": np.ones((4, 2), f32),
            "enc/dense/kernel/Adam": np.ones((4, 2), f32),
            "enc/dense/bias": np.ones(3, f32),
            "enc/embedding": np.ones(3, f32),
            "dec/new": np.ones(6, f32),  # missing
            HOSTILE: np.ones(3, f32),
            "global_step": np.array(0, np.int64),
        },
    )
    return check(ckpt, target)


# -- reading the HTML back -------------------------------------------------------------


class _Rows(HTMLParser):
    """The report's tables as data: per role section, its scopes (each a <details> whose
    <summary> is its title) and their finding rows (the row's class and its cell texts);
    plus every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.sections: dict[str, list[tuple[str, list[tuple[str, list[str]]]]]] = {}
        self._section: str | None = None
        self._row: tuple[str, list[str]] | None = None
        self._cell: list[str] | None = None
        self._scope: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        cls = dict(attrs).get("class") or ""
        if tag == "section":
            self._section = next(c for c in cls.split() if c.startswith("role-"))[5:]
            self.sections[self._section] = []
        elif tag == "summary":
            self._scope = []
        elif tag == "tr" and "finding" in cls.split():
            self._row = (cls, [])
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row[1].append("".join(self._cell))
            self._cell = None
        elif tag == "summary" and self._scope is not None:
            assert self._section is not None
            self.sections[self._section].append(("".join(self._scope), []))
            self._scope = None
        elif tag == "tr" and self._row is not None:
            assert self._section is not None
            self.sections[self._section][-1][1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._scope is not None:
            self._scope.append(data)


def parse(html: str) -> _Rows:
    rows = _Rows()
    rows.feed(html)
    rows.close()
    return rows


def scopes(parsed: _Rows, role: str) -> dict[str, list[str]]:
    """{scope name: [target-side name, or checkpoint-side name for unused rows]}."""
    return {
        title.split(" (", 1)[0] if not title.startswith(TOP_LEVEL) else TOP_LEVEL: [
            cells[0] if cells[0] != "(none)" else cells[4] for _, cells in rows
        ]
        for title, rows in parsed.sections[role]
    }


# -- the HTML --------------------------------------------------------------------------


def test_hostile_names_are_escaped(every_kind: Report) -> None:
    html = render_html(every_kind)
    parsed = parse(html)
    # one script, the page's own filter, and the name made none
    assert html.count("<script") == 1
    assert html.count("</script>") == 1
    assert html.index("<script>") > html.rindex("</section>")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp;/w" in html
    # ... and the name reads back exactly, on both sides of its row
    rows = [cells for _, members in parsed.sections["model"] for _, cells in members]
    assert [HOSTILE, "[3]", "float32", "SHAPE MISMATCH", HOSTILE, "[2]", "float32"] in rows


def test_every_kind_is_highlighted_and_labelled(every_kind: Report) -> None:
    html = render_html(every_kind)
    rows = [row for _, members in parse(html).sections["model"] for row in members]
    status = {
        cells[0] if cells[0] != "(none)" else cells[4]: (cls, cells[3]) for cls, cells in rows
    }
    assert status == {
        "enc/dense/kernel": ("finding k-matched", "matched"),
        "enc/dense/bias": ("finding k-shape_mismatch", "SHAPE MISMATCH"),
        "enc/embedding": ("finding k-dtype_mismatch", "DTYPE MISMATCH"),
        "dec/new": ("finding k-missing", "MISSING"),
        "old/extra": ("finding k-unused", "UNUSED"),
        HOSTILE: ("finding k-shape_mismatch", "SHAPE MISMATCH"),
    }
    # Each problem kind has its own background; matched rows have none (plain).
    colours = [KIND_COLOURS[k] for k in Kind if k is not Kind.MATCHED]
    assert len(set(colours)) == len(colours)
    for kind in Kind:
        rule = f"tr.k-{kind.value} td {{ background: {KIND_COLOURS[kind]}; }}"
        assert (rule in html) is (kind is not Kind.MATCHED), kind
    # TensorFlow's error and the hint are on the page for a failing model variable.
    bias = next(f for f in every_kind.findings if f.name == "enc/dense/bias")
    assert bias.tensorflow_error
    assert bias.hint
    assert bias.tensorflow_error in html
    assert bias.hint in html


def test_header_and_grouping(every_kind: Report) -> None:
    html = render_html(every_kind)
    assert f"<h1>{every_kind.headline}</h1>" in html
    assert "matched 3 of 7 target variables" in every_kind.headline
    assert "FAIL: a strict restore would not succeed" in html
    parsed = parse(html)
    # self-contained: nothing fetched from anywhere
    assert not parsed.tags & {"link", "img", "iframe", "object"}
    assert "src=" not in html
    assert "href=" not in html
    assert "url(" not in html
    assert list(parsed.sections) == ["model", "optimizer", "step"]
    assert scopes(parsed, "model") == {
        '<script>alert("x")</script>&amp;': [HOSTILE],
        "dec": ["dec/new"],
        "enc": ["enc/embedding"],
        "enc/dense": ["enc/dense/bias", "enc/dense/kernel"],
        "old": ["old/extra"],
    }
    # the slot sits under its variable's scope, in its own section; the counter at the top
    assert scopes(parsed, "optimizer") == {"enc/dense": ["enc/dense/kernel/Adam"]}
    assert scopes(parsed, "step") == {TOP_LEVEL: ["global_step"]}
    assert "enc/dense (2, 1 need attention)" in [t for t, _ in parsed.sections["model"]]


def test_scope_of_slots_and_object_paths() -> None:
    def scope(name: str, role: Role = Role.MODEL) -> str:
        return scope_of(Finding(Kind.MATCHED, name, role, name, None, None))

    assert scope("dnn/hiddenlayer_0/kernel") == "dnn/hiddenlayer_0"
    assert scope("dnn/hiddenlayer_0/kernel/Adagrad", Role.OPTIMIZER) == "dnn/hiddenlayer_0"
    assert scope("beta1_power", Role.OPTIMIZER) == TOP_LEVEL
    assert scope("optimizer/learning_rate", Role.OPTIMIZER) == "optimizer"
    tf2 = "model/layer_with_weights-0/kernel"
    assert scope(tf2 + "/.ATTRIBUTES/VARIABLE_VALUE") == "model/layer_with_weights-0"
    slot = tf2 + "/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE"
    assert scope(slot, Role.OPTIMIZER) == "model/layer_with_weights-0"


def test_write_html_is_atomic_and_says_what_is_wrong(every_kind: Report, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    out.write_text("<!DOCTYPE html><html>an older report</html>")
    previous = os.umask(0o022)
    try:
        assert write_html(every_kind, out, generated_at=WHEN) == out
    finally:
        os.umask(previous)
    assert out.read_text(encoding="utf-8") == render_html(every_kind, generated_at=WHEN)
    assert out.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left
    with pytest.raises(OutputError, match="is a directory"):
        write_html(every_kind, tmp_path)
    with pytest.raises(OutputError, match="does not exist"):
        write_html(every_kind, tmp_path / "no" / "report.html")
    # an OSError becomes an OutputError that names the file (exit 2 from the CLI)
    with pytest.raises(OutputError, match="cannot write: File name too long") as raised:
        write_html(every_kind, tmp_path / ("x" * 300 + ".html"))
    assert "x" * 300 in str(raised.value)
    long_name = tmp_path / ("y" * 250 + ".html")  # legal, though the staged name is longer
    write_html(every_kind, long_name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["report.html", long_name.name])


# -- the command line ------------------------------------------------------------------


def test_cli_writes_html_beside_the_usual_output(
    estimator_runs: dict[str, Path], tmp_path: Path
) -> None:
    h10, h20 = str(estimator_runs["h10"]), str(estimator_runs["h20"])
    out = tmp_path / "report.html"
    failing = runner.invoke(app, ["check", h10, "--target", h20, "--html", str(out)])
    assert failing.exit_code == 1, failing.output
    assert "FAIL: a strict restore would not succeed (10 shape mismatch)" in failing.stdout
    html = out.read_text(encoding="utf-8")
    assert "matched 3 of 13 target variables (7 of 1,167 parameters)" in html
    assert html.count('class="finding k-shape_mismatch"') == 10

    with_json = runner.invoke(app, ["check", h20, "--target", h20, "--json", "--html", str(out)])
    assert with_json.exit_code == 0, with_json.output
    assert json.loads(with_json.stdout)["ok"] is True  # stdout stays pure JSON
    assert "k-shape_mismatch" not in out.read_text(encoding="utf-8").split("<body>")[1]

    nowhere = runner.invoke(
        app, ["check", h10, "--target", h20, "--html", str(tmp_path / "no" / "r.html")]
    )
    assert nowhere.exit_code == 2
    assert "does not exist" in nowhere.stderr


# -- what a browser shows --------------------------------------------------------------


def test_chromium_shows_the_mismatched_rows(
    estimator_runs: dict[str, Path], tmp_path: Path
) -> None:
    mismatch = KIND_COLOURS[Kind.SHAPE_MISMATCH]
    failing = write_html(check(estimator_runs["h10"], estimator_runs["h20"]), tmp_path / "f.html")
    image = screenshot(failing, tmp_path / "failing.png")
    assert image.shape == (1600, 1200, 3)
    # 5 model variables and 5 Adagrad slots mismatch: ten highlighted rows on screen.
    assert highlighted_bands(image, mismatch) == 10

    passing = write_html(check(estimator_runs["h20"], estimator_runs["h20"]), tmp_path / "p.html")
    clean = screenshot(passing, tmp_path / "passing.png")
    rgb = np.array([int(mismatch[i : i + 2], 16) for i in (1, 3, 5)], np.int16)
    assert not np.any(np.all(np.abs(clean.astype(np.int16) - rgb) <= 2, axis=2))
    # ... and not because nothing rendered: the 7 scope headings (3 model, 3 slot scopes
    # and the step counter's) are on screen in both.
    assert highlighted_bands(clean, SCOPE_COLOUR) == 7
    assert highlighted_bands(image, SCOPE_COLOUR) == 7


def test_html_never_replaces_a_file_that_is_not_a_report(tf: object, tmp_path: Path) -> None:
    prefix = tf_save(tf, tmp_path / "ck", {"w": np.ones(2, np.float32)})
    index = Path(f"{prefix}.index")
    before = index.read_bytes()
    args = ["check", str(prefix), "--target", str(prefix), "--html"]
    refused = runner.invoke(app, [*args, str(index)])
    assert refused.exit_code == 2
    assert "not an HTML page" in refused.output
    assert index.read_bytes() == before
    report = tmp_path / "report.html"
    assert runner.invoke(app, [*args, str(report)]).exit_code == 0
    assert runner.invoke(app, [*args, str(report)]).exit_code == 0  # a rerun replaces it
    assert runner.invoke(app, [*args, "s3://bucket/report.html"]).exit_code == 2
