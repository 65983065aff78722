"""PyTorch state_dict files read without torch (issue 15, item 2), with torch itself as the
oracle: what torch.save writes reads bit for bit as torch.load(weights_only=True) loads it,
and what a state_dict may not hold is a clean one-paragraph error."""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import assert_damaged_copies_fail_cleanly
from typer.testing import CliRunner

import ckptmigrate
from ckptmigrate.cli import app
from ckptmigrate.errors import CkptMigrateError

torch = pytest.importorskip("torch")
runner = CliRunner()


def _bits(tensor: Any) -> bytes:
    """A tensor's values as bytes, C-ordered (views gathered)."""
    flat = tensor.contiguous().reshape(-1)
    return bytes(flat.view(torch.uint8).numpy()) if flat.numel() else b""


def _state_dict() -> dict[str, Any]:
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(6, 8, generator=gen)
    shared = torch.arange(40, dtype=torch.int64)
    sd: dict[str, Any] = collections.OrderedDict()
    for dtype in (
        torch.float32,
        torch.float64,
        torch.float16,
        torch.bfloat16,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.uint8,
        torch.uint16,
        torch.uint32,
        torch.uint64,
        torch.bool,
        torch.complex64,
        torch.float8_e4m3fn,
        torch.float8_e5m2,
    ):
        name = str(dtype).removeprefix("torch.")
        sd[f"{name}.weight"] = (torch.randn(3, 5, generator=gen) * 50).to(dtype)
        sd[f"{name}.scalar"] = torch.tensor(7).to(dtype)
        sd[f"{name}.empty"] = torch.zeros(0, 4, dtype=dtype)
    sd["nan"] = torch.tensor([float("nan"), -0.0, float("inf")])
    sd["view.transposed"] = base.t()  # torch.save keeps the stride (1, 8)
    sd["view.sliced"] = base[1:5:2, 3:]  # an offset into the shared storage, strided rows
    sd["view.base"] = base
    sd["shared.a"] = shared[:10]  # two tensors on one storage
    sd["shared.b"] = shared[10:].reshape(5, 6)
    sd["expand.ok"] = torch.ones(1, 4).expand(1, 4)  # stride 0 on a size-1 axis
    return sd


