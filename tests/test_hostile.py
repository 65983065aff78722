"""Hostile and unusual input (issue 12): TensorFlow's own non-ASCII checkpoint names, mangled
state files, Python files planted in the working directory, index entries that lie about
their slices, outputs the system refuses or that shadow the source, HDF5 targets linking
elsewhere or in loops, a copied directory whose state file names the original, and signals
during start-up. TensorFlow is the oracle for what is valid; every refusal is one clean
paragraph.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ckptmigrate import open_checkpoint, rewrite_checkpoint
from ckptmigrate.cli import app
from ckptmigrate.errors import CorruptCheckpointError, OutputError
from ckptmigrate.formats.bundle_proto import (
    BundleEntry,
    Extent,
    TensorSlice,
    decode_entry,
    encode_entry,
)
from ckptmigrate.formats.checkpoint_state import StateFileError, parse_state, render_state
from ckptmigrate.formats.locate import locate
from ckptmigrate.formats.ordered_code import encode_slice_key
from ckptmigrate.formats.table import TableWriter, iter_table
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


# --- index entries that lie about slices and sizes ------------------------------------------

PARTS = {"0,7:-": (0, 7), "7,7:-": (7, 7), "14,6:-": (14, 6)}


def partitioned(tf: Any, prefix: Path, specs: list[str] | None = None) -> Path:
    """A [20, 8] float32 variable 'w' saved by TF in row slices (and a scalar 'step')."""
    specs = specs or list(PARTS)
    values = np.arange(160, dtype=np.float32).reshape(20, 8)
    tensors = []
    for spec in specs:
        rows = spec.split(":")[0].split(",")
        start, length = int(rows[0]), int(rows[1])
        tensors.append(values[start : start + length])
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=["w"] * len(specs) + ["step"],
        shape_and_slices=[f"20 8 {spec}" for spec in specs] + [""],
        tensors=[*tensors, tf.constant(7, tf.int64)],
    )
    return prefix


def rewrite_index(prefix: Path, edit: Any, duplicate: str | None = None) -> None:
    """Decode the index with the project's own table and entry code, let ``edit`` change
    the entries (a dict of key -> BundleEntry), and write it back (``duplicate``: a key
    written twice)."""
    index = prefix.with_name(prefix.name + ".index")
    header = b""
    entries: dict[str, BundleEntry] = {}
    for raw_key, value in iter_table(index.read_bytes()):
        if raw_key:
            entries[raw_key.decode("utf-8", "surrogateescape")] = decode_entry(value)
        else:
            header = value
    edit(entries)
    with index.open("wb") as f:
        table = TableWriter(f)
        table.add(b"", header)
        for key in sorted(entries, key=lambda k: k.encode("utf-8", "surrogateescape")):
            raw = key.encode("utf-8", "surrogateescape")
            table.add(raw, encode_entry(entries[key]))
            if key == duplicate:
                table._last_key = None  # the writer refuses a repeated key; a hostile one won't
                table.add(raw, encode_entry(entries[key]))
        table.finish()


def tf_refuses(prefix: Path, key: str, *fragments: str) -> None:
    """TensorFlow refuses to read ``key``: an error naming ``fragments``, or an abort (a
    CHECK failure in its reader: hence a separate process)."""
    code = (
        "import sys, tensorflow as tf\n"
        "tf.train.load_checkpoint(sys.argv[1]).get_tensor(sys.argv[2])\n"
        "print('TF READ IT')\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run(
        [sys.executable, "-c", code, str(prefix), key],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert process.returncode != 0, process.stdout
    for fragment in fragments:
        assert fragment in process.stderr, process.stderr[-2000:]


def refused(prefix: Path, *fragments: str) -> str:
    """inspect and convert both refuse ``prefix`` with one clean paragraph."""
    index = f"{prefix}.index"
    for args in (
        ["inspect", str(prefix)],
        ["convert", str(prefix), "-m", "strip-optimizer", "-o", str(prefix.parent / "out")],
    ):
        message = clean_error(*args)
        assert message.startswith(f"error: {index} (variable 'w'): "), message
        for fragment in fragments:
            assert fragment in message, (fragment, message)
    assert not (prefix.parent / "out").exists()
    with pytest.raises(CorruptCheckpointError):
        open_checkpoint(prefix)
    return message


def slice_key(name: str, spec: str) -> str:
    start, length = PARTS[spec]
    return encode_slice_key(name, [(start, length), (0, None)])


def test_overlapping_slices_written_by_tf_are_refused(tf: Any, tmp_path: Path) -> None:
    prefix = partitioned(tf, tmp_path / "model.ckpt", ["0,7:-", "1,7:-", "2,7:-"])
    tf_refuses(prefix, "w", "Overlapping slices")
    refused(prefix, "overlapping slices 0,7:- and 1,7:-", "Overlapping slices")


def test_duplicate_slices_are_refused(tf: Any, tmp_path: Path) -> None:
    prefix = partitioned(tf, tmp_path / "model.ckpt")

    def repeat_first_slice(entries: dict[str, BundleEntry]) -> None:
        full = entries["w"]
        entries["w"] = full._replace(slices=(full.slices[0], *full.slices))

    rewrite_index(prefix, repeat_first_slice)
    tf_refuses(prefix, "w")  # TensorFlow aborts: a CHECK failure in its CheckpointReader
    refused(prefix, "overlapping slices 0,7:- and 0,7:-")


def test_duplicate_index_keys_are_refused(tf: Any, tmp_path: Path) -> None:
    prefix = partitioned(tf, tmp_path / "model.ckpt")
    rewrite_index(prefix, lambda entries: None, duplicate="w")
    refused(prefix, "the index holds this key twice")


def test_slices_that_do_not_cover_the_variable_are_refused(tf: Any, tmp_path: Path) -> None:
    prefix = partitioned(tf, tmp_path / "model.ckpt", ["0,7:-", "14,6:-"])
    tf_refuses(prefix, "w", "sufficient slices")
    refused(prefix, "cover 104 of the 160 elements")


def test_a_partitioned_entrys_own_offsets_are_ignored_as_tf_ignores_them(
    tf: Any, tmp_path: Path
) -> None:
    prefix = partitioned(tf, tmp_path / "model.ckpt")
    expected = tf.train.load_checkpoint(str(prefix)).get_tensor("w")

    def bogus_location(entries: dict[str, BundleEntry]) -> None:
        entries["w"] = entries["w"]._replace(shard_id=7, offset=-5, size=1 << 40)

    rewrite_index(prefix, bogus_location)
    np.testing.assert_array_equal(tf.train.load_checkpoint(str(prefix)).get_tensor("w"), expected)
    with open_checkpoint(prefix) as ckpt:
        np.testing.assert_array_equal(ckpt.reader.read("w"), expected)
    output = tmp_path / "out"
    code, _, err = run_cli("convert", str(prefix), "-m", "strip-optimizer", "-o", str(output))
    assert code == 0, err
    restored = tf.train.load_checkpoint(str(output / "model.ckpt")).get_tensor("w")
    np.testing.assert_array_equal(restored, expected)


SLICE_LIES = {
    # (what is changed, a fragment of our message)
    "slice outside the shape": (
        lambda e: {"w": e["w"]._replace(slices=(*e["w"].slices[:2], _rows(14, 9)))},
        "slice 14,9:- does not lie inside [20, 8]",
    ),
    "negative start": (
        lambda e: {"w": e["w"]._replace(slices=(_rows(-1, 7), *e["w"].slices[1:]))},
        "slice -1,7:- does not lie inside [20, 8]",
    ),
    "slice of the wrong rank": (
        lambda e: {"w": e["w"]._replace(slices=(TensorSlice((Extent(0, 7),)),))},
        "slice 0,7 does not lie inside [20, 8]",
    ),
    "slice listed but not stored": (
        lambda e: {slice_key("w", "7,7:-"): None},
        "slice 7,7:- is listed but not stored",
    ),
    "slice stored with another dtype": (
        lambda e: {slice_key("w", "7,7:-"): e[slice_key("w", "7,7:-")]._replace(dtype=3)},
        "slice 7,7:- is stored as int32 [7, 8], not float32 [7, 8]",
    ),
    "slice stored with another size": (
        lambda e: {slice_key("w", "7,7:-"): e[slice_key("w", "7,7:-")]._replace(shape=(7, 9))},
        "entry size 224 does not match float32 [7, 9] (252 bytes)",
    ),
    "slice stored as a partition itself": (
        lambda e: {
            slice_key("w", "7,7:-"): e[slice_key("w", "7,7:-")]._replace(slices=e["w"].slices)
        },
        "slice 0,7:- is listed but not stored",
    ),
    "2 GiB of zeros": (
        lambda e: {"w": e["w"]._replace(shape=(1 << 28, 8), slices=(_rows(0, 7),))},
        "cover 56 of the 2147483648 elements",
    ),
    "bogus shard of a sliced plain entry": (
        lambda e: {
            "step": e["step"]._replace(shard_id=9, offset=-3, size=-1, slices=(TensorSlice(()),))
        },
        "is listed but not stored",
    ),
}


def _rows(start: int, length: int) -> TensorSlice:
    return TensorSlice((Extent(start, length), Extent(0, None)))


@pytest.mark.parametrize("lie", SLICE_LIES)
def test_index_entries_lying_about_slices_are_refused(tf: Any, tmp_path: Path, lie: str) -> None:
    change, fragment = SLICE_LIES[lie]
    prefix = partitioned(tf, tmp_path / "model.ckpt")

    def edit(entries: dict[str, BundleEntry]) -> None:
        for key, entry in change(entries).items():
            if entry is None:
                del entries[key]
            else:
                entries[key] = entry

    rewrite_index(prefix, edit)
    variable = "step" if "plain entry" in lie else "w"
    if lie != "slice stored as a partition itself":
        # TF reads a slice's bytes ignoring a `slices` field on it; an entry both stored
        # and partitioned is refused here rather than guessed at.
        tf_refuses(prefix, variable)
    index = f"{prefix}.index"
    if lie in ("slice stored with another size", "slice stored as a partition itself"):
        variable = "w (slice 7,7:-)"
    message = clean_error("inspect", str(prefix))
    assert message.startswith(f"error: {index} (variable '{variable}'): "), message
    assert fragment in message, message
    with pytest.raises(CorruptCheckpointError):
        open_checkpoint(prefix)


@pytest.mark.parametrize(("dtype", "count"), [("string", 200_000_000), ("string", 1 << 62),
                                              ("variant", 1 << 40)])  # fmt: skip
def test_string_and_variant_counts_are_checked_before_allocating(
    tf: Any, tmp_path: Path, dtype: str, count: int
) -> None:
    prefix = tmp_path / "model.ckpt"
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=["s", "w"],
        shape_and_slices=["", ""],
        tensors=[tf.constant([b"ab"]), tf.constant([1.0])],
    )
    enum = {"string": 7, "variant": 21}[dtype]
    rewrite_index(prefix, lambda e: e.update(s=e["s"]._replace(dtype=enum, shape=(count,))))
    tf_refuses(prefix, "s")
    message = clean_error("inspect", str(prefix))
    assert f"(variable 's'): {dtype} [{count}] declares {count} elements" in message, message


# --- outputs the system refuses --------------------------------------------------------------


def _without_permission_override() -> list[str]:
    """A command prefix under which a directory's mode binds: root bypasses it, unless its
    capabilities to override permission checks are dropped (setpriv)."""
    if os.geteuid() != 0:
        return []
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only mode would not bind")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


def _bundle(directory: Path, names: tuple[str, ...]) -> Path:
    from ckptmigrate.formats.bundle_writer import BundleWriter

    with BundleWriter(directory, "model.ckpt") as writer:
        for name in names:
            writer.add_array(name, np.ones((2, 3), np.float32))
        return Path(writer.commit())


def test_suggest_into_a_read_only_directory_is_a_clean_error(tmp_path: Path) -> None:
    source = _bundle(tmp_path / "src", ("dense/kernel", "dense/bias"))
    target = _bundle(tmp_path / "target", ("dense_1/kernel", "dense_1/bias"))
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        done = subprocess.run(
            [
                *_without_permission_override(),
                *python_command("ckptmigrate"),
                "suggest",
                str(source),
                "--target",
                str(target),
                "-o",
                str(read_only / "fix.yaml"),
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        read_only.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    wanted = f"error: {read_only / 'fix.yaml'}: cannot write: Permission denied"
    assert done.stderr.strip() == wanted
    assert list(read_only.iterdir()) == []


# --- HDF5 targets: links ---------------------------------------------------------------------


def _legacy_h5(path: Path, link: Any = None, weights: tuple[str, ...] = ("kernel",)) -> Path:
    """A weights-only legacy Keras .h5, laid out as tf-keras' save_weights writes it; the
    first weight is ``link`` when given."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        f.attrs["backend"] = b"tensorflow"
        group = f.create_group("dense")
        names = [f"dense/{w}:0".encode() for w in weights]
        group.attrs["weight_names"] = names
        inner = group.create_group("dense")
        for i, weight in enumerate(weights):
            if i == 0 and link is not None:
                inner[f"{weight}:0"] = link
            else:
                inner[f"{weight}:0"] = np.ones((2, 3), np.float32)
    return path


