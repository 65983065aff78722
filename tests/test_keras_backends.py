"""Keras 3 models on the JAX, PyTorch, NumPy (and TensorFlow) backends as targets:
``check``, ``restore``, ``convert --target --format keras --verify`` and ``suggest``, each
run in a child process with ``KERAS_BACKEND`` set (tests/keras_backends.py), and Keras'
own ``load_weights`` as the oracle.

The differential test: ``CKPTMIGRATE_KERAS_BACKEND_CASES`` random pairs per backend
(``make test`` runs 12, ``make soak`` 500), seeds from ``CKPTMIGRATE_KERAS_BACKEND_SEED``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
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


MODELS = """
import keras


def encoder(width=4, name="encoder"):
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(width, name="hidden"),
            keras.layers.LayerNormalization(name="norm"),
            keras.layers.Dense(2, name="head"),
        ],
        name=name,
    )


def wide():
    return encoder(6)
"""

_MIGRATIONS = """
import sys
from pathlib import Path
from keras_backends import answer, block_tensorflow

block_tensorflow()
import numpy as np
import ckptmigrate
import kmodels

expected = dict(np.load("expected.npz"))


def same(model):
    import keras

    held = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    return sorted(held) == sorted(expected) and all(
        held[k].dtype == expected[k].dtype and held[k].tobytes() == expected[k].tobytes()
        for k in expected
    )


out = {}
out["check_ok"] = ckptmigrate.check("ckpt", kmodels.encoder()).ok
result = ckptmigrate.convert(
    "ckpt", None, "out.weights.h5", target="kmodels:encoder", format="keras", verify=True
)
out["verified"] = result.verification.ok
loaded = kmodels.encoder()
loaded.load_weights("out.weights.h5")
out["loads_bit_equal"] = same(loaded)
out["check_output_ok"] = ckptmigrate.check("out.weights.h5", kmodels.encoder()).ok
from_tf = kmodels.encoder()
from_tf.load_weights("from_tf_backend.weights.h5")
out["tf_backend_output_loads_bit_equal"] = same(from_tf)
restored = kmodels.encoder()
ckptmigrate.restore(restored, "ckpt")
out["restored_bit_equal"] = same(restored)
try:
    ckptmigrate.convert("ckpt", None, "out_ckpt", target="kmodels:encoder")
    out["checkpoint_refused"] = ""
except ckptmigrate.CkptMigrateError as e:
    out["checkpoint_refused"] = e.message
suggestion = ckptmigrate.suggest("ckpt", "kmodels:wide")
Path("wide.yaml").write_text(suggestion.to_yaml())
result = ckptmigrate.convert(
    "ckpt", "wide.yaml", "wide.weights.h5", target="kmodels:wide", format="keras", verify=True
)
out["suggested_verified"] = result.verification.ok
out["suggested_check_ok"] = ckptmigrate.check("wide.weights.h5", kmodels.wide()).ok
out["tensorflow"] = sys.modules.get("tensorflow") is not None
answer(out)
"""


@pytest.fixture(scope="module")
def tf_checkpoint(tf: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TensorFlow checkpoint of kmodels.encoder (tf.train.Checkpoint(model=...)), its
    values by variable path in expected.npz, and convert --format keras's output for it
    written on the TensorFlow backend."""
    import importlib.util

    import ckptmigrate

    directory = tmp_path_factory.mktemp("backends")
    (directory / "kmodels.py").write_text(MODELS)
    spec = importlib.util.spec_from_file_location("kmodels_tf", directory / "kmodels.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.encoder()
    rng = np.random.default_rng(7)
    for weight in model.weights:
        weight.assign(rng.standard_normal(tuple(weight.shape)).astype(np.float32))
    tf.train.Checkpoint(model=model).write(str(directory / "ckpt"))
    np.savez(directory / "expected.npz", **{w.path: w.numpy() for w in model.weights})
    ckptmigrate.convert(
        directory / "ckpt",
        None,
        directory / "from_tf_backend.weights.h5",
        target=module.encoder(),
        format="keras",
    )
    return directory


@pytest.mark.parametrize("backend", BACKENDS[:3])  # TensorFlow's: test_convert_target.py
def test_a_tensorflow_checkpoint_migrates_into_a_model_on_each_backend(
    backend: str, tf_checkpoint: Path, tmp_path: Path
) -> None:
    """On each backend: check refuses a TensorFlow checkpoint (load_weights reads none)
    except on TensorFlow's own, convert --target --format keras --verify writes what Keras
    loads bit for bit, restore migrates and loads it, a TensorFlow-backend output loads
    too, suggest's map for a widened model converts and checks OK; a checkpoint output
    for a non-TensorFlow model is refused with the reason."""
    for name in ("kmodels.py", "ckpt.index", "ckpt.data-00000-of-00001", "expected.npz"):
        (tmp_path / name).write_bytes((tf_checkpoint / name).read_bytes())
    name = "from_tf_backend.weights.h5"
    (tmp_path / name).write_bytes((tf_checkpoint / name).read_bytes())
    got = run_under(backend, _MIGRATIONS, tmp_path)
    on_tf = backend == "tensorflow"
    assert got.pop("check_ok") is on_tf  # TensorFlow's restore reads it only there
    refused = got.pop("checkpoint_refused")
    if on_tf:
        assert refused == ""
    else:
        assert f"on the {backend} backend restores Keras weight files" in refused
        assert not got.pop("tensorflow")
    got.pop("tensorflow", None)
    assert got == dict.fromkeys(got, True), got
    assert len(got) == 7


@pytest.mark.parametrize("backend", BACKENDS[2:3])  # NumPy: the quickest to start
def test_the_command_line_on_another_backend(
    backend: str, tf_checkpoint: Path, tmp_path: Path
) -> None:
    """The CLI with KERAS_BACKEND set: check against a builder says why a TensorFlow
    checkpoint does not restore (exit 1), convert --format keras --verify restores it in
    a child on the same backend (exit 0), and the output checks OK."""
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(tf_checkpoint)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "ckptmigrate", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    ckpt = str(tf_checkpoint / "ckpt")
    refused = cli("check", ckpt, "--target", "kmodels:encoder")
    assert refused.returncode == 1, refused.stderr
    assert "load_weights reads .weights.h5 and .keras files" in refused.stdout
    out = str(tmp_path / "out.weights.h5")
    done = cli(
        "convert", ckpt, "--target", "kmodels:encoder", "--format", "keras", "-o", out, "--verify"
    )
    assert done.returncode == 0, done.stderr
    assert "verify ok: loaded with Keras model.load_weights" in done.stdout + done.stderr
    checked = cli("check", out, "--target", "kmodels:encoder")
    assert checked.returncode == 0, checked.stdout + checked.stderr
