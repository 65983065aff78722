"""Shared fixtures. TensorFlow is the oracle: checkpoints are made by TF in tmp_path."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
FOREIGN_ML = ("tensorflow", "keras", "tf_keras")


class TensorFlowBlocked(ModuleNotFoundError):
    """Raised under ``make check`` by an import of TensorFlow or Keras."""


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """Makes TensorFlow and Keras unimportable in this process (``make check``): a test
    that reaches for them is reported as skipped for needing TensorFlow, never run slowly.
    Tests known to need TF (the ``tf`` fixture, the ``tensorflow`` mark) are not even run."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in FOREIGN_ML:
            raise TensorFlowBlocked(
                f"{fullname} is blocked: `make check` runs the tests that need no TensorFlow",
                name=fullname,
            )
        return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--without-tensorflow",
        action="store_true",
        help="run only the tests that need no TensorFlow, with TensorFlow unimportable",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--without-tensorflow"):
        sys.meta_path.insert(0, _NoTensorFlow())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tf" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.tensorflow)
    if not config.getoption("--without-tensorflow"):
        return
    kept = [i for i in items if i.get_closest_marker("tensorflow") is None]
    config.hook.pytest_deselected(items=[i for i in items if i not in kept])
    items[:] = kept


@pytest.fixture(scope="session")
def tf() -> Any:
    import tensorflow as tf

    return tf


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is absent")
    return CORPUS


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.excinfo is not None and _blocked(call.excinfo.value):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, "needs TensorFlow")
    return report


def _blocked(error: BaseException | None) -> bool:
    """The error is, or was caused by, the blocked TensorFlow import (ckptmigrate's gate
    turns it into its own TensorFlowRequiredError)."""
    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, TensorFlowBlocked):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False