def _keras3_h5(path: Path, link: Any) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        variables = f.create_group("layers/dense/vars")
        variables["0"] = link
        variables["1"] = np.ones(3, np.float32)
    return path


def _other_file(tmp_path: Path) -> Path:
    import h5py

    other = tmp_path / "elsewhere.h5"
    with h5py.File(other, "w") as f:
        f["secret"] = np.zeros((7, 7), np.float32)
    return other


@pytest.mark.parametrize("layout", ["legacy", "keras3", "soft link through it"])
def test_hdf5_external_links_are_refused_never_followed(tmp_path: Path, layout: str) -> None:
    import h5py

    other = _other_file(tmp_path)
    external = h5py.ExternalLink(str(other), "/secret")
    if layout == "legacy":
        target = _legacy_h5(tmp_path / "model.h5", external)
    elif layout == "keras3":
        target = _keras3_h5(tmp_path / "model.weights.h5", external)
    else:  # an in-file soft link whose path runs through an external link to a group
        target = _legacy_h5(tmp_path / "model.h5", h5py.SoftLink("/outside/secret"))
        with h5py.File(target, "a") as f:
            f["outside"] = h5py.ExternalLink(str(other), "/")
    source = _bundle(tmp_path / "src", ("dense/kernel",))
    message = clean_error("check", str(source), "--target", str(target))
    assert "is an HDF5 external link to /" in message
    assert f"in {other}; links into other files are refused, never followed" in message
    assert "Hint:" in message
    assert "[7, 7]" not in message  # nothing of the other file's content


