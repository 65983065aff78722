"""Map tooling: `validate` and its pre-commit hook, the schema's $id, `suggest --json`,
completion of bundled map names, --format's choices, and the messages for common slips (a
misspelled bundled map, a target given positionally, a rule that matches nothing)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ckptmigrate import MapError, load_map
from ckptmigrate.cli import app
from ckptmigrate.conversion import ConvertOptions, run_conversion
from ckptmigrate.formats.bundle_writer import BundleWriter
from ckptmigrate.mapping.schema import BUNDLED_DIR, bundled_map_names
from ckptmigrate.validate import validate_maps

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
# The console script, as the checkout under test (not another install) runs it.
CLI = [sys.executable, "-c", "from ckptmigrate.cli import app; app(prog_name='ckptmigrate')"]
F32 = np.float32


def _write(directory: Path, tensors: dict[str, np.ndarray]) -> Path:
    with BundleWriter(directory, "model.ckpt") as writer:
        for name, value in tensors.items():
            writer.add_array(name, value)
        return Path(writer.commit())


BAD_MAP = "version: 1\nrules:\n  - name: dense/kernel\n    pda: {shape: [4, 20]}\n"


# -- validate ------------------------------------------------------------------------------


def test_validate_says_ok_with_the_rule_count_or_the_error_with_its_location(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\nrules:\n  - match: '.*/Adam'\n    drop: true\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_MAP)
    result = runner.invoke(app, ["validate", str(good), "strip-optimizer"])
    assert result.exit_code == 0, result.output
    rules = len(load_map("strip-optimizer").rules)
    assert result.stdout == (
        f"{good}: ok (1 rule)\nstrip-optimizer: ok ({rules} rule{'s' * (rules != 1)})\n"
    )
    assert result.stderr == ""
    result = runner.invoke(app, ["validate", str(bad), str(good)])
    assert result.exit_code == 2
    assert result.stdout == f"{good}: ok (1 rule)\n"  # a bad map does not stop the others
    assert result.stderr == (
        f"error: {bad}:4:5: unknown key 'pda' in rule 1 Hint: did you mean 'pad'?\n"
    )


def test_validate_maps_returns_a_verdict_per_map(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_MAP)
    verdicts = validate_maps(["strip-optimizer", bad, tmp_path / "absent.yaml"])
    assert [v.ok for v in verdicts] == [True, False, False]
    assert verdicts[0].rules == len(load_map("strip-optimizer").rules)
    assert verdicts[1].rules is None
    assert isinstance(verdicts[1].error, MapError)
    assert str(verdicts[1].error.where) == f"{bad}:4:5"
    assert "no such map file" in str(verdicts[2].error)


def test_every_bundled_map_validates() -> None:
    names = bundled_map_names()
    assert names == sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))
    result = runner.invoke(app, ["validate", *names])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(names)


def test_the_pre_commit_hook_runs_validate_on_maps(tmp_path: Path) -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = hooks
    assert hook["id"] == "ckptmigrate-validate"
    assert hook["language"] == "python"  # pre-commit pip-installs this repository
    assert hook["types"] == ["yaml"]
    files = re.compile(hook["files"])
    for path in ("mappings/widen.yaml", "ml/mappings/v2.yml", "maps/a.yaml"):
        assert files.search(path), path
    for path in ("config.yaml", ".github/workflows/ci.yaml", "mappings/README.md"):
        assert not files.search(path), path
    # pre-commit installs the package and runs `entry` with the staged files appended
    bad = tmp_path / "mappings" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text(BAD_MAP)
    command, *args = hook["entry"].split()
    assert f'\n{command} = "ckptmigrate.cli:main"\n' in (REPO / "pyproject.toml").read_text()
    proc = subprocess.run(
        [*CLI, *args, str(bad), str(REPO / "mappings" / "strip-optimizer.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{bad}:4:5: unknown key 'pda'" in proc.stderr
    assert "strip-optimizer.yaml: ok" in proc.stdout


def test_the_schema_id_is_a_stable_relative_reference() -> None:
    import jsonschema

    schema = json.loads((REPO / "mappings" / "schema.json").read_text())
    assert schema["$id"] == "mappings/schema.json"
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    for path in sorted((REPO / "mappings").glob("*.yaml")):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path


# -- a misspelled bundled map --------------------------------------------------------------


def test_a_misspelled_bundled_map_name_gets_a_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(MapError) as caught:
        load_map("strip-optimiser")
    assert str(caught.value) == (
        "strip-optimiser: no such map file or bundled map "
        "Hint: did you mean the bundled map 'strip-optimizer'?"
    )
    ckpt = _write(tmp_path / "ckpt", {"w": np.ones(2, F32)})
    result = runner.invoke(
        app, ["convert", str(ckpt), "--map", "strip-optimiser", "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "did you mean the bundled map 'strip-optimizer'?" in result.stderr
    with pytest.raises(MapError) as caught:
        load_map("nothing-like-it")
    assert "Hint: bundled maps: " in str(caught.value)


# -- check A B -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "suggest"])
def test_a_target_given_positionally_is_answered_with_target(command: str) -> None:
    result = runner.invoke(app, [command, "runs/h10", "new model.meta"])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert (
        f"Error: {command} takes the model as --target, not as a second argument: "
        f"ckptmigrate {command} runs/h10 --target 'new model.meta'"
    ) in message
    assert "unexpected extra argument" not in message


def test_a_missing_target_is_still_typers_missing_option() -> None:
    result = runner.invoke(app, ["check", "runs/h10"])
    assert result.exit_code == 2
    assert "Missing option '--target'" in result.stderr


# -- --format and completion ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["convert", "suggest"])
def test_format_is_a_choice(command: str) -> None:
    result = runner.invoke(app, [command, "x", "--target", "y", "--format", "kera"])
    assert result.exit_code == 2
    said = " ".join(result.stderr.split())
    assert "'kera' is not one of 'checkpoint', 'keras', 'safetensors', 'torch'" in said
    shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "120"})
    choices = "checkpoint|keras|safetensors|torch"
    assert f"--format [{choices}]" in shown.stdout or f"<{choices}>" in shown.stdout


def _complete(words: str) -> list[str]:
    env = {
        **os.environ,
        "_CKPTMIGRATE_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    proc = subprocess.run(CLI, env=env, capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout.split()


def test_map_completes_bundled_map_names() -> None:
    assert _complete("ckptmigrate convert x --map str") == ["strip-optimizer"]
    assert _complete("ckptmigrate check x -t y -m tf1-r") == ["tf1-rnn-to-keras"]
    assert _complete("ckptmigrate check x -t y -m tf") == [
        "tf-keras-to-keras3",
        "tf1-bert-to-hf-bert",
        "tf1-rnn-to-keras",
    ]
    assert _complete("ckptmigrate validate estim") == ["estimator-dnn-to-keras"]
    # a path matches no name: the shell completes file names (complete -o default)
    assert _complete("ckptmigrate convert x --map ./") == []
    assert _complete("ckptmigrate convert x --format k") == ["keras"]


# -- suggest --json ------------------------------------------------------------------------


def test_suggest_json_has_the_rules_uncertain_notes_and_headline(tmp_path: Path) -> None:
    ckpt = _write(
        tmp_path / "ckpt",
        {"old/kernel": np.ones((4, 6), F32), "old/bias": np.ones(6, F32)},
    )
    tgt = _write(
        tmp_path / "target",
        {"new/kernel": np.ones((4, 4), F32), "new/bias": np.ones(4, F32), "extra": np.ones(2)},
    )
    result = runner.invoke(app, ["suggest", str(ckpt), "--target", str(tgt), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert sorted(data) == [
        "checkpoint",
        "description",
        "headline",
        "notes",
        "ok",
        "output",
        "rules",
        "schema_version",
        "target",
        "uncertain",
    ]
    as_yaml = runner.invoke(app, ["suggest", str(ckpt), "--target", str(tgt)]).stdout
    assert data["rules"] == yaml.safe_load(as_yaml)["rules"]
    assert data["headline"].startswith("matched 3 of 3 target variables")
    assert data["ok"] is True
    assert data["output"] is None
    assert data["uncertain"], "the init of 'extra' is a guess a reviewer should see"
    for item in data["uncertain"]:
        assert set(item) == {"rule", "reason"}
        assert isinstance(data["rules"][item["rule"]], dict)
    assert isinstance(data["notes"], list)
    out = tmp_path / "m.yaml"
    written = runner.invoke(
        app, ["suggest", str(ckpt), "--target", str(tgt), "--json", "-o", str(out)]
    )
    assert written.exit_code == 0, written.output
    assert json.loads(written.stdout)["output"] == str(out)
    assert out.read_text() == as_yaml


# -- a rule that matches nothing -----------------------------------------------------------


def test_a_rule_matching_nothing_warns_before_writing_and_names_strict(tmp_path: Path) -> None:
    ckpt = _write(tmp_path / "ckpt", {"dense/kernel": np.ones((2, 2), F32)})
    map_file = tmp_path / "m.yaml"
    map_file.write_text("version: 1\nrules:\n  - name: dense/kernal\n    drop: true\n")
    for extra in ([], ["--json"], ["--quiet"]):
        out = tmp_path / f"out{len(extra)}{extra[:1]}"
        result = runner.invoke(
            app, ["convert", str(ckpt), "--map", str(map_file), "-o", str(out), *extra]
        )
        assert result.exit_code == 0, result.output
        assert (
            f"warning: rule 1 ({map_file}:3:5) matches nothing; closest names: dense/kernel "
            "(perhaps you misspelled it?); --strict makes this an error"
        ) in " ".join(result.stderr.split()), result.stderr
    seen = []
    out = tmp_path / "lib"
    run_conversion(
        ckpt,
        map_file,
        out,
        None,
        ConvertOptions(),
        on_plan=lambda plan: seen.append((plan.warnings, out.exists())),
    )
    ((warnings, written),) = seen
    assert len(warnings) == 1
    assert not written  # told before anything is written


def test_the_warning_is_seen_with_the_progress_line_on_a_terminal(tmp_path: Path) -> None:
    # On a terminal convert draws a Rich progress line on stderr; the warning is printed
    # above it (through Rich), not written over by it.
    ckpt = _write(tmp_path / "ckpt", {"dense/kernel": np.ones((2, 2), F32)})
    map_file = tmp_path / "m.yaml"
    map_file.write_text("version: 1\nrules:\n  - name: dense/kernal\n    drop: true\n")
    leader, follower = os.openpty()
    env = {**os.environ, "COLUMNS": "400", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    args = ["convert", str(ckpt), "--map", str(map_file), "-o", str(tmp_path / "out")]
    proc = subprocess.Popen(
        [*CLI, *args], stdin=follower, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode())
    assert "matches nothing; closest names: dense/kernel" in screen
    assert "--strict makes this an error" in screen
    assert "wrote " in screen
    assert "converting:" in screen  # the progress line was drawn
