"""The TensorFlow error `check` quotes is the one TensorFlow raises (issue 10, item 2): for
each checkpoint format (V1, V2), each kind of TF1 variable (ref, resource, partitioned) and
each mismatch (shape, dtype, missing), the real Saver restore runs and its error must contain
the quoted text word for word; where TensorFlow raises nothing (a resource variable silently
takes the stored shape) the quote must say so, and the restore is shown to reshape."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ckptmigrate
from ckptmigrate.compare import Kind

FORMATS = ("v1", "v2")
STORAGES = ("ref", "resource", "partitioned")
CHANGES = ("shape", "dtype", "both", "missing")


def _variable(tf: Any, name: str, shape: tuple[int, ...], dtype: Any, storage: str) -> Any:
    v1 = tf.compat.v1
    if storage == "partitioned":
        return v1.get_variable(
            name, shape=shape, dtype=dtype, partitioner=v1.fixed_size_partitioner(2)
        )
    return v1.get_variable(name, shape=shape, dtype=dtype, use_resource=storage == "resource")


@pytest.fixture(scope="module")
def sources(tf: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    """A checkpoint holding w [10, 4] float32 per (format, storage)."""
    v1 = tf.compat.v1
    out = {}
    for fmt, storage in itertools.product(FORMATS, STORAGES):
        directory = tmp_path_factory.mktemp(f"{fmt}-{storage}")
        graph = tf.Graph()
        with graph.as_default():
            _variable(tf, "w", (10, 4), tf.float32, storage)
            version = v1.train.SaverDef.V1 if fmt == "v1" else v1.train.SaverDef.V2
            saver = v1.train.Saver(write_version=version)
            with v1.Session() as session:
                session.run(v1.global_variables_initializer())
                out[fmt, storage] = saver.save(session, str(directory / "model.ckpt"))
    return out


CASES = list(itertools.product(FORMATS, STORAGES, CHANGES))


@pytest.mark.parametrize(("fmt", "storage", "change"), CASES, ids=["-".join(c) for c in CASES])
def test_quoted_error_is_what_tensorflow_raises(
    tf: Any, sources: dict[tuple[str, str], str], fmt: str, storage: str, change: str
) -> None:
    v1 = tf.compat.v1
    source = sources[fmt, storage]
    graph = tf.Graph()
    with graph.as_default():
        name = "zzz" if change == "missing" else "w"
        shape = (20, 4) if change in ("shape", "both") else (10, 4)
        dtype = tf.float64 if change in ("dtype", "both") else tf.float32
        variable = _variable(tf, name, shape, dtype, storage)
        saver = v1.train.Saver()
    report = ckptmigrate.check(source, graph)
    [finding] = [f for f in report.findings if f.name == name and f.kind is not Kind.UNUSED]
    assert (
        finding.kind
        is {
            "shape": Kind.SHAPE_MISMATCH,
            "dtype": Kind.DTYPE_MISMATCH,
            "both": Kind.SHAPE_MISMATCH,  # RestoreV2 refuses it for its dtype first
            "missing": Kind.MISSING,
        }[change]
    )
    quoted = finding.tensorflow_error
    assert quoted
    raised = None
    with graph.as_default(), v1.Session() as session:
        session.run(v1.global_variables_initializer())
        try:
            saver.restore(session, source)
            restored = session.run(variable if storage != "partitioned" else variable.as_tensor())
        except Exception as e:  # TensorFlow's own words are the oracle
            raised = str(e)
    if raised is not None:
        assert quoted in raised, f"TensorFlow said:\n{raised}\ncheck quoted:\n{quoted}"
        return
    # No error: only the resource variable's silent reshape may get here.
    assert (storage, change) == ("resource", "shape")
    assert np.shape(restored) == (10, 4)  # the graph declares (20, 4)
    assert quoted.startswith("raises nothing")
    assert not report.ok


def test_a_checkpoint_target_still_quotes_restore_v2(tf: Any, tmp_path: Path) -> None:
    """Against another checkpoint the variable's kind is unknown: RestoreV2's own text."""
    from helpers import tf_save

    a = tf_save(tf, tmp_path / "a" / "m", {"w": np.zeros((10,), "f4")})
    b = tf_save(tf, tmp_path / "b" / "m", {"w": np.zeros((20,), "f4")})
    [finding] = ckptmigrate.check(a, b).findings
    assert finding.tensorflow_error == (
        "tensor_name = w; shape in shape_and_slice spec [20] does not match the shape "
        "stored in checkpoint: [10]"
    )


def test_tf2_errors_name_the_key_in_the_checkpoint_file(tf: Any, tmp_path: Path) -> None:
    """Through a root attribute (tf.train.Checkpoint(model=...)) TensorFlow names a value it
    cannot use by its key in the file, model/... included; a value wrong in both dtype and
    shape is refused for its dtype (RestoreV2 checks that first). Both were quoted otherwise
    (found by the verdict oracle)."""
    saved = tf.Module()
    saved.w = tf.Variable(np.zeros((3,), "f4"))
    saved.b = tf.Variable(np.zeros((2,), "f4"))
    prefix = tf.train.Checkpoint(model=saved).write(str(tmp_path / "ckpt"))
    target = tf.Module()
    target.w = tf.Variable(np.zeros((4,), "f8"))  # shape and dtype differ
    target.b = tf.Variable(np.zeros((2,), "f8"))  # dtype differs
    report = ckptmigrate.check(prefix, target)
    quoted = {f.name: f.tensorflow_error for f in report.findings if f.tensorflow_error}
    for name in ("w", "b"):
        lone = tf.Module()
        setattr(lone, name, getattr(target, name))
        with pytest.raises(tf.errors.InvalidArgumentError) as raised:
            tf.train.Checkpoint(model=lone).read(prefix)
        [text] = [q for key, q in quoted.items() if key.split("/")[0] == name]
        assert text in str(raised.value), f"TF: {raised.value}\nquoted: {text}"
        assert f"tensor_name = model/{name}/.ATTRIBUTES/VARIABLE_VALUE" in text