@pytest.mark.parametrize("loop", ["itself", "a cycle of two"])
def test_hdf5_soft_link_loops_are_a_clean_error(tmp_path: Path, loop: str) -> None:
    import h5py

    if loop == "itself":
        target = _legacy_h5(tmp_path / "model.h5", h5py.SoftLink("/dense/dense/kernel:0"))
    else:
        target = _legacy_h5(tmp_path / "model.h5", h5py.SoftLink("/dense/dense/other"))
        with h5py.File(target, "a") as f:
            f["dense/dense/other"] = h5py.SoftLink("/dense/dense/kernel:0")
    source = _bundle(tmp_path / "src", ("dense/kernel",))
    message = clean_error("check", str(source), "--target", str(target))
    assert "is a soft link to /dense/dense/" in message
    assert "does not resolve (a link loop, or a missing object)" in message


def test_hdf5_soft_links_inside_the_file_are_followed_as_keras_follows_them(
    tmp_path: Path,
) -> None:
    import h5py

    target = _legacy_h5(
        tmp_path / "model.h5", h5py.SoftLink("/stored/kernel"), weights=("kernel", "bias")
    )
    with h5py.File(target, "a") as f:
        f["stored/kernel"] = np.ones((5, 4), np.float32)
    source = _bundle(tmp_path / "src", ("dense/kernel",))
    code, out, err = run_cli("check", str(source), "--target", str(target), "--json")
    assert code == 1, err
    found = {f["name"]: f["target"]["shape"] for f in json.loads(out)["findings"] if f["target"]}
    assert found["layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"] == [5, 4]


