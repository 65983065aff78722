"""The Python API is discoverable: dir() and help() show it, reports have short reprs (and
an HTML one for Jupyter), and an open checkpoint reads like TensorFlow's own reader."""

from __future__ import annotations

import html
import json
import pydoc
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import CORPUS
from helpers import same_bits, tf_save
from models import save_estimator_checkpoint

import ckptmigrate
from ckptmigrate import CheckpointNotFoundError, open_checkpoint
from ckptmigrate.formats.bundle_writer import BundleWriter
from ckptmigrate.html_report import render_html


def _write(directory: Path, tensors: dict[str, np.ndarray]) -> Path:
    with BundleWriter(directory, "model.ckpt") as writer:
        for name, value in tensors.items():
            writer.add_array(name, value)
        return Path(writer.commit())


# -- dir() and help() ------------------------------------------------------------------


def test_dir_lists_the_api_without_importing_numpy() -> None:
    code = (
        "import sys, ckptmigrate; names = dir(ckptmigrate); "
        "print(sorted(set(ckptmigrate.__all__) - set(names))); "
        "print([n for n in names if not n.startswith('_')]); "
        "print(sorted(m for m in ('numpy', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "[]"  # every public name
    public = ast_list(out[1])
    assert public == sorted(n for n in ckptmigrate.__all__ if not n.startswith("_"))
    assert out[2] == "[]"  # dir() resolved nothing


def ast_list(text: str) -> list[str]:
    import ast

    value = ast.literal_eval(text)
    assert isinstance(value, list)
    return [str(v) for v in value]


def test_help_tours_the_api_and_lists_its_functions() -> None:
    text = pydoc.plain(pydoc.render_doc(ckptmigrate))
    for name in ("open_checkpoint", "check", "convert", "suggest", "restore", "load_map"):
        assert f"``{name}(" in text or f"{name}(" in text, name
    functions = set(re.findall(r"^    (\w+)\(", text, re.MULTILINE))
    assert {"check", "convert", "inspect_checkpoint", "open_checkpoint", "suggest"} <= functions
    assert "keys()" in (ckptmigrate.__doc__ or "")


# -- short reprs -------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    checkpoint = _write(
        tmp_path / "ckpt",
        {
            "dense/kernel": np.zeros((4, 10), np.float32),
            "dense/bias": np.zeros((3,), np.float32),
            "old/extra": np.zeros((2,), np.float32),
        },
    )
    target = _write(
        tmp_path / "target",
        {
            "dense/kernel": np.zeros((4, 20), np.float32),
            "dense/bias": np.zeros((3,), np.float32),
            "head/kernel": np.zeros((2, 2), np.float32),
        },
    )
    return checkpoint, target


def test_report_repr_is_one_short_line(pair: tuple[Path, Path]) -> None:
    report = ckptmigrate.check(*pair)
    assert repr(report) == (
        "<Report ok=False: matched 1 of 3 target variables (3 of 87 parameters); "
        "1 shape mismatch; 1 missing from the checkpoint; 1 unused in the checkpoint>"
    )
    same = ckptmigrate.check(pair[1], pair[1])
    assert repr(same) == "<Report ok=True: matched 3 of 3 target variables (87 of 87 parameters)>"


def test_report_html_repr_is_the_html_report_in_an_isolated_frame(
    pair: tuple[Path, Path],
) -> None:
    report = ckptmigrate.check(*pair)
    shown = report._repr_html_()
    assert shown.startswith("<iframe srcdoc=")
    assert shown.endswith("</iframe>")
    srcdoc = re.fullmatch(r'<iframe srcdoc="([^"]*)".*', shown, re.DOTALL)
    assert srcdoc is not None
    # the same page but for the time it was written
    when = re.compile(r"<time [^>]*>[^<]*</time>")
    assert when.sub("", html.unescape(srcdoc[1])) == when.sub("", render_html(report))


