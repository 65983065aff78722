"""Map values out of their range are map errors (issue 12, low): a negative seed (numpy's
traceback at convert time), a nan or infinite mean/stddev, a constant fill its variable's
dtype cannot hold (numpy's cast made .inf into int64 INT64_MIN and 300 into uint8 44), and a
version that only equals 1 in Python (1.0, true). ``validate`` refuses what the map alone
shows; convert and its plan (--dry-run) refuse the rest once the variable's dtype is known.
Every refusal is file:line:column, the rule, a hint, exit 2, never a traceback. And the
vocabulary files of remap_rows: a FIFO hung, /dev/zero was a MemoryError, binary bytes a
UnicodeDecodeError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptmigrate.cli import app
from ckptmigrate.formats.bundle_reader import BundleReader
from ckptmigrate.formats.bundle_writer import BundleWriter
from ckptmigrate.mapping.schema import VOCAB_MAX_BYTES

runner = CliRunner()


def _source(directory: Path) -> Path:
    with BundleWriter(directory, "model.ckpt") as writer:
        writer.add_array("f", np.arange(2, dtype=np.float16))
        writer.add_array("i", np.arange(2, dtype=np.int64))
        writer.add_array("u", np.arange(2, dtype=np.uint8))
        return Path(writer.commit())


def _refused(result: object, *needles: str) -> None:
    output = getattr(result, "output", "")
    assert getattr(result, "exit_code", None) == 2, output
    assert getattr(result, "exception", None) is None or isinstance(
        getattr(result, "exception", None), SystemExit
    ), output
    assert "Traceback" not in output
    assert "Hint:" in output
    for needle in needles:
        assert needle in output, output


# What the map alone shows is wrong: validate refuses it, and so does convert.
MAP_ALONE = {
    "negative seed": ("init: {name: n, shape: [2], fill: normal, seed: -1}", "seed must be"),
    "seed past 64 bits": (
        "init: {name: n, shape: [2], fill: normal, seed: 18446744073709551616}",
        "seed must be",
    ),
    "nan stddev": ("init: {name: n, shape: [2], fill: normal, stddev: .nan}", "stddev must"),
    "infinite mean": ("init: {name: n, shape: [2], fill: normal, mean: -.inf}", "mean must"),
    "inf into int64": (
        "init: {name: n, shape: [2], dtype: int64, fill: constant, value: .inf}",
        "int64 holds whole numbers",
    ),
    "nan into int32": (
        "init: {name: n, shape: [2], dtype: int32, fill: constant, value: .nan}",
        "int32 holds whole numbers",
    ),
    "300 into uint8": (
        "init: {name: n, shape: [2], dtype: uint8, fill: constant, value: 300}",
        "does not fit uint8 (0..255)",
    ),
    "-129 into int8": (
        "init: {name: n, shape: [2], dtype: int8, fill: constant, value: -129}",
        "does not fit int8 (-128..127)",
    ),
    "a fraction into int8": (
        "init: {name: n, shape: [2], dtype: int8, fill: constant, value: 0.5}",
        "int8 holds whole numbers",
    ),
    "2 into bool": (
        "init: {name: n, shape: [2], dtype: bool, fill: constant, value: 2}",
        "does not fit bool",
    ),
    "1e6 into float16": (
        "init: {name: n, shape: [2], dtype: float16, fill: constant, value: 1.0e+6}",
        "beyond the largest float16",
    ),
    "1000 into float8_e4m3fn": (
        "init: {name: n, shape: [2], dtype: float8_e4m3fn, fill: constant, value: 1000}",
        "beyond the largest float8_e4m3fn",
    ),
}


@pytest.mark.parametrize("case", sorted(MAP_ALONE))
def test_values_out_of_range_in_the_map_are_refused_by_validate_and_convert(
    tmp_path: Path, case: str
) -> None:
    rule, message = MAP_ALONE[case]
    map_file = tmp_path / "m.yaml"
    map_file.write_text(f"version: 1\nrules:\n  - {rule}\n")
    _refused(runner.invoke(app, ["validate", str(map_file)]), f"{map_file}:3:", message)
    source = _source(tmp_path / "src")
    out = tmp_path / "out"
    for extra in (["--dry-run"], ["-o", str(out)]):
        result = runner.invoke(app, ["convert", str(source), "--map", str(map_file), *extra])
        _refused(result, f"{map_file}:3:", message)
    assert not out.exists()


@pytest.mark.parametrize("version", ["1.0", "true", "'1'"])
def test_a_version_that_only_equals_1_in_python_is_refused(tmp_path: Path, version: str) -> None:
    map_file = tmp_path / "m.yaml"
    map_file.write_text(f"version: {version}\nrules:\n  - {{name: f, drop: true}}\n")
    _refused(
        runner.invoke(app, ["validate", str(map_file)]),
        f"{map_file}:1:10",
        "unsupported map version",
    )


# Right or wrong only for the variable's dtype: the plan refuses it, naming rule and variable.
FOR_THE_DTYPE = {
    "inf padded into int64": ("i", "pad: {shape: [3], fill: constant, value: .inf}", "int64"),
    "300 padded into uint8": ("u", "pad: {shape: [3], fill: constant, value: 300}", "uint8"),
    "-1 remapped into uint8": (
        "u",
        "remap_rows: {old_vocab: old.txt, new_vocab: new.txt, fill: constant, value: -1}",
        "uint8",
    ),
    "70000 padded into float16": (
        "f",
        "pad: {shape: [3], fill: constant, value: 70000}",
        "float16",
    ),
}


@pytest.mark.parametrize("case", sorted(FOR_THE_DTYPE))
def test_fills_the_variables_dtype_cannot_hold_are_refused_by_the_plan(
    tmp_path: Path, case: str
) -> None:
    name, operation, dtype = FOR_THE_DTYPE[case]
    (tmp_path / "old.txt").write_text("a\nb\n")
    (tmp_path / "new.txt").write_text("b\nc\na\n")
    map_file = tmp_path / "m.yaml"
    map_file.write_text(f"version: 1\nrules:\n  - name: {name}\n    {operation}\n")
    source = _source(tmp_path / "src")
    out = tmp_path / "out"
    for extra in (["--dry-run"], ["-o", str(out)]):
        result = runner.invoke(app, ["convert", str(source), "--map", str(map_file), *extra])
        _refused(result, f"{map_file}:3:", f"rule 1, variable '{name}'", dtype)
    assert not out.exists()


def test_values_at_the_edges_of_their_dtype_are_written_exactly(tmp_path: Path) -> None:
    map_file = tmp_path / "m.yaml"
    map_file.write_text(
        "version: 1\nrules:\n"
        "  - name: i\n    pad: {shape: [3], fill: constant, value: 9223372036854775807}\n"
        "  - name: u\n    pad: {shape: [3], fill: constant, value: 255}\n"
        "  - name: f\n    pad: {shape: [4], fill: constant, value: -.inf}\n"
        "  - init: {name: n, shape: [2], fill: normal, seed: 18446744073709551615}\n"
        "  - init: {name: m, shape: [1], dtype: int8, fill: constant, value: -128.0}\n"
    )
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["convert", str(_source(tmp_path / "src")), "--map", str(map_file), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    reader = BundleReader(out / "model.ckpt")
    assert reader.read("i").tolist() == [0, 1, 2**63 - 1]
    assert reader.read("u").tolist() == [0, 1, 255]
    assert reader.read("f").tolist() == [0.0, 1.0, -np.inf, -np.inf]
    assert np.isfinite(reader.read("n")).all()
    assert reader.read("m").tolist() == [-128]


# -- remap_rows vocabulary files -------------------------------------------------------------

# A child under an address-space limit of its start-up size plus 512 MiB: /dev/zero read
# whole was a MemoryError traceback there (and the OOM killer without a limit).
_VALIDATE_UNDER_LIMIT = """
import resource, sys
from ckptmigrate.cli import main
for line in open("/proc/self/status"):
    if line.startswith("VmSize:"):
        limit = int(line.split()[1]) * 1024 + (512 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv = ["ckptmigrate", "validate", sys.argv[1]]
main()
"""


def _vocab_map(tmp_path: Path, old_vocab: str) -> Path:
    (tmp_path / "new.txt").write_text("b\na\n")
    map_file = tmp_path / "m.yaml"
    map_file.write_text(
        "version: 1\nrules:\n  - name: e\n"
        f"    remap_rows: {{old_vocab: '{old_vocab}', new_vocab: new.txt}}\n"
    )
    return map_file


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_vocabulary_that_is_not_a_regular_file_is_refused_unread(
    tmp_path: Path, kind: str
) -> None:
    if kind == "fifo":
        os.mkfifo(tmp_path / "old.txt")  # no writer: opening it for reading waited forever
        vocab = "old.txt"
    else:
        vocab = kind
    map_file = _vocab_map(tmp_path, vocab)
    done = subprocess.run(
        [sys.executable, "-c", _VALIDATE_UNDER_LIMIT, str(map_file)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,  # a guard against the hang this tests, not a time asserted
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{map_file}:4:" in done.stderr
    assert "not a regular file" in done.stderr
    assert "Hint:" in done.stderr


def test_a_vocabulary_too_large_or_not_text_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("wb") as f:  # sparse: refused by its size, nothing read
        f.truncate(VOCAB_MAX_BYTES + 1)
    _refused(runner.invoke(app, ["validate", str(_vocab_map(tmp_path, "big.txt"))]), "over 256 MiB")
    (tmp_path / "bin.txt").write_bytes(b"token\n\xff\xfe\n")
    _refused(
        runner.invoke(app, ["validate", str(_vocab_map(tmp_path, "bin.txt"))]),
        "not UTF-8 text (byte 0xff at offset 6)",
    )
