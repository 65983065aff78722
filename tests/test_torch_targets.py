"""torch.nn.Module targets (issue 15, item 2): a live module or a builder returning one names
the output by its state_dict, and --verify loads the result as PyTorch does
(load_state_dict(strict=True)) and compares every value. No TensorFlow is needed: the
sources here are PyTorch and safetensors files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ckptmigrate
from ckptmigrate.cli import app
from ckptmigrate.errors import CkptMigrateError

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
runner = CliRunner()

BUILDER = """
import torch


def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten(), torch.nn.Linear(8, 3)
    )
"""

# The source names its layers; the target is an nn.Sequential (0, 1, 3).
RENAME = """version: 1
rules:
  - {match: 'conv\\.(.*)', rename: '0.{1}'}
  - {match: 'norm\\.(.*)', rename: '1.{1}'}
  - {match: 'fc\\.(.*)', rename: '3.{1}'}
"""


def _build() -> torch.nn.Module:
    namespace: dict[str, object] = {}
    exec(BUILDER, namespace)
    return namespace["build"]()  # type: ignore[operator,no-any-return]


def _source(tmp_path: Path, model: torch.nn.Module, *, drop: str | None = None) -> Path:
    """The model's state_dict under other names (conv, norm, fc), as a .pt file."""
    names = {"0": "conv", "1": "norm", "3": "fc"}
    state = {
        f"{names[k.split('.')[0]]}.{k.split('.', 1)[1]}": v for k, v in model.state_dict().items()
    }
    if drop is not None:
        del state[drop]
    path = tmp_path / "source.pt"
    torch.save(state, path)
    (tmp_path / "rename.yaml").write_text(RENAME)
    return path


def _trained(seed: int = 1) -> torch.nn.Module:
    model = _build()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.fill_(7)
    return model


def test_a_live_module_names_the_output_and_verify_loads_it_strictly(tmp_path: Path) -> None:
    trained = _trained()
    source = _source(tmp_path, trained)
    target = _build()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    report = ckptmigrate.check(source, target, map=tmp_path / "rename.yaml")
    assert report.ok, report
    out = tmp_path / "out.safetensors"
    result = ckptmigrate.convert(
        source, tmp_path / "rename.yaml", out, target=target, format="safetensors", verify=True
    )
    assert result.verification is not None
    assert result.verification.ok
    assert "load_state_dict(strict=True)" in result.verification.how
    assert result.verification.compared == len(before)
    # The caller's module is left as it was: verify loads into a copy.
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    target.load_state_dict(safetensors_torch.load_file(out), strict=True)
    x = torch.rand(2, 1, 4, 4)
    target.eval()
    trained.eval()
    assert torch.equal(target(x), trained(x))


def test_a_builder_target_from_the_command_line(tmp_path: Path) -> None:
    source = _source(tmp_path, _trained(), drop="norm.num_batches_tracked")
    (tmp_path / "net.py").write_text(BUILDER)
    spec = f"{tmp_path / 'net.py'}:build"
    out = tmp_path / "out.safetensors"
    result = runner.invoke(
        app, ["check", str(source), "--target", spec, "--map", str(tmp_path / "rename.yaml")]
    )
    assert result.exit_code == 1, result.output
    assert "1.num_batches_tracked" in result.stdout
    args = ["convert", str(source), "--map", str(tmp_path / "rename.yaml"), "--target", spec]
    args += ["-o", str(out), "--format", "safetensors", "--verify"]
    result = runner.invoke(app, [*args, "--fill-missing-from-target"])
    assert result.exit_code == 0, result.output
    assert "verify ok" in result.output
    assert safetensors_torch.load_file(out)["1.num_batches_tracked"].item() == 0  # the target's
    # Into a TensorFlow checkpoint: refused, a module is loaded from safetensors.
    result = runner.invoke(
        app, [*args[:6], "-o", str(tmp_path / "ckpt"), "--fill-missing-from-target"]
    )
    assert result.exit_code == 2, result.output
    assert (
        "PyTorch module is loaded from a safetensors or torch.save file"
        in result.stderr.replace("\n", " ")
    )


def test_tied_weights_fail_the_verify(tmp_path: Path) -> None:
    """A module whose two state_dict entries are one tensor (tied embeddings): two different
    values for them cannot both be loaded, and verify says which one did not survive."""

    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.Embedding(5, 3)
            self.decoder = torch.nn.Linear(3, 5, bias=False)
            self.decoder.weight = self.encoder.weight

    source = tmp_path / "untied.pt"
    torch.save({"encoder.weight": torch.rand(5, 3), "decoder.weight": torch.rand(5, 3)}, source)
    result = ckptmigrate.convert(
        source, None, tmp_path / "out.safetensors", target=Tied(), format="safetensors", verify=True
    )
    assert result.verification is not None
    assert not result.verification.ok
    assert result.verification.mismatched in (("decoder.weight",), ("encoder.weight",))


def test_a_state_dict_file_target_is_verified_with_torch(tmp_path: Path) -> None:
    trained = _trained()
    source = _source(tmp_path, trained)
    target_file = tmp_path / "target.pt"
    torch.save(_build().state_dict(), target_file)
    out = tmp_path / "out.safetensors"
    result = ckptmigrate.convert(
        source, tmp_path / "rename.yaml", out, target=target_file, format="safetensors", verify=True
    )
    assert result.verification is not None
    assert result.verification.ok
    assert "torch.load(weights_only=True)" in result.verification.how


def test_an_empty_module_is_a_clean_error(tmp_path: Path) -> None:
    source = _source(tmp_path, _trained())
    with pytest.raises(CkptMigrateError, match="state_dict\\(\\) is empty"):
        ckptmigrate.check(source, torch.nn.ReLU())


def test_values_of_every_dtype_come_out_of_a_module_bit_for_bit() -> None:
    from ckptmigrate.targets.torch_module import tensor_to_numpy

    for dtype in (torch.bfloat16, torch.float16, torch.float8_e4m3fn, torch.int64, torch.bool):
        tensor = (torch.rand(3, 2) * 4).to(dtype)
        array = tensor_to_numpy(tensor)
        assert array.shape == (3, 2)
        raw = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        assert np.ascontiguousarray(array).tobytes() == raw
