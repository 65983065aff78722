"""What users read from `ckptmigrate inspect`, and the promise that --help is instant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import tf_save
from typer.testing import CliRunner

from ckptmigrate.cli import app

runner = CliRunner()


@pytest.fixture
def ckpt(tf: Any, tmp_path: Path) -> Path:
    return tf_save(
        tf,
        tmp_path / "model.ckpt-7",
        {
            "dense/kernel": np.ones((4, 3), np.float32),
            "dense/kernel/Adam": np.ones((4, 3), np.float32),
            "w[0]": np.ones(2, np.float64),
            "global_step": np.array(7, np.int64),
        },
    )


def test_inspect_table(ckpt: Path) -> None:
    result = runner.invoke(app, ["inspect", str(ckpt)], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.startswith("dense/kernel "))
    assert row.split() == ["dense/kernel", "float32", "[4,", "3]", "48", "B", "model", "variable"]
    assert any(line.split()[:1] == ["w[0]"] for line in lines)  # not eaten as markup
    assert "optimizer slot" in result.stdout
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[1:3] == ["4", "27"]


def test_inspect_json_schema(ckpt: Path) -> None:
    result = runner.invoke(app, ["inspect", str(ckpt), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1
    assert data["checkpoint"]["prefix"] == str(ckpt)
    assert data["checkpoint"]["format"] == "v2"
    by_key = {v["key"]: v for v in data["variables"]}
    assert by_key["dense/kernel"]["shape"] == [4, 3]
    assert by_key["dense/kernel"]["bytes"] == 48
    assert by_key["dense/kernel/Adam"]["role"] == "optimizer"
    assert by_key["global_step"]["role"] == "step"
    assert by_key["global_step"]["dtype"] == "int64"
    assert data["totals"]["all"] == {"variables": 4, "parameters": 27, "bytes": 120}
    assert data["totals"]["model"]["variables"] == 2


def test_inspect_filter(ckpt: Path) -> None:
    result = runner.invoke(app, ["inspect", str(ckpt), "--json", "--filter", "^dense/"])
    keys = [v["key"] for v in json.loads(result.stdout)["variables"]]
    assert keys == ["dense/kernel", "dense/kernel/Adam"]


def test_inspect_verify(ckpt: Path) -> None:
    result = runner.invoke(app, ["inspect", str(ckpt), "--verify"], env={"NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "every tensor in the checkpoint matches its CRC32C" in result.stdout


def test_version() -> None:
    from ckptmigrate import __version__

    for flag in ("--version", "-V"):
        result = runner.invoke(app, [flag])
        assert result.exit_code == 0
        assert result.stdout == f"ckptmigrate {__version__}\n"


def test_version_is_instant_without_tensorflow() -> None:
    # -X importtime lists every module the process imported, on stderr.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ckptmigrate", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert proc.stdout.startswith("ckptmigrate ")
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "ckptmigrate.cli" in imported  # the measurement itself works
    assert not {"tensorflow", "numpy", "keras", "rich"} & imported


def _commands() -> list[str]:
    import typer.main

    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", [[], *([c] for c in _commands())])
def test_every_help_has_an_example_and_the_exit_codes(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "Exit codes: 0 success; 1 incompatible" in " ".join(result.stdout.split())
    # an example is one unwrapped line, ready to copy
    example = result.stdout.split("Example", 1)[1].splitlines()[1]
    assert example.strip().startswith("ckptmigrate ")


def test_shell_completion() -> None:
    listed = runner.invoke(app, ["--help"]).stdout
    assert "--install-completion" in listed
    assert "--show-completion" in listed
    executable = Path(sys.executable).with_name("ckptmigrate")
    if not executable.exists():
        pytest.skip("no ckptmigrate console script beside the interpreter")
    # Typer detects the shell from the process tree unless told not to; under make's
    # `sh -c` that is sh, which it does not support ("Shell sh not supported.").
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("_CKPTMIGRATE", "COMP_"))}
    clean["_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"] = "1"
    script = subprocess.run(
        [str(executable), "--show-completion", "bash"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert script.returncode == 0, script.stderr
    assert "_CKPTMIGRATE_COMPLETE" in script.stdout
    env = {**os.environ, "_CKPTMIGRATE_COMPLETE": "complete_bash"}
    answers = {}
    for words in ("ckptmigrate ins", "ckptmigrate convert x --ta"):
        env.update(COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1))
        proc = subprocess.run(
            [str(executable)], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        answers[words] = proc.stdout.split()
    assert answers["ckptmigrate ins"] == ["inspect"]
    assert answers["ckptmigrate convert x --ta"] == ["--target"]


def test_no_color_turns_off_all_styling_even_on_a_terminal(ckpt: Path) -> None:
    for args in (["inspect", str(ckpt)], ["check", str(ckpt), "--target", str(ckpt)]):
        styled = runner.invoke(app, args, env={"FORCE_COLOR": "1", "NO_COLOR": None})
        assert styled.exit_code == 0, styled.output
        assert "\x1b[" in styled.stdout  # forced to a terminal, it is styled
        plain = runner.invoke(app, args, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
        assert plain.exit_code == 0
        assert "\x1b[" not in plain.stdout
        piped = runner.invoke(app, args, env={"FORCE_COLOR": None, "NO_COLOR": None})
        assert "\x1b[" not in piped.stdout
        assert plain.stdout.split() == piped.stdout.split()


def test_maps_json_and_suggest_quiet(ckpt: Path, tmp_path: Path) -> None:
    listed = runner.invoke(app, ["maps", "--json"])
    assert listed.exit_code == 0
    names = [m["name"] for m in json.loads(listed.stdout)["maps"]]
    assert "strip-optimizer" in names
    out = tmp_path / "m.yaml"
    args = ["suggest", str(ckpt), "--target", str(ckpt), "-o", str(out)]
    loud = runner.invoke(app, args)
    assert loud.exit_code == 0, loud.output
    assert "wrote" in loud.stderr
    quiet = runner.invoke(app, [*args, "--force", "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert out.is_file()


def test_help_and_import_do_not_load_tensorflow_or_numpy() -> None:
    code = (
        "import sys, ckptmigrate; from ckptmigrate.cli import app; "
        "print(sorted(m for m in ('tensorflow', 'numpy', 'keras') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
    proc = subprocess.run(
        [sys.executable, "-m", "ckptmigrate", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "inspect" in proc.stdout


def test_inspect_v2_never_imports_tensorflow(ckpt: Path) -> None:
    code = (
        "import sys; from ckptmigrate import inspect_checkpoint; "
        f"inspect_checkpoint({str(ckpt)!r}, check_crc=True); "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("command", ["inspect", "check"])
def test_piped_reports_load_only_what_a_local_checkpoint_needs(ckpt: Path, command: str) -> None:
    """Start-up is most of a check of a few thousand variables: a report sent to a pipe
    loads neither Rich nor the readers and thread pools of other formats and of stores."""
    argv = [command, str(ckpt)] + (["--target", str(ckpt)] if command == "check" else [])
    code = (
        "import sys; from ckptmigrate.cli import main; "
        f"sys.argv = ['ckptmigrate', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = ('rich', 'ckptmigrate.formats.keras_h5', 'ckptmigrate.fs', "
        "'concurrent.futures', 'asyncio', 'numpy')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy), "
        "file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")},
    )
    assert ("dense/kernel" if command == "inspect" else "OK:") in proc.stdout
    assert proc.stderr.strip() == "[]"


@pytest.mark.parametrize(
    ("key", "role"),
    [
        ("dnn/hiddenlayer_0/kernel", "model"),
        ("dnn/hiddenlayer_0/kernel/t_0/Adagrad", "optimizer"),
        ("linear/linear_model/Age/weights/part_0/Ftrl_1", "optimizer"),
        ("layer1/weights/ExponentialMovingAverage", "optimizer"),
        ("beta1_power", "optimizer"),
        ("global_step", "step"),
        ("model/layer-0/bias/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE", "optimizer"),
        ("optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE", "step"),
        ("model/optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE", "step"),
        ("optimizer/beta_1/.ATTRIBUTES/VARIABLE_VALUE", "optimizer"),
        ("model/optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE", "model"),
        ("save_counter/.ATTRIBUTES/VARIABLE_VALUE", "metadata"),
        ("_CHECKPOINTABLE_OBJECT_GRAPH", "metadata"),
        ("keras_api/metrics/0/total/.ATTRIBUTES/VARIABLE_VALUE", "metadata"),
        ("layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE", "model"),
        ("rnn/basic_lstm_cell/weights", "model"),
        ("Variable_3", "model"),
    ],
)
def test_roles(key: str, role: str) -> None:
    from ckptmigrate.names import classify

    assert classify(key).value == role


def test_traceback_shows_the_traceback_and_keeps_the_exit_code(tmp_path: Path) -> None:
    result = runner.invoke(app, ["inspect", str(tmp_path / "nope"), "--traceback"])
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.output
    assert "error: " in result.output


def test_overwrite_is_the_api_word_and_a_flag_too(ckpt: Path, tmp_path: Path) -> None:
    """(issue 13, item 5) the API's overwrite= and the CLI's --force name one thing: the
    CLI takes both spellings."""
    args = ["convert", str(ckpt), "--map", "strip-optimizer", "-o", str(tmp_path / "out"), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args).exit_code == 2  # exists
    for flag in ("--force", "--overwrite"):
        again = runner.invoke(app, [*args, flag])
        assert again.exit_code == 0, again.output