def test_every_tensor_reads_as_torch_loads_it(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(_state_dict(), path)
    loaded = torch.load(path, weights_only=True)
    with ckptmigrate.open_checkpoint(path) as ckpt:
        assert ckpt.keys() == sorted(loaded)
        for key, tensor in loaded.items():
            value = ckpt.read(key)
            assert value.shape == tuple(tensor.shape), key
            assert ckpt.dtypes()[key] == str(tensor.dtype).removeprefix("torch."), key
            assert np.ascontiguousarray(value).tobytes() == _bits(tensor), key
        assert ckpt.reader.verify() > 0


def test_a_parameter_dict_and_big_endian_byteorder_read_too(tmp_path: Path) -> None:
    """A dict of nn.Parameters (model.named_parameters() saved as a dict), and a file whose
    byteorder record says big: values are byte-swapped into native order."""
    params = {"w": torch.nn.Parameter(torch.arange(6.0).reshape(2, 3))}
    path = tmp_path / "params.pt"
    torch.save(params, path)
    with ckptmigrate.open_checkpoint(path) as ckpt:
        assert ckpt.read("w").tolist() == [[0, 1, 2], [3, 4, 5]]
    # Rewrite the archive: byteorder big, storage bytes swapped, as a big-endian host saves.
    big = tmp_path / "big.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(big, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                data = np.frombuffer(data, "<f4").astype(">f4").tobytes()
            dst.writestr(info.filename, data)
    with ckptmigrate.open_checkpoint(big) as ckpt:
        assert ckpt.read("w").tolist() == [[0, 1, 2], [3, 4, 5]]


def test_a_state_dict_file_is_a_source_and_a_target(tmp_path: Path) -> None:
    """inspect and check read it; convert writes safetensors from it; as --target it names
    the output, and check --target compares against it."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    path = tmp_path / "pytorch_model.bin"
    torch.save(model.state_dict(), path)
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "0.weight" in result.stdout
    out = tmp_path / "out" / "model.safetensors"
    result = runner.invoke(
        app,
        [
            "convert",
            str(path),
            "--target",
            str(path),
            "-o",
            str(out),
            "--format",
            "safetensors",
            "--verify",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["check", str(out), "--target", str(path)])
    assert result.exit_code == 0, result.output
    from safetensors.torch import load_file

    fresh = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    fresh.load_state_dict(load_file(out), strict=True)
    x = torch.randn(5, 4)
    assert torch.equal(fresh(x), model(x))
    # A target missing a tensor the source has: check says so.
    smaller = dict(model.state_dict())
    del smaller["2.bias"]
    torch.save(smaller, tmp_path / "smaller.pt")
    report = ckptmigrate.check(path, tmp_path / "smaller.pt")
    assert not report.ok or "2.bias" in str(report.to_dict())


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("ran",))


def _rezip(tmp_path: Path, pickled: bytes, name: str = "bad.pt") -> Path:
    """A torch.save-shaped archive with ``pickled`` as its data.pkl (and one storage)."""
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickled)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", b"\0" * 16)
        z.writestr("archive/version", "3\n")
    return path


def _tensor_pickle(size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0) -> bytes:
    """data.pkl of {'w': a float32 tensor on storage 0 (4 elements)} as torch writes it."""
    storage = torch.zeros(4).untyped_storage()
    buffer = io.BytesIO()
    tensor = torch.empty(0).set_(storage, offset, size, stride) if size else torch.zeros(4)
    torch.save({"w": tensor}, buffer)
    with zipfile.ZipFile(buffer) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (pickle.dumps({"w": _Evil()}, protocol=2), "__builtin__.print, which is not part of"),
        (pickle.dumps({"epoch": 3}, protocol=2), "'epoch'): the entry is a int, not a tensor"),
        (pickle.dumps({"model": {}}, protocol=2), "a training checkpoint holding a state_dict"),
        (pickle.dumps([1, 2], protocol=2), "holds a list, not a state_dict"),
        (b"\x80\x02garbage", "cannot be unpickled"),
    ],
)
def test_what_a_state_dict_cannot_hold_is_refused(
    tmp_path: Path, content: bytes, said: str
) -> None:
    result = runner.invoke(app, ["inspect", str(_rezip(tmp_path, content))])
    assert result.exit_code == 2, result.output
    assert said in result.stderr.replace("\n", " ")
    assert "ran" not in result.output
    assert "Traceback" not in result.output


def test_views_beyond_their_storage_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buffer)
    with zipfile.ZipFile(buffer) as z:
        pickled = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    # Patch the recorded size (4,) into (9,): past the 4-element storage.
    assert pickled.count(b"K\x04\x85") == 1
    too_long = pickled.replace(b"K\x04\x85", b"K\x09\x85")
    with pytest.raises(CkptMigrateError, match="reaches element 8 of storage '0', which has 4"):
        ckptmigrate.open_checkpoint(_rezip(tmp_path, too_long))
    # A stride-0 view repeating one element 9 times: more than its storage holds.
    storage = torch.zeros(4).untyped_storage()
    buffer = io.BytesIO()
    torch.save({"w": torch.empty(0).set_(storage, 0, (9,), (0,))}, buffer)
    (tmp_path / "repeat.pt").write_bytes(buffer.getvalue())
    with pytest.raises(CkptMigrateError, match=r"repeats the 4 elements .* tensor.contiguous\(\)"):
        ckptmigrate.open_checkpoint(tmp_path / "repeat.pt")


def test_other_pytorch_files_are_named_and_refused(tmp_path: Path) -> None:
    legacy = tmp_path / "old.pt"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    compressed = tmp_path / "compressed.pt"
    torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pt")
    with (
        zipfile.ZipFile(tmp_path / "plain.pt") as src,
        zipfile.ZipFile(compressed, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    for path, said in (
        (legacy, "the format torch.save wrote before 1.6"),
        (scripted, "TorchScript archive"),
        (compressed, "compressed or encrypted"),
    ):
        result = runner.invoke(app, ["inspect", str(path)])
        assert result.exit_code == 2, result.output
        assert said in result.stderr.replace("\n", " "), result.stderr
        assert "Traceback" not in result.output


def test_a_damaged_storage_fails_its_crc(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save({"w": torch.arange(64.0)}, path)
    data = bytearray(path.read_bytes())
    at = data.index(np.arange(64.0, dtype="<f4").tobytes())
    data[at + 100] ^= 0xFF
    path.write_bytes(bytes(data))
    result = runner.invoke(app, ["inspect", str(path), "--check-crc"])
    assert result.exit_code == 2, result.output
    assert "does not match the CRC-32" in result.stderr


def test_mutated_files_give_only_clean_errors(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(
        {"a": torch.arange(6.0).reshape(2, 3).t(), "b": torch.ones(3, dtype=torch.int64)}, buffer
    )
    valid = buffer.getvalue()
    assert_damaged_copies_fail_cleanly(valid, tmp_path / "m.pt", seed=7, count=300)


def test_a_memo_index_past_the_pickles_length_is_refused(tmp_path: Path) -> None:
    """The unpickler sizes its memo table by the largest index it is given: a 1 KB file
    putting a value at index 120,000,000 took 1.9 GB (found by the fuzz soak)."""
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buffer)
    original = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    pickled = next(n for n in original.namelist() if n.endswith("data.pkl"))
    data = original.read(pickled)
    at = data.index(pickle.EMPTY_DICT) + 1
    evil = data[:at] + pickle.LONG_BINPUT + (120_000_000).to_bytes(4, "little") + data[at:]
    path = tmp_path / "memo.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        for name in original.namelist():
            out.writestr(name, evil if name == pickled else original.read(name))
    with pytest.raises(CkptMigrateError, match="memo index 120000000"):
        ckptmigrate.open_checkpoint(path)
