"""Hostile and unusual input (issue 12): TensorFlow's own non-ASCII checkpoint names, mangled
state files, Python files planted in the working directory, and index entries that lie about
their slices. TensorFlow is the oracle for what is valid; every refusal is one clean paragraph.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ckptmigrate import open_checkpoint
from ckptmigrate.cli import app
from ckptmigrate.errors import CorruptCheckpointError
from ckptmigrate.formats.checkpoint_state import StateFileError, parse_state, render_state
from ckptmigrate.formats.locate import locate
from ckptmigrate.isolated import python_command

runner = CliRunner()


def run_cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def clean_error(*args: str) -> str:
    """Run the CLI, expect exit 2 with one paragraph (no traceback); return the paragraph."""
    code, out, err = run_cli(*args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in err, err
    message = " ".join(err.split())  # Rich may wrap; compare as one paragraph
    assert message.startswith("error: "), message
    return message


def tf_latest(tf: Any, directory: Path) -> str | None:
    """TensorFlow's reading of a state file: the path it names, or None where TF ignores
    the file (a parse error) or fails on it (not UTF-8, no path)."""
    try:
        state = tf.train.get_checkpoint_state(str(directory))
    except Exception:
        return None
    return None if state is None else str(state.model_checkpoint_path)


# --- the checkpoint state file -------------------------------------------------------------

NAMES = [
    "модель",  # Cyrillic
    "ckpt-é",  # accented Latin
    "Ελληνικά",
    "检查点",  # CJK
    "チェックポイント",
    "ckpt-😀",  # outside the BMP
    'say "hi"',  # quotes TF escapes
    "it's",
    "back\\slash",  # a backslash TF escapes (tf.train.latest_checkpoint's glob misses it)
    "tab\tname",  # a control character TF escapes
]


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_manager_names_round_trip(tf: Any, tmp_path: Path, name: str) -> None:
    directory = tmp_path / "run"
    ckpt = tf.train.Checkpoint(v=tf.Variable([1.0, 2.0, 3.0]))
    manager = tf.train.CheckpointManager(ckpt, str(directory), 2, checkpoint_name=name)
    manager.save()
    ckpt.v.assign([4.0, 5.0, 6.0])
    saved = manager.save()

    # TF's own reading of its state file is the oracle for which checkpoint is meant.
    tf_state = tf.train.get_checkpoint_state(str(directory))
    assert tf_state.model_checkpoint_path == saved
    if "\\" not in name:  # latest_checkpoint globs the name: a backslash escapes in a glob
        assert tf.train.latest_checkpoint(str(directory)) == saved
    parsed = parse_state((directory / "checkpoint").read_bytes())
    assert parsed is not None
    assert [str(directory / p) for p in parsed.all_paths] == list(
        tf_state.all_model_checkpoint_paths
    )
    assert parsed.all_timestamps == tuple(tf_state.all_model_checkpoint_timestamps)
    assert str(locate(directory).prefix) == saved

    code, out, err = run_cli("inspect", str(directory), "--json")
    assert code == 0, err
    assert json.loads(out)["checkpoint"]["prefix"] == saved

    # convert writes a state file TF reads back to the same name, and values TF restores.
    output = tmp_path / "out"
    code, out, err = run_cli("convert", str(directory), "-m", "strip-optimizer", "-o", str(output))
    assert code == 0, err
    written = str(output / Path(saved).name)
    assert tf.train.get_checkpoint_state(str(output)).model_checkpoint_path == written
    assert str(locate(output).prefix) == written
    key = "v/.ATTRIBUTES/VARIABLE_VALUE"
    if "\\" in name:
        # TF globs the prefix and cannot restore even the checkpoint it saved itself.
        with open_checkpoint(written) as converted:
            np.testing.assert_array_equal(converted.reader.read(key), [4, 5, 6])
    else:
        np.testing.assert_array_equal(tf.train.load_checkpoint(written).get_tensor(key), [4, 5, 6])


def test_render_state_is_what_tensorflow_writes(tf: Any, tmp_path: Path) -> None:
    from tensorflow.python.checkpoint import checkpoint_management

    for name in NAMES:
        directory = tmp_path / f"d{NAMES.index(name)}"
        directory.mkdir()
        checkpoint_management.update_checkpoint_state_internal(
            str(directory), name, all_model_checkpoint_paths=[name], save_relative_paths=True
        )
        assert render_state(name) == (directory / "checkpoint").read_text(encoding="utf-8")


def test_octal_escaped_state_file_as_older_protobuf_wrote_it(tf: Any, tmp_path: Path) -> None:
    """protobuf before 5.x escaped every non-ASCII byte as octal (as_utf8=False)."""
    directory = tmp_path / "run"
    ckpt = tf.train.Checkpoint(v=tf.Variable([1.0]))
    saved = tf.train.CheckpointManager(ckpt, str(directory), 1, checkpoint_name="модель").save()
    escaped = "".join(f"\\{b:03o}" for b in Path(saved).name.encode())
    (directory / "checkpoint").write_text(f'model_checkpoint_path: "{escaped}"\n')
    assert tf_latest(tf, directory) == saved
    assert str(locate(directory).prefix) == saved


# Each is refused by TensorFlow too (a parse error, or a path no file can have); before the
# fix most were tracebacks.
MALFORMED_STATE = {
    "truncated hex escape": b'model_checkpoint_path: "\\x"\n',
    "hex escape to invalid UTF-8": b'model_checkpoint_path: "\\xff\\xfe"\n',
    "octal escape to invalid UTF-8": b'model_checkpoint_path: "ckpt-\\351-1"\n',
    "raw invalid UTF-8": b'model_checkpoint_path: "ckpt-\xe9-1"\n',
    "lone surrogate": b'model_checkpoint_path: "\\ud800"\n',
    "octal escape above 255": b'model_checkpoint_path: "\\777"\n',
    "NUL escape": b'model_checkpoint_path: "a\\000b"\n',
    "missing quote": b'model_checkpoint_path: "model.ckpt-1\n',
    "not a string": b"model_checkpoint_path: 12\n",
    "unknown field": b'model_checkpoint_path: "model.ckpt-1"\nbogus: 1\n',
}
# Valid for TensorFlow, but past the bounds that keep parsing fast (TF takes ~20 s over the
# first: unescaping is quadratic in a run of backslashes).
OVERSIZED_STATE = {
    "a run of backslashes": b'model_checkpoint_path: "' + b"\\" * 40_000 + b'"\n',
    "too large": b'model_checkpoint_path: "x"\n' + b"#" * (1 << 20),
}


@pytest.mark.parametrize(
    "content",
    [*MALFORMED_STATE.values(), *OVERSIZED_STATE.values()],
    ids=[*MALFORMED_STATE, *OVERSIZED_STATE],
)
def test_malformed_state_file_is_a_clean_error(tf: Any, tmp_path: Path, content: bytes) -> None:
    directory = tmp_path / "run"
    directory.mkdir()
    state = directory / "checkpoint"
    state.write_bytes(content)
    if content in MALFORMED_STATE.values():
        assert tf_latest(tf, directory) in (None, str(directory / "a\0b"))
    for path in (directory, state):
        message = clean_error("inspect", str(path))
        assert f"{state}: this checkpoint state file is unreadable" in message, message
        assert "Hint:" in message
        with pytest.raises(CorruptCheckpointError):
            locate(path)
    output = tmp_path / "out"
    message = clean_error("convert", str(directory), "-m", "strip-optimizer", "-o", str(output))
    assert str(state) in message


def test_state_file_naming_no_prefix_is_a_clean_error(tf: Any, tmp_path: Path) -> None:
    directory = tmp_path / "run"
    directory.mkdir()
    for recorded in ["/", ".", "../", "x" * 5000, "a\nb"]:
        escaped = recorded.replace("\n", "\\n")
        (directory / "checkpoint").write_text(f'model_checkpoint_path: "{escaped}"\n')
        message = clean_error("inspect", str(directory))
        assert "it points at" in message
        assert "which is missing" in message
        assert len(message) < 700


ESCAPE_PIECES = st.sampled_from(
    ["a", "é", "д", "😀", "\\\\", '\\"', "\\'", "\\n", "\\t", "\\x4", "\\x41", "\\x", "\\101",
     "\\351", "\\3", "\\u0434", "\\U0001F600", "\\q", "\\0", "7", "f", "'", " "]
)  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pieces=st.lists(ESCAPE_PIECES, min_size=1, max_size=8))
def test_state_file_escapes_read_as_tensorflow_reads_them(
    tf: Any, tmp_path: Path, pieces: list[str]
) -> None:
    directory = tmp_path / "escapes"
    directory.mkdir(exist_ok=True)
    content = ('model_checkpoint_path: "' + "".join(pieces) + '"\n').encode()
    (directory / "checkpoint").write_bytes(content)
    expected = tf_latest(tf, directory)
    try:
        parsed = parse_state(content)
    except StateFileError:
        assert expected is None or "\0" in expected, expected
        return
    assert parsed is not None
    assert parsed.latest is not None
    assert expected == str(directory / parsed.latest)


# --- Python files planted in the working directory ------------------------------------------

HOSTILE_MODULES = ["json", "numpy", "runpy", "typing", "tensorflow"]


def plant_modules(directory: Path) -> Path:
    """Modules that leave a marker file when imported; return the marker directory."""
    directory.mkdir()
    markers = directory / "markers"
    markers.mkdir()
    for name in HOSTILE_MODULES:
        (directory / f"{name}.py").write_text(
            f"open({str(markers / name)!r}, 'w').write('imported from the working directory')\n"
        )
    return markers


def test_convert_verify_imports_nothing_from_the_working_directory(tf: Any, tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("ckptmigrate")
    if not script.is_file():
        pytest.skip("the ckptmigrate console script is not installed beside this Python")
    source = tmp_path / "run"
    ckpt = tf.train.Checkpoint(v=tf.Variable([1.0, 2.0]))
    tf.train.CheckpointManager(ckpt, str(source), 1).save()
    hostile = tmp_path / "hostile"
    markers = plant_modules(hostile)
    output = tmp_path / "out"
    args = ["convert", str(source), "-m", "strip-optimizer", "-o", str(output), "--verify"]
    process = subprocess.run(
        [str(script), *args], cwd=hostile, capture_output=True, text=True, check=False
    )
    assert sorted(p.name for p in markers.iterdir()) == []
    assert process.returncode == 0, process.stderr
    assert "verify ok: read back with tf.train.load_checkpoint" in process.stdout, process.stdout


def test_isolated_children_import_nothing_from_the_working_directory(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile"
    markers = plant_modules(hostile)
    process = subprocess.run(
        python_command("ckptmigrate", "maps"),
        cwd=hostile,
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert "strip-optimizer" in process.stdout
    assert sorted(p.name for p in markers.iterdir()) == []
