"""Keras 3 on each of its backends, for the tests: a child Python per backend, and the
differential cases it runs.

Keras 3 picks its backend once, at import, from ``KERAS_BACKEND``, so a test of the JAX,
PyTorch or NumPy backend runs its Keras code in a child process (:func:`run_under`); the
child prints one JSON line, its answer. A backend whose package is not installed is
skipped (:data:`BACKENDS` carries the skip marks); the NumPy backend needs nothing.

The differential cases (:func:`make_case`, :func:`run_case`, run in the child): a random
small Keras 3 model (Sequential or functional; Dense with or without bias, BatchNormalization,
LayerNormalization, Dropout; sometimes an optimizer with its variables built) saves its
weights (``save_weights`` to a ``.weights.h5``, or ``save`` to a ``.keras``); a target is
derived from it by random edits (a layer renamed, missing, extra, resized, its bias or
dtype changed, a weightless layer inserted, the other model style, the optimizer
dropped or added). The oracle is Keras itself: ``target.load_weights(file)`` succeeds and
then every dataset the target saves (``save_weights`` again, Keras' own layout) holds the
file's value at the same path, bit for bit and in the same dtype. ``check(file, target)``
must say OK exactly then.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy"}


def available(backend: str) -> bool:
    """Whether Keras 3 can run on ``backend`` here (its package is installed)."""
    try:
        return importlib.util.find_spec("keras") is not None and (
            importlib.util.find_spec(_PACKAGES[backend]) is not None
        )
    except ImportError:  # `make check` blocks Keras and TensorFlow
        return False


# Every backend a test parametrizes over, skipped where its package is missing; all need
# Keras, so they are left out of `make check` (the tensorflow mark).
BACKENDS = [
    pytest.param(
        b,
        marks=[
            pytest.mark.tensorflow,
            pytest.mark.skipif(not available(b), reason=f"{_PACKAGES[b]} is not installed"),
        ],
    )
    for b in ("jax", "torch", "numpy", "tensorflow")
]


def run_under(backend: str, code: str, cwd: Path, timeout: float = 600) -> Any:
    """Run ``code`` in a child Python with ``KERAS_BACKEND=backend`` (tests/ and the work
    directory importable); returns the JSON object its last stdout line holds."""
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(cwd), str(ROOT)])
    process = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    failed = f"the {backend} child failed (exit {process.returncode}):\n{process.stderr[-4000:]}"
    assert process.returncode == 0, failed
    assert lines, failed
    return json.loads(lines[-1])


def block_tensorflow() -> None:
    """Make TensorFlow unimportable in this (child) process, as on a machine without it:
    on the JAX, PyTorch and NumPy backends ckptmigrate must never need it (Keras itself
    looks for it when it serializes a model, and does without). A None in sys.modules
    makes ``import`` raise ImportError and ``find_spec`` answer None."""
    if os.environ.get("KERAS_BACKEND") != "tensorflow":
        for name in ("tensorflow", "tf_keras"):
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def answer(value: Any) -> None:
    """The child's answer: one JSON line on stdout."""
    print(json.dumps(value), flush=True)


# -- the differential cases (run in the child) -------------------------------------------

KINDS = ["dense", "dense", "dense", "batchnorm", "layernorm", "dropout"]


@dataclass(frozen=True)
class Layer:
    kind: str  # KINDS
    units: int = 0  # dense only
    bias: bool = True  # dense only
    name: str | None = None
    dtype: str = "float32"

    @property
    def weighted(self) -> bool:
        return self.kind != "dropout"