@pytest.mark.parametrize("damage", ["missing weight", "missing layer", "group as weight"])
def test_legacy_h5_name_lists_naming_what_is_not_there_are_clean_errors(
    tmp_path: Path, damage: str
) -> None:
    import h5py

    target = _legacy_h5(tmp_path / "model.h5")
    with h5py.File(target, "a") as f:
        if damage == "missing weight":
            del f["dense/dense/kernel:0"]
        elif damage == "missing layer":
            f.attrs["layer_names"] = [b"dense", b"gone"]
        else:
            del f["dense/dense/kernel:0"]
            f.create_group("dense/dense/kernel:0")
    source = _bundle(tmp_path / "src", ("dense/kernel",))
    message = clean_error("check", str(source), "--target", str(target))
    assert "list names" in message
    assert "the file is damaged, or was not written by Keras" in message


def test_a_full_model_h5_with_an_external_link_is_refused_before_keras_loads_it(
    tf: Any, tmp_path: Path
) -> None:
    import h5py

    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential([tf_keras.Input((3,)), tf_keras.layers.Dense(2, name="dense")])
    target = tmp_path / "model.h5"
    model.save(target)
    other = _other_file(tmp_path)
    with h5py.File(target, "a") as f:
        del f["model_weights/dense/dense/kernel:0"]
        f["model_weights/dense/dense/kernel:0"] = h5py.ExternalLink(str(other), "/secret")
    source = _bundle(tmp_path / "src", ("dense/kernel",))
    message = clean_error("check", str(source), "--target", str(target))
    assert "/model_weights/dense/dense/kernel:0 is an HDF5 external link" in message


