"""--format torch (issue 15, item 2): a torch.save file written natively, streamed tensor by
tensor, which torch.load(weights_only=True) loads bit for bit (torch is the oracle), and
which a PyTorch module target verifies by load_state_dict(strict=True)."""

from __future__ import annotations

import functools
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from typer.testing import CliRunner

import ckptmigrate
from ckptmigrate.cli import app

torch = pytest.importorskip("torch")
runner = CliRunner()

DTYPES = (
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
    "complex128",
)


def _source(tmp_path: Path) -> Path:
    """A checkpoint (ckptmigrate's own writer) of every dtype, scalars and empty tensors."""
    rng = np.random.default_rng(0)
    with ckptmigrate.BundleWriter(tmp_path / "src", "model.ckpt") as writer:
        for name in DTYPES:
            value = (rng.standard_normal((3, 4)) * 40).astype(name)
            writer.add_array(f"{name}/weight", value)
            writer.add_array(f"{name}/scalar", value[0, 0])
            writer.add_array(f"{name}/empty", np.zeros((0, 2), name))
        for name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
            writer.add_array(
                f"{name}/weight", rng.standard_normal((5, 2)).astype(getattr(ml_dtypes, name))
            )
        writer.add_array("nan", np.array([np.nan, -0.0, np.inf], np.float32))
        return Path(writer.commit())


def _bits(tensor: object) -> bytes:
    flat = tensor.contiguous().reshape(-1)  # type: ignore[attr-defined]
    return bytes(flat.view(torch.uint8).numpy()) if flat.numel() else b""


def test_torch_load_reads_what_is_written_bit_for_bit(tmp_path: Path) -> None:
    source = _source(tmp_path)
    out = tmp_path / "out" / "pytorch_model.bin"
    result = runner.invoke(
        app,
        [
            "convert",
            str(source),
            "--map",
            "strip-optimizer",
            "--format",
            "torch",
            "-o",
            str(out),
            "--verify",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "read back with torch.load(weights_only=True)" in result.output
    loaded = torch.load(out, weights_only=True)
    with ckptmigrate.open_checkpoint(source) as ckpt, ckptmigrate.open_checkpoint(out) as ours:
        assert sorted(loaded) == ckpt.keys() == ours.keys()
        for key in ckpt.keys():  # noqa: SIM118 (a method, not a dict)
            want = np.asarray(ckpt.read(key))
            assert tuple(loaded[key].shape) == want.shape, key
            assert str(loaded[key].dtype) == f"torch.{ckpt.dtypes()[key]}", key
            assert _bits(loaded[key]) == want.tobytes(), key
            assert ours.read(key).tobytes() == want.tobytes(), key  # and our own reader


def test_a_module_target_verifies_by_loading_strictly(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    source = tmp_path / "source.pt"
    torch.save({f"net.{k}": v + 1 for k, v in model.state_dict().items()}, source)
    (tmp_path / "m.yaml").write_text(
        "version: 1\nrules:\n  - {match: 'net\\.(.*)', rename: '{1}'}\n"
    )
    out = tmp_path / "model.pt"
    result = ckptmigrate.convert(
        source, tmp_path / "m.yaml", out, target=model, format="torch", verify=True
    )
    assert result.verification is not None
    assert result.verification.ok, result.verification.verdict
    assert "load_state_dict(strict=True)" in result.verification.how
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    assert torch.equal(model[0].bias, torch.load(source, weights_only=True)["net.0.bias"])


def test_what_a_torch_file_cannot_be_is_refused_before_writing(tmp_path: Path) -> None:
    with ckptmigrate.BundleWriter(tmp_path / "src", "model.ckpt") as writer:
        writer.add_array("vocab", np.array([b"a", b"b"], dtype=object))
        writer.add_array("w", np.zeros(2, np.float32))
        source = Path(writer.commit())
    base = ["convert", str(source), "--map", "strip-optimizer", "--format", "torch", "-o"]
    for args, said in (
        ([str(tmp_path / "a.pt")], "'vocab' is string, which a torch.save file cannot hold"),
        ([str(tmp_path / "a.safetensors")], "must be named *.pt, *.pth or *.bin"),
        ([str(tmp_path / "a.pt"), "--num-shards", "2"], "a torch.save file is one file"),
    ):
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 2, result.output
        assert said in result.stderr.replace("\n", " ")
        assert not (tmp_path / "a.pt").exists()


def test_without_torch_verify_reads_back_with_our_reader_and_catches_a_wrong_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ckptmigrate.conversion import torch_out
    from ckptmigrate.formats.torch_file import TorchReader

    monkeypatch.setattr(torch_out, "torch_installed", lambda: False)
    source = _source(tmp_path)
    convert = functools.partial(
        ckptmigrate.convert, source, "strip-optimizer", format="torch", verify=True
    )
    result = convert(tmp_path / "a.pt")
    assert result.verification is not None
    assert result.verification.ok, result.verification.verdict
    assert "ckptmigrate's own torch.save reader" in result.verification.how

    read = TorchReader.read
    monkeypatch.setattr(TorchReader, "read", lambda self, key: read(self, key) + 1)
    result = convert(tmp_path / "b.pt")
    assert result.verification is not None
    assert not result.verification.ok
    assert result.verification.mismatched