@dataclass
class Case:
    seed: int
    inputs: int
    source: list[Layer]
    target: list[Layer]
    source_style: str  # sequential | functional
    target_style: str
    source_optimizer: bool  # an Adam with its variables built
    target_optimizer: bool
    as_archive: bool  # the source saved as a .keras file, not a .weights.h5
    edits: list[str] = field(default_factory=list)

    def describe(self) -> str:
        def show(layers: list[Layer]) -> str:
            return ", ".join(
                f"{la.kind}{la.units or ''}{'' if la.bias else '-nobias'}"
                f"{'@' + la.name if la.name else ''}"
                f"{':' + la.dtype if la.dtype != 'float32' else ''}"
                for la in layers
            )

        return (
            f"case seed={self.seed} edits={self.edits} inputs={self.inputs} "
            f"{'.keras' if self.as_archive else '.weights.h5'}\n"
            f"  source ({self.source_style}, optimizer={self.source_optimizer}): "
            f"{show(self.source)}\n"
            f"  target ({self.target_style}, optimizer={self.target_optimizer}): "
            f"{show(self.target)}"
        )


def _random_layer(rng: Any) -> Layer:
    kind = str(rng.choice(KINDS))
    if kind != "dense":
        return Layer(kind)
    return Layer(kind, int(rng.integers(1, 5)), bool(rng.random() < 0.85))


def _edit(rng: Any, case: Case) -> str:
    layers = case.target
    kind = str(
        rng.choice(
            [
                "resize",
                "missing",
                "extra",
                "weightless",
                "rename",
                "bias",
                "dtype",
                "style",
                "optimizer",
                "swap",
            ]
        )
    )
    i = int(rng.integers(0, len(layers)))
    dense = [j for j, la in enumerate(layers) if la.kind == "dense"]
    weighted = [j for j, la in enumerate(layers) if la.weighted]
    if kind == "resize" and dense:
        j = int(rng.choice(dense))
        layers[j] = replace(layers[j], units=layers[j].units + 1)
        return f"resize {j}"
    if kind == "missing":  # the target has a layer the file lacks
        layers.insert(i, Layer("dense", int(rng.integers(1, 5))))
        return f"missing {i}"
    if kind == "extra" and len(weighted) >= 2:  # the file has a layer the target lacks
        j = int(rng.choice(weighted))
        del layers[j]
        return f"extra {j}"
    if kind == "weightless":
        layers.insert(i, Layer("dropout"))
        return f"weightless {i}"
    if kind == "rename":  # .weights.h5 paths come from class names: load_weights ignores it
        layers[i] = replace(layers[i], name=f"renamed_{len(case.edits)}_{i}")
        return f"rename {i}"
    if kind == "bias" and dense:  # same path, another number of variables
        j = int(rng.choice(dense))
        layers[j] = replace(layers[j], bias=not layers[j].bias)
        return f"bias {j}"
    if kind == "dtype" and weighted:  # load_weights casts: the values are not the file's
        j = int(rng.choice(weighted))
        layers[j] = replace(layers[j], dtype="float64")
        return f"dtype {j}"
    if kind == "style":
        case.target_style = "functional" if case.target_style == "sequential" else "sequential"
        return f"style {case.target_style}"
    if kind == "optimizer":
        case.target_optimizer = not case.target_optimizer
        return f"optimizer {case.target_optimizer}"
    if kind == "swap" and len(layers) >= 2:  # two layers in the other order
        j = int(rng.integers(0, len(layers) - 1))
        layers[j], layers[j + 1] = layers[j + 1], layers[j]
        return f"swap {j}"
    return ""


def make_case(seed: int) -> Case:
    import numpy as np

    rng = np.random.default_rng(seed)
    layers = [_random_layer(rng) for _ in range(int(rng.integers(1, 5)))]
    if not any(la.weighted for la in layers):
        layers.append(Layer("dense", int(rng.integers(1, 5))))
    if rng.random() < 0.3:
        layers = [replace(la, name=f"{la.kind}_layer_{i}") for i, la in enumerate(layers)]
    style = "sequential" if rng.random() < 0.5 else "functional"
    optimizer = bool(rng.random() < 0.3)
    case = Case(
        seed,
        int(rng.integers(2, 5)),
        layers,
        list(layers),
        style,
        style,
        optimizer,
        optimizer,
        bool(rng.random() < 0.3),
    )
    for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
        if description := _edit(rng, case):
            case.edits.append(description)
    return case


