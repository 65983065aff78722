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
from ckptmigrate.conversion.job import planned_bytes
from ckptmigrate.progress import Progress


@pytest.fixture
def source(tf: Any, tmp_path: Path) -> Path:
    tensors = {f"layer_{i}/kernel": np.ones((256, 256), "f4") for i in range(4)}
    return tf_save(tf, tmp_path / "src" / "model.ckpt", tensors)


def test_the_plan_gives_the_totals_and_time_gives_rate_and_eta(
    source: Path, tmp_path: Path
) -> None:
    (tmp_path / "m.yaml").write_text("version: 1\nrules:\n  - {match: '.*', cast: float64}\n")
    tracker = Progress()
    the_plan = plan(source, tmp_path / "m.yaml")
    tracker.begin("converting", len(the_plan.outputs), sum(map(planned_bytes, the_plan.outputs)))
    assert (tracker.total_items, tracker.total_bytes) == (4, 4 * 256 * 256 * 8)
    tracker.started = 0.0
    tracker.advance(planned_bytes(the_plan.outputs[0]))
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


def _logged(runner: CliRunner, args: list[str]) -> list[str]:
    result = runner.invoke(cli.app, args)
    assert result.exit_code in (0, 1), result.output
    return result.stderr.splitlines()


def test_crc_checks_and_value_comparisons_report_their_totals(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "LOG_EVERY", 0.0)
    runner = CliRunner()
    crc = _logged(runner, ["inspect", str(source), "--check-crc"])
    assert "checking CRC32C: 4/4 tensors, 1.0 MiB of 1.0 MiB (100%)" in "\n".join(crc)
    values = _logged(runner, ["check", str(source), "--target", str(source), "--values"])
    assert "comparing values: 4/4 pairs, 1.0 MiB of 1.0 MiB (100%)" in "\n".join(values)
    for quiet in (["--quiet"], ["--json"]):
        assert not any(
            "CRC32C:" in line
            for line in _logged(runner, ["inspect", str(source), "--check-crc", *quiet])
        )
        checked = _logged(
            runner, ["check", str(source), "--target", str(source), "--values", *quiet]
        )
        assert not any("comparing values:" in line for line in checked)


def test_the_library_reports_what_it_will_do_before_it_does_it(source: Path) -> None:
    import ckptmigrate

    seen: list[tuple[str, int, int, int, int]] = []

    def listen(p: Progress) -> None:
        seen.append((p.task, p.done_items, p.total_items, p.done_bytes, p.total_bytes))

    ckptmigrate.inspect_checkpoint(source, check_crc=True, progress=Progress(listener=listen))
    assert seen[0] == ("checking CRC32C", 0, 4, 0, 4 * 256 * 256 * 4)
    assert seen[-1] == ("checking CRC32C", 4, 4, 4 * 256 * 256 * 4, 4 * 256 * 256 * 4)
    assert [done for _, done, *_ in seen] == [0, 1, 2, 3, 4]


def test_verify_reports_the_restore_then_each_value_compared(
    tf: Any, source: Path, tmp_path: Path
) -> None:
    import ckptmigrate

    tasks: list[tuple[str, int, int]] = []
    tracker = Progress(listener=lambda p: tasks.append((p.task, p.done_items, p.total_items)))
    (tmp_path / "m.yaml").write_text("version: 1\nrules:\n  - {match: '.*', cast: float64}\n")
    ckptmigrate.convert(
        source, tmp_path / "m.yaml", tmp_path / "out", verify=True, progress=tracker
    )
    order = list(dict.fromkeys(task for task, _, _ in tasks))
    assert order == [
        "converting",
        "verifying: TensorFlow restores the output",
        "verifying: comparing values",
    ]
    assert tasks[-1] == ("verifying: comparing values", 4, 4)


def test_every_command_takes_quiet() -> None:
    import typer.main

    group = typer.main.get_command(cli.app)
    commands = group.commands  # type: ignore[attr-defined]
    lacking = [
        name
        for name, command in commands.items()
        if not any("--quiet" in getattr(p, "opts", ()) for p in command.params)
    ]
    assert not lacking, f"commands without --quiet: {lacking}"
    assert len(commands) >= 8


def test_a_task_without_totals_reads_as_its_name_and_items_count_without_bytes() -> None:
    tracker = Progress()
    tracker.begin("verifying: TensorFlow restores the output")
    assert not tracker.determinate
    assert tracker.line() == "verifying: TensorFlow restores the output ..."
    tracker.begin("comparing", 4, unit="values")
    tracker.started = 0.0
    tracker.advance()
    assert tracker.line(now=1.0) == "comparing: 1/4 values (25%), 1.0 values/s, 3 s left"


def test_suggest_says_each_step_as_it_starts(source: Path, tmp_path: Path) -> None:
    import ckptmigrate

    tasks: list[str] = []
    tracker = Progress(listener=lambda p: tasks.append(p.task))
    ckptmigrate.suggest(source, source, progress=tracker)
    assert list(dict.fromkeys(tasks)) == [
        "suggest: reading the checkpoint and the target",
        "suggest: pairing 4 checkpoint variables with 4 target variables",
        "suggest: checking what the map achieves",
    ]