# --- outputs inside the source ---------------------------------------------------------------

INSIDE = "the output is the source checkpoint's directory or inside it"
GIVEN = ["src/model.ckpt", "link/model.ckpt", "src/model.ckpt.index", "src", "link"]


def _inside_setup(tmp_path: Path) -> tuple[Path, Path]:
    source = _bundle(tmp_path / "src", ("dense/kernel",))
    (tmp_path / "link").symlink_to("src")
    mapping = tmp_path / "cast.yaml"
    mapping.write_text("version: 1\nrules:\n  - name: dense/kernel\n    cast: float64\n")
    return source, mapping


def _refused_inside(tmp_path: Path, given: str, output: str, mapping: Path) -> None:
    for extra in ([], ["--force"]):
        message = clean_error(
            "convert",
            str(tmp_path / given),
            "--map",
            str(mapping),
            "-o",
            str(tmp_path / output),
            *extra,
        )
        hint = "Hint: write the converted checkpoint somewhere else."
        assert message == f"error: {tmp_path / output}: {INSIDE} {hint}", extra
    # An identity copy (the API's rewrite_checkpoint) is refused alike.
    with pytest.raises(OutputError, match=INSIDE):
        rewrite_checkpoint(tmp_path / given, tmp_path / output, overwrite=True)


