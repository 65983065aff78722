"""What users read from `ckptmigrate inspect`, and the promise that --help is instant."""

from __future__ import annotations

import json
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
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("ckptmigrate ")


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
        f"inspect_checkpoint({str(ckpt)!r}, verify=True); "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "False"


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
