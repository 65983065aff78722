"""Progress a person can read (issue 13, item 4): the plan's totals, the rate and the time
left; in a log, a line every few seconds; nothing with --quiet or --json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import tf_save
from typer.testing import CliRunner

from ckptmigrate import cli
from ckptmigrate.conversion import plan
from ckptmigrate.progress import ConversionProgress


@pytest.fixture
def source(tf: Any, tmp_path: Path) -> Path:
    tensors = {f"layer_{i}/kernel": np.ones((256, 256), "f4") for i in range(4)}
    return tf_save(tf, tmp_path / "src" / "model.ckpt", tensors)


def test_the_plan_gives_the_totals_and_time_gives_rate_and_eta(
    source: Path, tmp_path: Path
) -> None:
    (tmp_path / "m.yaml").write_text("version: 1\nrules:\n  - {match: '.*', cast: float64}\n")
    tracker = ConversionProgress()
    the_plan = plan(source, tmp_path / "m.yaml")
    tracker.start(the_plan)
    assert (tracker.total_variables, tracker.total_bytes) == (4, 4 * 256 * 256 * 8)
    tracker.started = 0.0
    tracker.advance(the_plan.outputs[0])
    assert tracker.fraction == 0.25
    line = tracker.line(now=2.0)  # a quarter (512 KiB) in 2 s: 256 KiB/s, 6 s left
    assert line == ("converting: 1/4 variables, 512.0 KiB of 2.0 MiB (25%), 256.0 KiB/s, 6 s left")


def test_a_log_gets_lines_with_totals_and_quiet_or_json_none(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "LOG_EVERY", 0.0)  # every variable, for the test
    (tmp_path / "m.yaml").write_text("version: 1\nrules:\n  - {match: '.*', cast: float64}\n")
    runner = CliRunner()
    args = ["convert", str(source), "--map", str(tmp_path / "m.yaml"), "-o"]
    logged = runner.invoke(cli.app, [*args, str(tmp_path / "a")])
    assert logged.exit_code == 0, logged.output
    lines = [x for x in logged.stderr.splitlines() if x.startswith("converting: ")]
    assert lines[-1].startswith("converting: 4/4 variables, 2.0 MiB of 2.0 MiB (100%)")
    for flag in ("--quiet", "--json"):
        quiet = runner.invoke(cli.app, [*args, str(tmp_path / flag.strip("-")), flag])
        assert quiet.exit_code == 0, quiet.output
        assert "converting:" not in quiet.stderr