# A prefix's own name beside its files: `-o src/model.ckpt` made the prefix a directory,
# which the next read of `src/model.ckpt` took for the source; `model.ckpt.d` starts with it.
@pytest.mark.parametrize(
    "output", ["src", "link", "src/model.ckpt", "link/model.ckpt", "src/model.ckpt.d"]
)
@pytest.mark.parametrize("given", GIVEN)
def test_an_output_that_is_or_shadows_the_source_is_refused_however_it_is_given(
    tmp_path: Path, output: str, given: str
) -> None:
    source, mapping = _inside_setup(tmp_path)
    before = sorted(p.name for p in source.parent.iterdir())
    _refused_inside(tmp_path, given, output, mapping)
    assert sorted(p.name for p in source.parent.iterdir()) == before


@pytest.mark.parametrize("output", ["src/sub", "link/sub", "src/a/b/c"])
@pytest.mark.parametrize("given", ["src", "link"])
def test_a_source_given_as_a_directory_owns_everything_under_it(
    tmp_path: Path, output: str, given: str
) -> None:
    _, mapping = _inside_setup(tmp_path)
    _refused_inside(tmp_path, given, output, mapping)


def test_an_output_beside_a_prefix_sources_files_is_written(tmp_path: Path) -> None:
    # How a tf-keras save_weights('x.ckpt') checkpoint is converted where it lies.
    source, mapping = _inside_setup(tmp_path)
    for output in ("out", "src/converted", "link/other"):
        code, _, err = run_cli(
            "convert", str(source), "--map", str(mapping), "-o", str(tmp_path / output)
        )
        assert code == 0, err
        assert (tmp_path / output / "model.ckpt.index").is_file()


# --- a copied directory whose state file names the original ----------------------------------


def _saver_checkpoint(tf: Any, directory: Path) -> Path:
    """A TF1 Saver checkpoint: its state file records absolute paths."""
    tf1 = tf.compat.v1
    with tf.Graph().as_default():
        tf1.get_variable("v", initializer=np.arange(4, dtype=np.float32))
        saver = tf1.train.Saver()
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            return Path(saver.save(session, str(directory / "model.ckpt"), global_step=1))


