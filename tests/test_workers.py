"""Values computed ahead of the writer on several threads (issue 16, item 1): the output is
the same byte for byte whatever the number of workers and the memory budget, an error in a
worker stops the conversion with nothing written, and the budget bounds what waits."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import TRANSFORMING_MAP, file_digests, tf_save

import ckptmigrate
from ckptmigrate.conversion.pipeline import values_in_order
from ckptmigrate.errors import CkptMigrateError
from ckptmigrate.mapping.plan import PlannedVariable
from ckptmigrate.names import Role

MAP = TRANSFORMING_MAP


@pytest.fixture
def source(tf: Any, tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    tensors = {f"w_{i}": rng.standard_normal((32, 32)).astype("f4") for i in range(24)}
    tensors["global_step"] = np.array(3, np.int64)
    return tf_save(tf, tmp_path / "src" / "model.ckpt", tensors)


@pytest.mark.parametrize("num_shards", [None, 3])
def test_the_output_is_the_same_whatever_the_workers_and_budget(
    source: Path, tmp_path: Path, num_shards: int | None
) -> None:
    (tmp_path / "m.yaml").write_text(MAP)
    digests = []
    for i, (workers, budget) in enumerate([(1, None), (2, None), (4, 1), (8, 6000)]):
        out = tmp_path / f"out{i}"
        ckptmigrate.convert(
            source,
            tmp_path / "m.yaml",
            out,
            workers=workers,
            max_memory=budget,
            num_shards=num_shards,
        )
        digests.append(file_digests(out))
    assert all(d == digests[0] for d in digests[1:])
    assert any(name.endswith(".index") for name in digests[0])


def _planned(name: str, size: int) -> PlannedVariable:
    return PlannedVariable(name, name, Role.MODEL, (size,), "float32", (size,), "float32")


def test_the_budget_bounds_what_waits_and_order_is_kept() -> None:
    variables = [_planned(f"v{i}", 250) for i in range(40)]  # 1,000 bytes each
    waiting = 0
    peak = 0
    lock = threading.Lock()

    def compute(variable: PlannedVariable) -> str:
        nonlocal waiting, peak
        with lock:
            waiting += 1
            peak = max(peak, waiting)
        time.sleep(0.001)
        return variable.name

    seen = []
    for variable, value in values_in_order(
        variables, compute, needs_value=lambda v: True, workers=4, max_memory=3000
    ):
        assert value == variable.name
        with lock:
            waiting -= 1
        seen.append(value)
    assert seen == [v.name for v in variables]
    assert 1 <= peak <= 3  # at most 3,000 bytes of values computed and not yet written


def test_a_value_larger_than_the_budget_still_goes_alone() -> None:
    variables = [_planned("big", 10_000), _planned("small", 1)]
    got = list(
        values_in_order(
            variables, lambda v: v.name, needs_value=lambda v: True, workers=2, max_memory=10
        )
    )
    assert [value for _, value in got] == ["big", "small"]


def test_an_error_in_a_worker_stops_the_conversion_with_nothing_written(
    source: Path, tmp_path: Path
) -> None:
    (tmp_path / "m.yaml").write_text(
        "version: 1\nrules:\n"
        "  - {match: 'w_1[0-9]', cast: float64}\n"
        "  - {name: w_17, reshape: [7, -1]}\n"  # 1,024 elements: not a multiple of 7
    )
    with pytest.raises(CkptMigrateError, match="w_17"):
        ckptmigrate.convert(source, tmp_path / "m.yaml", tmp_path / "out", workers=4)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out*"))


def test_a_tight_budget_over_thousands_of_variables_keeps_going() -> None:
    """Each variable waiting for room was once wrapped in another generator: a 16 GiB
    conversion of 1,024 tensors hit Python's recursion limit (found by benchmarks/scale.py)."""
    variables = [_planned(f"v{i}", 4) for i in range(5000)]
    got = values_in_order(
        variables, lambda v: v.name, needs_value=lambda v: True, workers=2, max_memory=20
    )
    assert [value for _, value in got] == [v.name for v in variables]
