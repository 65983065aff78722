"""The README and the map language's README run as shown: every block is executed against
the files `ckptmigrate demo-files` makes, and what it prints is compared with what the
document shows (tests/doc_blocks.py has the conventions)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from doc_blocks import Block, Runner, blocks, matches, sections

from ckptmigrate.demo_files import make_demo_files

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "mappings/README.md"]
SECTIONS = [
    (document, heading)
    for document in DOCUMENTS
    for heading, _ in sections((ROOT / document).read_text(encoding="utf-8"))
]


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Made once per test process; each section runs on a copy."""
    return make_demo_files(tmp_path_factory.mktemp("demo") / "files").root


@pytest.mark.tensorflow
@pytest.mark.parametrize(("document", "heading"), SECTIONS)
def test_every_block_runs_as_shown(
    document: str, heading: str, demo_files: Path, tmp_path: Path
) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    body = dict(sections(text))[heading]
    workdir = tmp_path / "docs"
    shutil.copytree(demo_files, workdir, symlinks=True)
    runner = Runner(workdir)
    found = blocks(body, first_line=text[: text.index(body)].count("\n") + 1)
    problems = [
        f"{document}:{outcome.block.line} ({outcome.block.language}): {problem}"
        for outcome in map(runner.run, found)
        for problem in outcome.problems
    ]
    assert not problems, "\n\n".join(problems)


def test_sections_cover_every_block() -> None:
    for document in DOCUMENTS:
        text = (ROOT / document).read_text(encoding="utf-8")
        in_sections = sum(len(blocks(body)) for _, body in sections(text))
        assert in_sections == len(blocks(text))


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_block_is_run_or_says_why_not(document: str) -> None:
    runnable = {"console", "sh", "python", "yaml", "json"}
    for block in blocks((ROOT / document).read_text(encoding="utf-8")):
        assert block.language in runnable or block.skip, (
            f"{document}:{block.line}: a ```{block.language} block is not run; mark it "
            "<!-- doc-test: skip (why) --> or make it runnable"
        )


def test_the_output_matcher_tells_apart() -> None:
    shown = "matched 7 of 7\n...\nOK: every target variable restores"
    assert matches(shown, "matched 7 of 7\nrow\nrow\nOK: every target variable restores") is None
    assert matches(shown, "matched 7 of 7\nOK: every target variable restores") is None
    assert matches(shown, "matched 6 of 7\nOK: every target variable restores")
    assert matches(shown, "matched 7 of 7\nOK: every target variable restores\nmore")
    assert matches("wrote h20/model.ckpt-20: ...", "wrote h20/model.ckpt-20: 1 copied") is None
    assert matches("wrote h20/model.ckpt-20: ...", "wrote h21/model.ckpt-20: 1 copied")


def test_a_python_block_takes_the_text_block_after_it_as_its_output() -> None:
    found = blocks("```python\nprint(1)\n```\n```text\n1\n```\n\n```text\nalone\n```\n")
    assert [b.language for b in found] == ["python", "text"]
    assert isinstance(found[0].output, Block)
    assert found[0].output.text == "1\n"


def test_a_json_outline_must_have_the_real_fields() -> None:
    from doc_blocks import field_differences

    real = {"ok": True, "findings": [{"kind": "matched", "target": None}], "totals": {"all": {}}}
    assert not field_differences(
        {"ok": 1, "findings": [{"kind": 1, "target": {"x": 1}}], "totals": {"...": 1}}, real, "$"
    )
    assert field_differences({"ok": 1}, real, "$")
    assert field_differences({"ok": 1, "findings": [{"kind": 1}], "totals": {}, "x": 1}, real, "$")
    assert field_differences(
        {"ok": 1, "findings": [{"kinds": 1, "target": 1}], "totals": {}}, real, "$"
    )