def build(layers: list[Layer], inputs: int, style: str, optimizer: bool, rng: Any) -> Any:
    """The model, its weights (and the optimizer's, built) set to random values."""
    import keras
    import numpy as np

    def make(la: Layer) -> Any:
        options: dict[str, Any] = {"name": la.name, "dtype": la.dtype}
        if la.kind == "dense":
            return keras.layers.Dense(la.units, use_bias=la.bias, **options)
        if la.kind == "batchnorm":
            return keras.layers.BatchNormalization(**options)
        if la.kind == "layernorm":
            return keras.layers.LayerNormalization(**options)
        return keras.layers.Dropout(0.5, **options)

    if style == "sequential":
        model = keras.Sequential([keras.Input((inputs,)), *(make(la) for la in layers)])
    else:
        x = first = keras.Input((inputs,))
        for la in layers:
            x = make(la)(x)
        model = keras.Model(first, x)
    if optimizer:
        adam = keras.optimizers.Adam(0.01)
        adam.build(model.trainable_variables)
        model.compile(adam, "mse")
    variables = list(model.weights) + (list(model.optimizer.variables) if optimizer else [])
    for variable in variables:
        dtype = np.dtype(keras.backend.standardize_dtype(variable.dtype))
        shape = tuple(int(d) for d in variable.shape)
        if dtype.kind in "iu":
            value = rng.integers(1, 100, shape).astype(dtype)
        else:  # positive, so that a variance stays one
            value = (np.abs(rng.standard_normal(shape)) + 0.1).astype(dtype)
        variable.assign(value)
    return model


def _datasets(path: Path) -> dict[str, Any]:
    import h5py

    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: out.__setitem__(name, obj[()]) if hasattr(obj, "shape") else None
        )
    return out


def _weights_of(path: Path, directory: Path) -> dict[str, Any]:
    """The datasets of a ``.weights.h5``, or of a ``.keras`` archive's weights."""
    if path.suffix != ".keras":
        return _datasets(path)
    import zipfile

    inner = directory / "from-archive.weights.h5"
    with zipfile.ZipFile(path) as archive:
        inner.write_bytes(archive.read("model.weights.h5"))
    return _datasets(inner)


def _same(a: Any, b: Any) -> bool:
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    return bool(a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes())


def run_case(case: Case, directory: Path) -> dict[str, Any]:
    """Save the source, check it against the target, then load it with Keras: the verdict
    and what Keras did."""
    import numpy as np

    import ckptmigrate

    rng = np.random.default_rng(case.seed + 1)
    source = build(case.source, case.inputs, case.source_style, case.source_optimizer, rng)
    path = directory / ("source.keras" if case.as_archive else "source.weights.h5")
    if case.as_archive:
        source.save(str(path))
    else:
        source.save_weights(str(path))
    target = build(case.target, case.inputs, case.target_style, case.target_optimizer, rng)
    report = ckptmigrate.check(path, target)
    failure = None
    try:
        target.load_weights(str(path))
    except Exception as e:  # Keras' refusal is the outcome
        failure = f"load_weights raised {type(e).__name__}: {str(e).splitlines()[0]}"
    if failure is None:
        after = directory / "after.weights.h5"
        target.save_weights(str(after))
        stored = _weights_of(path, directory)
        held = _datasets(after)
        wrong = sorted(k for k, v in held.items() if k not in stored or not _same(v, stored[k]))
        if wrong:
            failure = f"load_weights passed, but these do not hold the file's value: {wrong}"
    return {
        "case": case.describe(),
        "ok": report.ok,
        "failure": failure,
        "findings": [
            f"{f.kind.value} {f.name}" for f in report.findings if f.kind.value != "matched"
        ],
        "case_fields": asdict(case),
    }