def test_a_copied_directory_whose_state_file_names_the_original_says_so(
    tf: Any, tmp_path: Path
) -> None:
    import shutil

    original = _saver_checkpoint(tf, tmp_path / "orig")
    shutil.copytree(tmp_path / "orig", tmp_path / "copy")
    copy = tmp_path / "copy"
    assert (copy / "checkpoint").read_text().startswith(f'model_checkpoint_path: "{original}"')
    # TensorFlow reads the original while it exists: so do we, and say so.
    assert tf.train.latest_checkpoint(str(copy)) == str(original)
    assert open_checkpoint(copy).prefix == original
    warning = (
        f"the state file {copy / 'checkpoint'} records the absolute path {original}, outside "
        f"{copy}: that checkpoint is read, as TensorFlow's latest_checkpoint reads it, not "
        f"{copy / 'model.ckpt-1'} beside it; pass {copy / 'model.ckpt-1'} to read that one"
    )
    code, out, _ = run_cli("inspect", str(copy))
    assert code == 0
    assert f"note: {warning}" in " ".join(out.split())
    mapping = tmp_path / "rename.yaml"
    mapping.write_text("version: 1\nrules:\n  - name: v\n    rename: w\n")
    code, _, err = run_cli("convert", str(copy), "--map", str(mapping), "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert f"warning: {warning}" in " ".join(err.split())
    # Given the prefix beside the state file, the copy is read, and nothing is said.
    code, _, err = run_cli(
        "convert", str(copy / "model.ckpt-1"), "--map", str(mapping), "-o", str(tmp_path / "o2")
    )
    assert code == 0, err
    assert "warning" not in err


def test_a_copied_checkpoint_manager_directory_is_read_where_it_is(tf: Any, tmp_path: Path) -> None:
    import shutil

    checkpoint = tf.train.Checkpoint(v=tf.Variable(np.arange(3, dtype=np.float32)))
    tf.train.CheckpointManager(checkpoint, str(tmp_path / "orig"), 1).save()
    shutil.copytree(tmp_path / "orig", tmp_path / "copy")
    assert tf.train.latest_checkpoint(str(tmp_path / "copy")) == str(tmp_path / "copy" / "ckpt-1")
    location = open_checkpoint(tmp_path / "copy").location
    assert location.prefix == tmp_path / "copy" / "ckpt-1"
    assert location.warnings == ()


# --- a signal during start-up ----------------------------------------------------------------

# The console script's start (`from ckptmigrate.cli import main; main()`), with the signal
# sent to itself as a module named on the command line starts to import: the moment a
# Ctrl-C or a SIGTERM lands while typer loads, or a command's lazy import before its work.
_SIGNAL_AT_IMPORT = """
import importlib.abc, os, signal, sys
signum, module, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]

class SignalAt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == module:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signum)
        return None

sys.meta_path.insert(0, SignalAt())
sys.argv = ["ckptmigrate", *argv]
from ckptmigrate.cli import main
main()
"""


@pytest.mark.parametrize("signum", [2, 15], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(
    ("module", "command"),
    [
        ("typer", "inspect"),  # while the CLI module loads
        ("ckptmigrate.validate", "validate"),  # a command's own import, before its work
        ("ckptmigrate.inspection", "inspect"),
    ],
)
def test_a_signal_during_start_up_is_one_line_and_exit_130(
    tmp_path: Path, signum: int, module: str, command: str
) -> None:
    source = _bundle(tmp_path / "src", ("dense/kernel",))
    mapping = tmp_path / "m.yaml"
    mapping.write_text("version: 1\nrules:\n  - {name: dense/kernel, drop: true}\n")
    argument = str(mapping) if command == "validate" else str(source)
    done = subprocess.run(
        [sys.executable, "-c", _SIGNAL_AT_IMPORT, str(signum), module, command, argument],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert (done.returncode, done.stderr) == (130, "interrupted; nothing was written\n")
    assert done.stdout == ""


def test_importing_the_cli_leaves_the_signal_handlers_as_they_were() -> None:
    import signal

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import signal; import ckptmigrate.cli; "
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, "
            "signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.split() == ["True", "True"], done.stderr
    assert signal.getsignal(signal.SIGINT) is not None


def test_a_legacy_h5_models_lambda_layer_never_runs(tf: Any, tmp_path: Path) -> None:
    # tf-keras keeps a Lambda layer's Python as marshalled bytecode in a legacy .h5; loading
    # the model to learn its object paths ran it (`check --target model.h5` executed it).
    tf_keras = pytest.importorskip("tf_keras")
    marker = tmp_path / "ran"
    touch = str(marker)
    model = tf_keras.Sequential(
        [
            tf_keras.Input((3,)),
            tf_keras.layers.Dense(2, name="dense"),
            tf_keras.layers.Lambda(lambda x: x * (1 + 0 * len(open(touch, "a").name))),  # noqa: SIM115
        ]
    )
    target = tmp_path / "model.h5"
    model.save(target)
    marker.unlink(missing_ok=True)  # building and saving it ran it here
    source = _bundle(tmp_path / "src", ("dense/kernel",))
    code, out, err = run_cli("check", str(source), "--target", str(target))
    assert not marker.exists(), "the Lambda layer's code ran"
    assert code == 1, err
    notes = " ".join(out.split())
    assert "tf-keras could not load the model (ValueError: Requested the deserialization" in notes
    assert "object paths were inferred" in notes
