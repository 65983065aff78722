"""Keras 3 models on the JAX, PyTorch, NumPy (and TensorFlow) backends as targets:
``check``, ``restore``, ``convert --target --format keras --verify`` and ``suggest``, each
run in a child process with ``KERAS_BACKEND`` set (tests/keras_backends.py), and Keras'
own ``load_weights`` as the oracle.

The differential test: ``CKPTMIGRATE_KERAS_BACKEND_CASES`` random pairs per backend
(``make test`` runs 12, ``make soak`` 500), seeds from ``CKPTMIGRATE_KERAS_BACKEND_SEED``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from keras_backends import BACKENDS, make_case, run_under

CASES = int(os.environ.get("CKPTMIGRATE_KERAS_BACKEND_CASES", "12"))
SEED = int(os.environ.get("CKPTMIGRATE_KERAS_BACKEND_SEED", "20270115"))

_DIFFERENTIAL = """
import sys, tempfile
from pathlib import Path
from keras_backends import answer, block_tensorflow, make_case, run_case

block_tensorflow()
results = []
for seed in range({start}, {stop}):
    with tempfile.TemporaryDirectory(dir={tmp!r}) as directory:
        results.append(run_case(make_case(seed), Path(directory)))
answer({{"results": results, "tensorflow": sys.modules.get("tensorflow") is not None}})
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_check_says_ok_exactly_when_load_weights_restores_every_value(
    backend: str, tmp_path: Path
) -> None:
    """The verdict oracle: check(file, model) is OK exactly when Keras' load_weights
    succeeds and every dataset the model saves afterwards is the file's, bit for bit."""
    code = _DIFFERENTIAL.format(start=SEED, stop=SEED + CASES, tmp=str(tmp_path))
    got = run_under(backend, code, tmp_path)
    if backend != "tensorflow":  # read from Keras itself, never through TensorFlow
        assert not got["tensorflow"]
    disagreements = [
        f"{r['case']}\n  check ok={r['ok']}, Keras: {r['failure'] or 'restored every value'}"
        f"\n  findings: {r['findings']}"
        for r in got["results"]
        if r["ok"] != (r["failure"] is None)
    ]
    assert not disagreements, "\n".join(disagreements)
    assert len(got["results"]) == CASES
    if CASES >= 12:  # the default run sees both verdicts
        assert {r["ok"] for r in got["results"]} == {True, False}


def test_the_generator_makes_every_edit_and_both_forms() -> None:
    cases = [make_case(SEED + i) for i in range(max(CASES, 200))]
    edits = {e.split()[0] for c in cases for e in c.edits}
    assert edits == {
        "resize", "missing", "extra", "weightless", "rename", "bias", "dtype", "style",
        "optimizer", "swap",
    }  # fmt: skip
    assert {c.as_archive for c in cases} == {False, True}
    assert {(c.source_style, c.target_style) for c in cases} == {
        (a, b) for a in ("sequential", "functional") for b in ("sequential", "functional")
    }
    assert {(c.source_optimizer, c.target_optimizer) for c in cases} == {
        (a, b) for a in (False, True) for b in (False, True)
    }
    assert any(not c.edits for c in cases)
