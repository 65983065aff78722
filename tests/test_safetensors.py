"""safetensors in and out (issue 15, item 1), with the format's reference implementation
(the safetensors package) as the oracle: what it writes we read bit for bit, what we write
it reads bit for bit, sharded outputs follow the Hugging Face index convention, and a bad
file is a clean error."""

from __future__ import annotations

import functools
import json
import struct
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from helpers import assert_damaged_copies_fail_cleanly, same_bits
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import ckptmigrate
from ckptmigrate.cli import app
from ckptmigrate.errors import CkptMigrateError

safetensors_numpy = pytest.importorskip("safetensors.numpy")
runner = CliRunner()

DTYPES = [
    np.dtype(t)
    for t in (
        "float32",
        "float64",
        "float16",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool",
        "complex64",
    )
] + [
    np.dtype(ml_dtypes.bfloat16),
    np.dtype(ml_dtypes.float8_e4m3fn),
    np.dtype(ml_dtypes.float8_e5m2),
]


def _array(rng: np.random.Generator, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
    if dtype == np.bool_:
        raw = raw % 2
    return raw.view(dtype).reshape(shape)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    specs=st.lists(
        st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 5), max_size=3)),
        min_size=1,
        max_size=8,
    ),
)
def test_what_the_reference_writes_we_read_bit_for_bit(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    specs: list[tuple[np.dtype[Any], list[int]]],
) -> None:
    rng = np.random.default_rng(seed)
    tensors = {
        f"t{i}/w": _array(rng, dtype, tuple(shape)) for i, (dtype, shape) in enumerate(specs)
    }
    path = tmp_path_factory.mktemp("st") / "m.safetensors"
    safetensors_numpy.save_file(tensors, str(path), metadata={"format": "pt", "k": "v"})
    with ckptmigrate.open_checkpoint(path) as ckpt:
        assert sorted(ckpt.keys()) == sorted(tensors)
        for key, value in tensors.items():
            got = ckpt.read(key)
            assert got.dtype == value.dtype, key
            assert same_bits(got, value), key
        assert ckpt.reader.metadata == {"format": "pt", "k": "v"}


def _source(tmp_path: Path) -> Path:
    """A TensorBundle checkpoint (ckptmigrate's own writer, which TensorFlow reads: see
    test_writer) with model and optimizer state, a step counter and a string."""
    rng = np.random.default_rng(0)
    with ckptmigrate.BundleWriter(tmp_path / "src", "model.ckpt") as writer:
        for i in range(4):
            writer.add_array(f"dense_{i}/kernel", rng.standard_normal((8, 6 + i)).astype("f4"))
            writer.add_array(f"dense_{i}/kernel/Adam", np.ones((8, 6 + i), "f4"))
            writer.add_array(
                f"dense_{i}/bias", rng.standard_normal(6 + i).astype(ml_dtypes.bfloat16)
            )
        writer.add_array("global_step", np.array(12, np.int64))
        writer.add_array("vocab", np.array([b"a", b"b"], dtype=object))
        return Path(writer.commit())


TO_TORCH_NAMES = """version: 1
rules:
  - {role: [optimizer, step], drop: true}
  - {name: vocab, drop: true}
  - {match: 'dense_(\\d+)/kernel', transpose: [1, 0]}
  - {match: 'dense_(\\d+)/(kernel|bias)', rename: 'layers.{1}.{2}'}
  - {match: 'layers\\.(\\d+)\\.kernel', rename: 'layers.{1}.weight'}
"""


def _expected(source: Path) -> dict[str, np.ndarray]:
    with ckptmigrate.open_checkpoint(source) as ckpt:
        out = {}
        for i in range(4):
            out[f"layers.{i}.weight"] = ckpt.read(f"dense_{i}/kernel").T
            out[f"layers.{i}.bias"] = ckpt.read(f"dense_{i}/bias")
        return out