def test_inspect_plan_and_convert_results_have_short_reprs(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    checkpoint, _ = pair
    report = ckptmigrate.inspect_checkpoint(checkpoint)
    assert repr(report) == (
        f"<InspectReport {checkpoint} (v2): 3 variables, 45 parameters, 180 bytes; "
        "3 model variable>"
    )
    map_file = tmp_path / "widen.yaml"
    map_file.write_text(
        "version: 1\nrules:\n"
        "  - name: dense/kernel\n    pad: {shape: [4, 20], fill: zeros}\n"
        "  - name: old/extra\n    drop: true\n"
        "  - name: nothing/here\n    drop: true\n"
    )
    the_plan = ckptmigrate.plan(checkpoint, map_file)
    assert repr(the_plan) == f"<Plan {checkpoint} with {map_file}: 2 outputs, 1 dropped, 1 warning>"
    result = ckptmigrate.convert(checkpoint, map_file, tmp_path / "out")
    assert repr(result) == (
        f"<ConvertResult {result.prefix}: 1 copied, 1 transformed, 0 initialised, 1 dropped>"
    )
    suggestion = ckptmigrate.suggest(*pair)
    assert repr(suggestion) == (
        f"<Suggestion {checkpoint} -> {pair[1]}: {len(suggestion.rules)} rules, "
        f"{len(suggestion.uncertain)} uncertain; with it: matched 3 of 3 target variables "
        "(87 of 87 parameters)>"
    )


# -- reading like tf.train.load_checkpoint -----------------------------------------------


def _dtype_name(dtype: Any) -> str:
    return {"half": "float16"}.get(dtype.name, dtype.name)


def assert_reads_like_tensorflow(tf: Any, prefix: Path) -> None:
    """keys/shapes/dtypes/read/in agree with TensorFlow's reader of the same checkpoint."""
    theirs = tf.train.load_checkpoint(str(prefix))
    shapes = theirs.get_variable_to_shape_map()
    dtypes = theirs.get_variable_to_dtype_map()
    with open_checkpoint(prefix) as ours:
        assert ours.keys() == sorted(shapes)
        assert ours.shapes() == {k: tuple(v) for k, v in shapes.items()}
        assert ours.dtypes() == {k: _dtype_name(v) for k, v in dtypes.items()}
        assert list(ours) == ours.keys()
        assert len(ours) == len(shapes)
        for key in ours:
            assert key in ours
            assert same_bits(ours.read(key), theirs.get_tensor(key)), key
        assert "no/such/key" not in ours
        assert 3 not in ours


def test_reads_a_tf1_saver_checkpoint_like_tensorflow(tf: Any, tmp_path: Path) -> None:
    # Estimator names, Adagrad slots, global_step and a partitioned embedding.
    prefix, values = save_estimator_checkpoint(tf, tmp_path)
    assert_reads_like_tensorflow(tf, prefix)
    with open_checkpoint(prefix) as ours:
        embedding = next(k for k in ours if k.endswith("embedding_weights"))
        assert ours.reader.info(embedding).slices  # stored in slices, read whole
        np.testing.assert_array_equal(ours.read(embedding), values[embedding])


def test_reads_every_dtype_like_tensorflow(tf: Any, tmp_path: Path) -> None:
    import ml_dtypes

    tensors = {
        "f16": np.arange(6, dtype=np.float16).reshape(2, 3),
        "bf16": np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16),
        "f64": np.array(3.25),
        "i8": np.array([-1, 2], np.int8),
        "u16": np.array([7], np.uint16),
        "i64": np.array([2**40], np.int64),
        "flag": np.array([True, False]),
        "c64": np.array([1 + 2j], np.complex64),
        "text": np.array([b"a", b"\x00b", b""], dtype=object),
        "empty": np.zeros((0, 3), np.float32),
    }
    assert_reads_like_tensorflow(tf, tf_save(tf, tmp_path / "ckpt", tensors))