@pytest.mark.parametrize("shards", [None, {"num_shards": 3}, {"max_shard_size": "300B"}])
def test_the_reference_reads_what_we_write(tmp_path: Path, shards: dict[str, Any] | None) -> None:
    source = _source(tmp_path)
    (tmp_path / "m.yaml").write_text(TO_TORCH_NAMES)
    result = ckptmigrate.convert(
        source,
        tmp_path / "m.yaml",
        tmp_path / "out" / "model.safetensors",
        format="safetensors",
        verify=True,
        **(shards or {}),
    )
    assert result.verification is not None
    assert result.verification.ok, result.verification.verdict
    assert "safetensors package" in result.verification.verdict
    expected = _expected(source)
    if shards is None:
        files = [tmp_path / "out" / "model.safetensors"]
    else:
        index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
        files = sorted({tmp_path / "out" / f for f in index["weight_map"].values()})
        assert len(files) > 1
        assert all(
            f.name.startswith("model-0000") and f.name.endswith(f"-of-0000{len(files)}.safetensors")
            for f in files
        )
        assert index["metadata"]["total_size"] == sum(v.nbytes for v in expected.values())
        for key, name in index["weight_map"].items():
            assert key in safetensors_numpy.load_file(str(tmp_path / "out" / name))
    got: dict[str, np.ndarray] = {}
    for f in files:
        got.update(safetensors_numpy.load_file(str(f)))
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype
        assert same_bits(got[key], value), key
    from safetensors import safe_open

    with safe_open(str(files[0]), framework="np") as f:
        metadata = f.metadata()
    assert metadata["format"] == "pt"
    assert metadata["producer"].startswith("ckptmigrate ")


def test_check_compares_a_safetensors_model_with_a_checkpoint(tmp_path: Path) -> None:
    source = _source(tmp_path)
    (tmp_path / "m.yaml").write_text("version: 1\nrules:\n  - {name: vocab, drop: true}\n")
    ckptmigrate.convert(
        source, tmp_path / "m.yaml", tmp_path / "a.safetensors", format="safetensors"
    )
    report = ckptmigrate.check(tmp_path / "a.safetensors", source, values=True)
    assert report.ok is False  # the checkpoint holds vocab, which the file lacks
    report = ckptmigrate.check(source, tmp_path / "a.safetensors", values=True)
    assert report.ok, report.headline
    assert not any(f.values and not f.values.identical for f in report.findings)


def test_what_safetensors_cannot_hold_is_refused_before_writing(tmp_path: Path) -> None:
    source = _source(tmp_path)
    out = tmp_path / "model.safetensors"
    base = ["convert", str(source), "--format", "safetensors", "-o"]
    (tmp_path / "keep.yaml").write_text(
        "version: 1\nrules:\n  - {match: '.*', keep: true}\n".replace(
            "{match: '.*', keep: true}", "{keep: ['.*']}"
        )
    )
    builder = tmp_path / "builder.py"  # a builder's model is judged once built
    builder.write_text("def build():\n    return object()\n")
    cases = [
        (
            [*base, str(out), "--map", str(tmp_path / "keep.yaml")],
            "'vocab' is string, which safetensors cannot hold",
        ),
        (
            [*base, str(tmp_path / "model.bin"), "--map", "strip-optimizer"],
            "must be named *.safetensors",
        ),
        (
            [*base, str(out), "--map", "strip-optimizer", "--target", f"{builder}:build"],
            "not from a model",
        ),
    ]
    for args, said in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert said in result.stderr
        assert not out.exists()


def _valid(tmp_path: Path) -> bytes:
    path = tmp_path / "v.safetensors"
    safetensors_numpy.save_file(
        {"a": np.arange(6, dtype="f4").reshape(2, 3), "b": np.array([1, 2], "i8")}, str(path)
    )
    return path.read_bytes()