def test_reads_a_tf2_checkpoint_like_tensorflow(tf: Any, tmp_path: Path) -> None:
    module = tf.Module()
    module.dense = tf.Variable(tf.ones([3, 2]), name="dense/kernel")
    module.step = tf.Variable(5, dtype=tf.int64)
    prefix = tf.train.Checkpoint(model=module).write(str(tmp_path / "ckpt"))
    assert_reads_like_tensorflow(tf, Path(prefix))
    with open_checkpoint(prefix) as ours:
        assert "_CHECKPOINTABLE_OBJECT_GRAPH" in ours  # as TF lists it
        assert repr(ours) == f"<Checkpoint {prefix}: v2, object-based, {len(ours)} keys>"
        with pytest.raises(CheckpointNotFoundError) as caught:
            ours.read("model/dense")
        # the name as inspect shows it: the hint gives the key that holds it
        assert "did you mean 'model/dense/.ATTRIBUTES/VARIABLE_VALUE'?" in str(caught.value)


@pytest.mark.corpus
def test_reads_the_corpus_like_tensorflow(tf: Any) -> None:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is absent")
    from test_corpus import V1_FILES

    v2 = sorted(p.with_suffix("") for p in CORPUS.rglob("*.index"))
    prefixes = v2 + [CORPUS / name for name in V1_FILES]
    assert v2
    for prefix in prefixes:
        assert_reads_like_tensorflow(tf, prefix)


def test_a_missing_key_names_the_closest_ones(pair: tuple[Path, Path]) -> None:
    with open_checkpoint(pair[0]) as ckpt:
        assert ckpt.keys() == ["dense/bias", "dense/kernel", "old/extra"]
        assert ckpt.shapes() == {"dense/bias": (3,), "dense/kernel": (4, 10), "old/extra": (2,)}
        assert set(ckpt.dtypes().values()) == {"float32"}
        with pytest.raises(CheckpointNotFoundError) as caught:
            ckpt.read("dense/kernal")
    assert str(caught.value) == (
        f"{pair[0]} (variable 'dense/kernal'): Key dense/kernal not found in checkpoint "
        "Hint: did you mean 'dense/kernel' or 'dense/bias'?"
    )


def test_report_repr_is_what_json_summary_says(pair: tuple[Path, Path]) -> None:
    # The repr's counts are the report's: the same numbers --json gives.
    report = ckptmigrate.check(*pair)
    summary = json.loads(json.dumps(report.to_dict()))["summary"]
    assert f"matched {summary['matched']} of {summary['target_variables']}" in repr(report)


# -- the API reference (make docs) -----------------------------------------------------


def _build_api() -> Any:
    pytest.importorskip("pdoc")
    import importlib.util

    path = Path(__file__).parents[1] / "docs" / "build_api.py"
    spec = importlib.util.spec_from_file_location("build_api", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_api_reference_builds_and_documents_every_export(tmp_path: Path) -> None:
    assert _build_api().main(tmp_path / "docs") == 0
    page = (tmp_path / "docs" / "ckptmigrate.html").read_text()
    for name in ckptmigrate.__all__:
        if not name.startswith("_"):
            assert f'id="{name}"' in page, name
    assert 'id="Checkpoint.read"' in page


def test_the_api_reference_fails_on_a_pdoc_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_api.py").write_text('"""A module."""\n__all__ = ["missing"]\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserWarning, match="does not resolve"):
        _build_api().main(tmp_path / "docs", ("broken_api",))


def test_one_spelling_for_the_map_and_the_order_said_when_swapped(tmp_path: Path) -> None:
    """(issue 13, item 5) ``map=`` everywhere a map is taken; restore's model-first order
    (TensorFlow's) is explained when the arguments come the other way round."""
    import inspect

    for function in (
        ckptmigrate.check,
        ckptmigrate.assert_compatible,
        ckptmigrate.convert,
        ckptmigrate.plan,
        ckptmigrate.restore,
    ):
        assert "map" in inspect.signature(function).parameters, function.__name__
        assert "mapping" not in inspect.signature(function).parameters, function.__name__
    with pytest.raises(ckptmigrate.CkptMigrateError) as caught:
        ckptmigrate.restore(str(tmp_path / "model.ckpt"), object())
    assert "restore takes the model first" in str(caught.value)
    assert "restore(model, checkpoint)" in str(caught.value)
    with pytest.raises(ckptmigrate.CkptMigrateError) as caught:
        ckptmigrate.convert(tmp_path / "nothing", None, tmp_path / "out")
    assert "map=" in str(caught.value)