def _with_header(header: dict[str, Any] | str, data: bytes) -> bytes:
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "shorter than a safetensors header"),
        (struct.pack("<Q", 2**40) + b"{}", "the header claims"),
        (_with_header("{not json", b""), "not valid JSON"),
        (
            _with_header(
                '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                '"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
                b"\0" * 4,
            ),
            "appears twice",
        ),
        (
            _with_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),
            "is 8 bytes, not 4",
        ),
        (
            _with_header(
                {
                    "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]},
                },
                b"\0" * 6,
            ),
            "overlap",
        ),
        (
            _with_header({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
            "gap",
        ),
        (
            _with_header({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 9),
            "the data ends at byte",
        ),
        (
            _with_header({"a": {"dtype": "STR", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
            "dtype 'STR' is not one",
        ),
        (
            _with_header({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
            "non-negative integers",
        ),
        (_with_header({"__metadata__": {"a": 1}}, b""), "__metadata__ must map strings"),
    ],
)
def test_a_bad_file_is_a_clean_error(tmp_path: Path, content: bytes, said: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2, result.output
    assert said in result.stderr
    assert "Traceback" not in result.output


def test_an_index_may_not_name_files_elsewhere_or_tensors_they_lack(tmp_path: Path) -> None:
    (tmp_path / "v.safetensors").write_bytes(_valid(tmp_path))
    for weight_map, said in (
        ({"a": "../v.safetensors"}, "outside its directory"),
        ({"a": "v.safetensors", "zz": "v.safetensors"}, "which it does not"),
    ):
        index = tmp_path / "m.safetensors.index.json"
        index.write_text(json.dumps({"weight_map": weight_map}))
        with pytest.raises(CkptMigrateError, match=said):
            ckptmigrate.open_checkpoint(index)


def test_mutated_files_give_only_clean_errors(tmp_path: Path) -> None:
    valid = _valid(tmp_path)
    assert_damaged_copies_fail_cleanly(valid, tmp_path / "m.safetensors", seed=5, count=500)


def test_a_safetensors_model_is_a_target_that_names_the_output(tmp_path: Path) -> None:
    """A model's own safetensors file (a Hugging Face checkpoint, say) as the target: check
    compares against it, and convert writes exactly its tensors under its names."""
    source = _source(tmp_path)
    (tmp_path / "m.yaml").write_text(TO_TORCH_NAMES)
    reference = tmp_path / "ref" / "model.safetensors"
    ckptmigrate.convert(source, tmp_path / "m.yaml", reference, format="safetensors")
    report = ckptmigrate.check(source, reference)
    assert not report.ok  # other names, other layout
    (tmp_path / "names.yaml").write_text(
        TO_TORCH_NAMES.replace("  - {name: vocab, drop: true}\n", "")
    )
    result = ckptmigrate.convert(
        source,
        tmp_path / "names.yaml",
        tmp_path / "out.safetensors",
        target=reference,
        format="safetensors",
        verify=True,
    )
    assert result.verification is not None
    assert result.verification.ok
    got = safetensors_numpy.load_file(str(tmp_path / "out.safetensors"))
    want = safetensors_numpy.load_file(str(reference))
    assert sorted(got) == sorted(want)  # vocab left out: the target has no such tensor
    assert all(same_bits(got[k], want[k]) for k in want)
    assert ckptmigrate.check(tmp_path / "out.safetensors", reference, values=True).ok


def test_a_checkpoint_converted_from_a_file_is_named_after_its_stem(tmp_path: Path) -> None:
    source = _source(tmp_path)
    (tmp_path / "m.yaml").write_text("version: 1\nrules:\n  - {name: vocab, drop: true}\n")
    ckptmigrate.convert(
        source, tmp_path / "m.yaml", tmp_path / "model.safetensors", format="safetensors"
    )
    result = ckptmigrate.convert(
        tmp_path / "model.safetensors", "strip-optimizer", tmp_path / "out"
    )
    assert Path(str(result.prefix)).name == "model"
    assert (tmp_path / "out" / "model.index").is_file()


def test_inspect_calls_a_safetensors_file_by_its_format(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file({"w": np.zeros((2, 3), "float32")}, str(path))
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    heading = result.output.splitlines()[0]
    assert heading.endswith("  safetensors file")
    assert "checkpoint" not in heading  # it has no shards or naming scheme to speak of


def test_check_says_a_safetensors_file_is_named_by_its_tensor_names(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file({"w": np.zeros((2, 3), "float32")}, str(path))
    result = runner.invoke(app, ["check", str(path), "--target", str(path)])
    assert result.exit_code == 0, result.output
    assert f"checkpoint: {path} (safetensors tensor names)" in result.output
    assert "tf.compat.v1" not in result.output  # it has nothing to do with a TF1 Saver
    data = json.loads(runner.invoke(app, ["check", str(path), "-t", str(path), "--json"]).stdout)
    assert data["checkpoint"]["naming"] == data["target"]["naming"] == "safetensors tensor names"


def test_without_the_safetensors_package_verify_reads_back_with_our_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ckptmigrate.formats.safetensors import SafetensorsReader

    monkeypatch.setitem(sys.modules, "safetensors", None)  # `import safetensors` fails
    source = _source(tmp_path)
    (tmp_path / "m.yaml").write_text(TO_TORCH_NAMES)
    convert = functools.partial(
        ckptmigrate.convert, source, tmp_path / "m.yaml", format="safetensors", verify=True
    )
    result = convert(tmp_path / "a.safetensors")
    assert result.verification is not None
    assert result.verification.ok, result.verification.verdict
    assert "ckptmigrate's own safetensors reader" in result.verification.how

    read = SafetensorsReader.read
    monkeypatch.setattr(SafetensorsReader, "read", lambda self, key: read(self, key) + 1)
    result = convert(tmp_path / "b.safetensors")
    assert result.verification is not None
    assert not result.verification.ok
    assert result.verification.mismatched
