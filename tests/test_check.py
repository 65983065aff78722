"""`check` end to end, with checkpoints and models made by TensorFlow and Keras."""

from __future__ import annotations

import functools
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import tf_save
from hypothesis import given, settings
from hypothesis import strategies as st
from models import keras3_model, save_estimator_checkpoint, tf_keras_model
from typer.testing import CliRunner

from ckptmigrate import IncompatibleCheckpointError, assert_compatible, check
from ckptmigrate._version import __version__
from ckptmigrate.cli import app
from ckptmigrate.compare import Kind

runner = CliRunner()
GOLDEN = Path(__file__).parent / "golden"
HIDDEN = [
    "dnn/hiddenlayer_0/bias",
    "dnn/hiddenlayer_0/kernel",
    "dnn/hiddenlayer_1/bias",
    "dnn/hiddenlayer_1/kernel",
    "dnn/logits/kernel",
]


def missing_of(report: Any) -> list[Any]:
    return [f for f in report.findings if f.kind is Kind.MISSING]


def by_kind(report: Any, kind: Kind) -> dict[str, Any]:
    return {f.name: f for f in report.findings if f.kind is kind}


@pytest.fixture(scope="module")
def estimator_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import tensorflow as tf

    root = tmp_path_factory.mktemp("estimator")
    small, _ = save_estimator_checkpoint(tf, root / "h10", partitioned=False)
    large, _ = save_estimator_checkpoint(tf, root / "h20", hidden_units=(20, 20), partitioned=False)
    builder = root / "build_h20.py"
    builder.write_text(
        textwrap.dedent("""
        import tensorflow as tf
        from models import build_estimator_dnn

        def build():
            build_estimator_dnn(tf, hidden_units=(20, 20), partitioned=False)
    """)
    )
    return {
        "h10": small,
        "h20": large,
        "meta": Path(str(large) + ".meta"),
        "builder": builder,
        "root": root,
    }


@pytest.mark.parametrize("target_kind", ["meta", "checkpoint", "builder"])
def test_estimator_10_vs_20(tf: Any, estimator_runs: dict[str, Path], target_kind: str) -> None:
    target = {
        "meta": str(estimator_runs["meta"]),
        "checkpoint": str(estimator_runs["h20"]),
        "builder": f"{estimator_runs['builder']}:build",
    }[target_kind]
    report = check(estimator_runs["h10"], target)
    assert not report.ok
    mismatched = by_kind(report, Kind.SHAPE_MISMATCH)
    slots = [name + "/Adagrad" for name in HIDDEN]
    assert sorted(mismatched) == sorted(HIDDEN + slots)
    assert set(by_kind(report, Kind.MATCHED)) == {
        "global_step",
        "dnn/logits/bias",
        "dnn/logits/bias/Adagrad",
    }
    assert not by_kind(report, Kind.MISSING)
    assert not by_kind(report, Kind.UNUSED)
    finding = mismatched["dnn/hiddenlayer_1/bias"]
    assert finding.target.shape == (20,)
    assert finding.checkpoint.shape == (10,)
    if target_kind == "checkpoint":  # the variable's kind is unknown: RestoreV2's words
        assert finding.tensorflow_error == (
            "tensor_name = dnn/hiddenlayer_1/bias; shape in shape_and_slice spec [20] does "
            "not match the shape stored in checkpoint: [10]"
        )
    else:  # the graph's resource variables: Saver.restore raises nothing (see below)
        assert finding.tensorflow_error is not None
        assert finding.tensorflow_error.startswith("raises nothing")
    assert report.headline == "matched 3 of 13 target variables (7 of 1,167 parameters)"


def test_tensorflow_error_text_is_what_tensorflow_raises(
    tf: Any, estimator_runs: dict[str, Path]
) -> None:
    """The Estimator graph's variables are resource variables: a Saver restores the [10]
    values into the [20] variables without a word, and check says exactly that (the texts
    for every variable kind and format are in tests/test_tensorflow_errors.py)."""
    report = check(estimator_runs["h10"], estimator_runs["meta"])
    mismatched = by_kind(report, Kind.SHAPE_MISMATCH)
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.train.import_meta_graph(str(estimator_runs["meta"]))
        variables = {v.op.name: v for v in v1.global_variables()}
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            v1.train.Saver().restore(session, str(estimator_runs["h10"]))  # raises nothing
            for name, finding in mismatched.items():
                assert session.run(variables[name]).shape == finding.checkpoint.shape
                assert finding.target.shape != finding.checkpoint.shape
                assert finding.tensorflow_error is not None
                assert finding.tensorflow_error.startswith("raises nothing")


def test_estimator_cli_exit_codes_and_json(estimator_runs: dict[str, Path]) -> None:
    failing = runner.invoke(
        app,
        ["check", str(estimator_runs["h10"]), "--target", str(estimator_runs["meta"]), "--json"],
    )
    assert failing.exit_code == 1
    data = json.loads(failing.stdout)
    assert data["ok"] is False
    assert data["schema_version"] == 1
    assert data["summary"]["shape_mismatch"] == 10
    assert data["target"]["kind"] == "metagraph"
    same = runner.invoke(
        app, ["check", str(estimator_runs["h20"]), "--target", str(estimator_runs["meta"])]
    )
    assert same.exit_code == 0, same.stdout
    assert "OK: every target variable restores" in same.stdout


def test_same_model_passes_for_every_target_kind(
    tf: Any, tmp_path: Path, estimator_runs: dict[str, Path]
) -> None:
    h20 = estimator_runs["h20"]
    spec = tmp_path / "spec.yaml"
    reader = tf.train.load_checkpoint(str(h20))
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    spec.write_text(
        "variables:\n"
        + "".join(
            f"  {name}: {{shape: {list(shapes[name])}, dtype: {dtypes[name].name}}}\n"
            for name in shapes
        )
    )
    for target in (
        h20,
        estimator_runs["meta"],
        f"{estimator_runs['builder']}:build",
        spec,
        str(h20) + ".index",
        h20.parent,
    ):
        report = check(h20, target)
        assert report.ok, (target, [f for f in report.findings if f.kind is not Kind.MATCHED])
        assert report.count(Kind.MATCHED) == 13


def test_saved_model_and_keras_targets_pass_against_themselves(tf: Any, tmp_path: Path) -> None:
    model = keras3_model()
    prefix = tf.train.Checkpoint(model).write(str(tmp_path / "ckpt" / "m"))
    # live object, .keras archive: keys generated by TF from the model itself
    assert check(prefix, model).ok
    model.save(tmp_path / "m.keras")
    assert check(prefix, tmp_path / "m.keras").ok
    # a SavedModel's variables are a checkpoint, read without TensorFlow
    module = tf.Module()
    module.v = tf.Variable(np.ones((2, 3), np.float32))
    tf.saved_model.save(module, str(tmp_path / "sm"))
    assert check(tmp_path / "sm", tmp_path / "sm").ok


def test_five_trained_layers_into_a_six_layer_model(tf: Any, tmp_path: Path) -> None:
    trained = keras3_model(units=(8, 8, 8, 8, 3))  # 5 Dense layers, trained
    prefix = tf.train.Checkpoint(model=trained).write(str(tmp_path / "five" / "ckpt"))
    bigger = keras3_model(units=(8, 8, 8, 8, 3, 2), train=False)  # the same + a new layer
    report = check(prefix, bigger)
    matched = by_kind(report, Kind.MATCHED)
    missing = by_kind(report, Kind.MISSING)
    assert len(matched) == 10  # kernel + bias of the 5 trained layers
    assert len(missing) == 2  # the new layer's kernel and bias
    assert not by_kind(report, Kind.SHAPE_MISMATCH)
    assert not by_kind(report, Kind.DTYPE_MISMATCH)
    assert {f.role.value for f in by_kind(report, Kind.UNUSED).values()} <= {
        "optimizer",
        "step",
    }  # only the optimizer state of the trained run is left over
    assert any("scope" in note for note in report.notes)  # model/ prefix aligned, and said


def test_tf_keras_checkpoint_against_keras3_model(tf: Any, tmp_path: Path) -> None:
    pytest.importorskip("tf_keras")
    old = tf_keras_model()
    old.save_weights(str(tmp_path / "x.ckpt"))
    new = keras3_model(train=False)
    report = check(tmp_path / "x.ckpt", new)
    assert not report.ok
    missing = by_kind(report, Kind.MISSING)
    assert len(missing) == 4  # Keras 3 looks values up along other object paths
    hints = [f.hint or "" for f in missing.values()]
    # every hint points at the tf-keras variable of the same shape
    assert all("layer_with_weights-" in h for h in hints), hints
    # the Keras 3 .weights.h5 of the same architecture, compared by inferred names
    new.save_weights(tmp_path / "new.weights.h5")
    # Keras 3 loads no TensorFlow checkpoint: as a restore target the file takes nothing...
    as_is = check(tmp_path / "x.ckpt", tmp_path / "new.weights.h5")
    assert as_is.count(Kind.MATCHED) == 0
    assert all(
        "not TensorFlow checkpoints" in (f.tensorflow_error or "") for f in missing_of(as_is)
    )
    # ...while converted into its weight paths every variable pairs by its recorded name
    by_name = check(tmp_path / "x.ckpt", tmp_path / "new.weights.h5", rekeyed=True)
    assert by_name.count(Kind.MATCHED) == 4, by_name.findings
    assert "original variable name" in by_name.matching


def test_values_compare_two_checkpoints(tf: Any, tmp_path: Path) -> None:
    base = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.ones(3, np.int64),
        "s": np.array([b"x"], dtype=object),
    }
    first = tf_save(tf, tmp_path / "one", base)
    changed = dict(base, a=base["a"] + np.float32(0.5))
    second = tf_save(tf, tmp_path / "two", changed)
    assert check(first, second).ok  # restorable: shapes and dtypes fit
    report = check(first, second, values=True)
    values = {f.name: f.values for f in report.findings}
    assert values["b"].identical
    assert values["s"].identical
    assert not values["a"].identical
    assert values["a"].max_abs_diff == pytest.approx(0.5)
    assert values["a"].rms_diff == pytest.approx(0.5)
    # With --values the question is "identical", and one verdict answers it everywhere.
    assert report.restorable
    assert not report.ok
    assert report.question == "identical"
    with pytest.raises(IncompatibleCheckpointError, match="values differ: a"):
        assert_compatible(first, second, values=True)


def test_values_verdict_is_one_in_exit_code_text_json_and_html(tf: Any, tmp_path: Path) -> None:
    base = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.int64)}
    first = tf_save(tf, tmp_path / "one", base)
    second = tf_save(tf, tmp_path / "two", dict(base, a=base["a"] + np.float32(0.5)))
    same = tf_save(tf, tmp_path / "same", base)
    args = ["check", str(first), "--values", "--target"]

    text = runner.invoke(app, [*args, str(second), "--html", str(tmp_path / "r.html")])
    assert text.exit_code == 1
    verdict = text.stdout.strip().splitlines()[-1]
    assert verdict == (
        "FAIL: the values are not identical (1 matched variable with different values, "
        "--values); a strict restore would succeed"
    )
    html = (tmp_path / "r.html").read_text()
    assert '<p class="verdict fail">FAIL: the values are not identical' in html
    data = json.loads(runner.invoke(app, [*args, str(second), "--json"]).stdout)
    assert (data["ok"], data["question"], data["restorable"]) == (False, "identical", True)
    assert data["summary"]["values_differ"] == 1

    ok = runner.invoke(app, [*args, str(same), "--json"])
    assert ok.exit_code == 0
    data = json.loads(ok.stdout)
    assert (data["ok"], data["question"], data["summary"]["values_differ"]) == (
        True,
        "identical",
        0,
    )
    ok_text = runner.invoke(app, [*args, str(same)]).stdout.strip().splitlines()[-1]
    assert ok_text == "OK: every target variable restores with the same shape, dtype and values"
    plain = json.loads(
        runner.invoke(app, ["check", str(first), "--target", str(second), "--json"]).stdout
    )
    assert (plain["ok"], plain["question"], plain["summary"]["values_differ"]) == (
        True,
        "restorable",
        None,
    )


def test_policy_options(tf: Any, tmp_path: Path) -> None:
    ckpt = tf_save(
        tf,
        tmp_path / "c",
        {
            "w": np.ones(2, np.float32),
            "extra": np.ones(1, np.float32),
            "opt/w/Adam": np.ones(2, np.float32),
        },
    )
    target = tf_save(
        tf, tmp_path / "t", {"w": np.ones(2, np.float32), "new": np.ones(4, np.float32)}
    )
    assert not check(ckpt, target).ok  # 'new' is missing
    assert check(ckpt, target, ignore=["^new$"]).ok
    assert not check(ckpt, target, ignore=["^new$"], strict=True).ok  # 2 unused
    assert check(ckpt, target, ignore=["^new$", "extra", "Adam"], strict=True).ok
    low = check(ckpt, target, ignore=["^new$"], min_match=0.5)
    assert low.ok  # 1 of 1 matched
    assert not check(ckpt, target, min_match=0.9).ok
    result = runner.invoke(
        app, ["check", str(ckpt), "--target", str(target), "--ignore", "^new$", "--strict"]
    )
    assert result.exit_code == 1
    assert "unused in the checkpoint (2)" in result.stdout


def test_assert_compatible_raises_a_typed_error(estimator_runs: dict[str, Path]) -> None:
    with pytest.raises(IncompatibleCheckpointError) as raised:
        assert_compatible(estimator_runs["h10"], estimator_runs["h20"])
    assert raised.value.exit_code == 1
    assert "shape mismatch: dnn/hiddenlayer_0/kernel" in str(raised.value)
    assert raised.value.report.count(Kind.SHAPE_MISMATCH) == 10
    assert assert_compatible(estimator_runs["h20"], estimator_runs["h20"]).ok


def test_dtype_mismatch_and_missing_hint(tf: Any, tmp_path: Path) -> None:
    ckpt = tf_save(
        tf,
        tmp_path / "c",
        {"dense/kernel": np.ones((4, 3), np.float64), "dense_1/kernl": np.ones((3, 2), np.float32)},
    )
    target = tf_save(
        tf,
        tmp_path / "t",
        {
            "dense/kernel": np.ones((4, 3), np.float32),
            "dense_1/kernel": np.ones((3, 2), np.float32),
        },
    )
    report = check(ckpt, target)
    dtype = by_kind(report, Kind.DTYPE_MISMATCH)["dense/kernel"]
    assert dtype.tensorflow_error == (
        "tensor_name = dense/kernel; expected dtype float does not equal original dtype double"
    )
    missing = by_kind(report, Kind.MISSING)["dense_1/kernel"]
    assert missing.tensorflow_error == "Key dense_1/kernel not found in checkpoint"
    assert missing.hint == "did you mean 'dense_1/kernl' (unused, same shape [3, 2])?"


def test_bad_targets_are_clean_errors(tmp_path: Path, estimator_runs: dict[str, Path]) -> None:
    ckpt = str(estimator_runs["h10"])
    cases = {
        "nothing-here": "cannot use this as a target",
        "nomodule_xyz:build": "importing the builder failed",
        f"{estimator_runs['builder']}:nope": "has no function 'nope'",
    }
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text("variables:\n  w: {shape: [2], dtype: float33}\n")
    cases[str(bad_spec)] = "unknown dtype 'float33'"
    for target, message in cases.items():
        result = runner.invoke(app, ["check", ckpt, "--target", target])
        assert result.exit_code == 2, (target, result.output)
        assert message in result.stderr, (target, result.stderr)
        assert "Traceback" not in result.stderr


def _normalise(text: str, root: Path) -> str:
    # the version in produced_by changes with every release; the report does not
    return text.replace(str(root), "<tmp>").replace(
        f'"version": "{__version__}"', '"version": "<version>"'
    )


@pytest.mark.parametrize("fmt", ["txt", "json"])
def test_golden_reports(estimator_runs: dict[str, Path], fmt: str) -> None:
    args = ["check", str(estimator_runs["h10"]), "--target", str(estimator_runs["h20"])]
    result = runner.invoke(
        app, args + (["--json"] if fmt == "json" else []), env={"NO_COLOR": "1", "COLUMNS": "200"}
    )
    assert result.exit_code == 1
    actual = _normalise(result.stdout, estimator_runs["root"])
    golden = GOLDEN / f"check_estimator_10_vs_20.{fmt}"
    if os.environ.get("CKPTMIGRATE_REGEN_GOLDEN"):
        golden.write_text(actual)
    assert actual == golden.read_text()


def test_tf1_basic_lstm_cell_against_a_keras_lstm(tf: Any, tmp_path: Path) -> None:
    legacy = pytest.importorskip("tf_keras.src.layers.rnn.legacy_cells")
    import keras

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        inputs = v1.placeholder(tf.float32, [None, 5, 3])
        v1.nn.dynamic_rnn(legacy.BasicLSTMCell(4), inputs, dtype=tf.float32)
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            prefix = saver.save(session, str(tmp_path / "lstm.ckpt"))
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4)])
    report = check(prefix, model)
    assert not report.ok
    assert "original variable name" in report.matching  # TF1 names against TF2 keys
    missing = {
        f.target.original_name.split("/")[-1]: f for f in by_kind(report, Kind.MISSING).values()
    }
    assert set(missing) == {"kernel", "recurrent_kernel", "bias"}
    assert set(by_kind(report, Kind.UNUSED)) == {
        "rnn/basic_lstm_cell/kernel",
        "rnn/basic_lstm_cell/bias",
    }
    assert "'rnn/basic_lstm_cell/bias' (unused, same shape [16])" in missing["bias"].hint
    for name in ("kernel", "recurrent_kernel"):
        hint = missing[name].hint
        assert "'rnn/basic_lstm_cell/kernel', shape [7, 16]" in hint
        assert "split it along axis 0" in hint
        assert "i, j, f, o" in hint


def test_legacy_h5_target_matches_the_same_tf_keras_model(tf: Any, tmp_path: Path) -> None:
    pytest.importorskip("tf_keras")
    model = tf_keras_model()
    model.save_weights(str(tmp_path / "x.ckpt"))
    model.save(str(tmp_path / "full.h5"))  # legacy HDF5, full model with optimizer
    model.save_weights(str(tmp_path / "weights.h5"))  # legacy HDF5, weights only
    for target in ("full.h5", "weights.h5"):
        report = check(tmp_path / "x.ckpt", tmp_path / target, ignore=["optimizer"])
        assert report.ok, (target, report.findings)
        assert report.target.scheme.value == "tf2-object"  # restored by object path
        assert report.count(Kind.MATCHED) == 4


@pytest.mark.corpus
@pytest.mark.parametrize(
    "relative",
    [
        "keras-churn-ann-3formats/weightsh5-commit-HEAD/model.weights.h5",
        "keras-churn-ann-3formats/h5-commit-5c5a7dd/model.h5",
        "keras2-h5-fullmodel-pcf-ann/model.h5",
        "keras2.8-h5-lstm-genre-variants/model_weights.h5",
        "keras2-h5-weights+json-optionspricing-variants/model_weights.h5",
    ],
)
def test_real_keras_files_are_read_as_targets(corpus: Path, relative: str) -> None:
    from ckptmigrate.targets import load_target

    inventory = load_target(corpus / relative)
    import h5py

    with h5py.File(corpus / relative) as f:
        datasets: list[str] = []
        f.visititems(lambda name, obj: datasets.append(name) if hasattr(obj, "shape") else None)
    model_weights = [v for v in inventory.variables.values() if v.role.value == "model"]
    assert model_weights
    assert len(inventory.variables) <= len(datasets)
    assert all(v.original_name for v in model_weights)


def test_keras3_weights_h5_target_reads_bfloat16_as_bfloat16(tf: Any, tmp_path: Path) -> None:
    import keras

    from ckptmigrate.targets import load_target

    keras.backend.clear_session()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, dtype="bfloat16")])
    model.save_weights(tmp_path / "m.weights.h5")
    dtypes = {v.dtype for v in load_target(tmp_path / "m.weights.h5").variables.values()}
    assert dtypes == {"bfloat16"}  # stored as opaque 2-byte data with a dtype attribute


def test_a_name_two_variables_share_pairs_neither() -> None:
    """A subclassed Keras model records the same original name for every layer: pairing by
    it would hand one layer's values to another."""
    from ckptmigrate.compare import CheckOptions, compare
    from ckptmigrate.inventory import Inventory, Scheme, VariableSpec

    def spec(name: str) -> VariableSpec:
        return VariableSpec(name, (2, 2), "float32", original_name="sub/kernel")

    ckpt = Inventory("checkpoint", "a", Scheme.TF2, {n: spec(n) for n in ("enc/k", "dec/k")})
    target = Inventory("model", "b", Scheme.TF2, {n: spec(n) for n in ("first/k", "second/k")})
    report = compare(ckpt, target, CheckOptions(rekeyed=True))
    assert report.count(Kind.MATCHED) == 0
    assert report.count(Kind.MISSING) == 2


_NAMES = st.sampled_from(["a", "b", "a/k", "b/k", "c/d/e", "k"])
_SPECS = st.lists(st.tuples(_NAMES, _NAMES, st.none() | _NAMES), max_size=6)


@settings(max_examples=300, deadline=None)
@given(ckpt_names=_SPECS, target_names=_SPECS)
def test_pairing_by_name_takes_its_short_cut_only_where_it_agrees(
    ckpt_names: list[tuple[str, str, str | None]],
    target_names: list[tuple[str, str, str | None]],
) -> None:
    """Pairing two checkpoints by name skips the ambiguity bookkeeping when no variable has
    aliases; it must pair exactly as the general pairing does, whatever the names (dict
    keys and spec names may differ, names may repeat, an alias may be another's name)."""
    from ckptmigrate.compare import _by_name, _pair_with, _Strategy
    from ckptmigrate.inventory import Inventory, Scheme, VariableSpec

    def inventory(names: list[tuple[str, str, str | None]]) -> Inventory:
        variables = {
            key: VariableSpec(name, (1,), "float32", aliases=(alias,) if alias else ())
            for key, name, alias in names
        }
        return Inventory("checkpoint", "x", Scheme.TF1, variables)

    ckpt, target = inventory(ckpt_names), inventory(target_names)
    fast = _pair_with(_Strategy("s", _by_name, _by_name), ckpt, target)
    same = functools.partial(_by_name)  # the same keys, but not the short cut's function
    general = _pair_with(_Strategy("s", same, same), ckpt, target)
    assert fast.pairs == general.pairs
    assert fast.match_keys == general.match_keys


# -- a leading scope: forgiven only where the restore ignores it -------------------------


def _tf1_checkpoint_and_graph(
    tf: Any, tmp_path: Path, saved: dict[str, np.ndarray], scope: str | None
) -> tuple[Path, Path, Any]:
    """A Saver checkpoint of ``saved`` and the .meta of a graph of the same variables,
    under ``scope`` when given; returns (checkpoint, meta, a Saver restore of it)."""
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        for name, value in saved.items():
            v1.get_variable(name, initializer=value)
        saver = v1.train.Saver()
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            prefix = saver.save(session, str(tmp_path / "src" / "model.ckpt"))
    graph = tf.Graph()
    with graph.as_default():
        with v1.variable_scope(scope or "", auxiliary_name_scope=False):
            for name, value in saved.items():
                v1.get_variable(name, initializer=np.zeros_like(value))
        target_saver = v1.train.Saver()
        meta = tmp_path / "target.meta"
        target_saver.export_meta_graph(str(meta))

    def restore(path: str | Path) -> dict[str, np.ndarray]:
        with v1.Session(graph=graph) as session:
            target_saver.restore(session, str(path))
            return {v.op.name: session.run(v) for v in v1.global_variables()}

    return Path(prefix), meta, restore


def _rule_from(hint: str) -> str:
    return hint[hint.index("{match:") : hint.rindex("}") + 1]


def test_saver_restores_by_exact_name_and_the_hint_gives_the_rule(tf: Any, tmp_path: Path) -> None:
    # TensorFlow's checkpoint_utils_test.testInitFromRootCheckpoint: a root checkpoint
    # against a graph whose variables live under some_scope/.
    saved = {
        "var1": np.full((1, 10), 1.0, np.float32),
        "var2": np.full((10, 10), 2.0, np.float32),
        "useful_scope/var4": np.full((9, 9), 4.0, np.float32),
    }
    prefix, meta, restore = _tf1_checkpoint_and_graph(tf, tmp_path, saved, "some_scope")
    with pytest.raises(tf.errors.NotFoundError, match="some_scope/useful_scope/var4"):
        restore(prefix)  # TensorFlow: Key some_scope/useful_scope/var4 not found
    for strict in (False, True):
        report = check(prefix, meta, strict=strict)
        assert not report.ok
        assert report.alignment is None
    result = runner.invoke(app, ["check", str(prefix), "--target", str(meta), "--strict"])
    assert result.exit_code == 1
    missing = by_kind(report, Kind.MISSING)
    assert set(missing) == {f"some_scope/{name}" for name in saved}
    hint = missing["some_scope/useful_scope/var4"].hint or ""
    assert hint == (
        "the checkpoint holds it as 'useful_scope/var4', without the leading scope "
        "'some_scope/'; a name-based restore (tf.compat.v1.train.Saver) looks names up "
        "exactly, so the map rule {match: '(.*)', rename: 'some_scope/{1}'} fixes it"
    )
    assert any("looks every name up exactly" in note for note in report.notes)
    # the rule, as the hint spells it, is a map that makes check pass and the Saver restore
    map_file = tmp_path / "scope.yaml"
    map_file.write_text(f"version: 1\nrules:\n  - {_rule_from(hint)}\n")
    assert check(prefix, meta, map=map_file, strict=True).ok
    done = runner.invoke(
        app,
        [
            "convert",
            str(prefix),
            "--map",
            str(map_file),
            "--target",
            str(meta),
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert done.exit_code == 0, done.output
    values = restore(tmp_path / "out" / "model.ckpt")
    for name, value in saved.items():
        np.testing.assert_array_equal(values[f"some_scope/{name}"], value)


def test_saver_does_not_forgive_an_extra_scope_in_the_checkpoint(tf: Any, tmp_path: Path) -> None:
    # A BERT-style checkpoint whose head lives under bert/, against a graph without it.
    saved = {
        "bert/cls/predictions/transform/dense/kernel": np.ones((4, 4), np.float32),
        "bert/cls/predictions/output_bias": np.ones(7, np.float32),
    }
    prefix, _, _ = _tf1_checkpoint_and_graph(tf, tmp_path, saved, None)
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.get_variable("cls/predictions/transform/dense/kernel", shape=(4, 4))
        v1.get_variable("cls/predictions/output_bias", shape=(8,))  # and resized
        saver = v1.train.Saver()
        with v1.Session() as session, pytest.raises(tf.errors.NotFoundError):
            saver.restore(session, str(prefix))
    report = check(prefix, graph)
    assert not report.ok
    assert report.count(Kind.MISSING) == 2
    missing = by_kind(report, Kind.MISSING)
    hint = missing["cls/predictions/transform/dense/kernel"].hint or ""
    assert "as 'bert/cls/predictions/transform/dense/kernel', under one more leading " in hint
    assert hint.endswith("{match: 'bert/(.*)', rename: '{1}'} fixes it")
    resized = missing["cls/predictions/output_bias"].hint or ""
    assert _rule_from(resized) == "{match: 'bert/(.*)', rename: '{1}'}"
    assert resized.endswith(
        "renames it, but it holds [7] float32 where the model needs [8] float32: that takes "
        "another rule"
    )


def test_tf2_restore_through_a_root_attribute_ignores_the_scope(tf: Any, tmp_path: Path) -> None:
    old = tf.Module()
    old.dense = tf.Module()
    old.dense.kernel = tf.Variable(np.full((3, 2), 0.5, np.float32))
    prefix = tf.train.Checkpoint(model=old).write(str(tmp_path / "ckpt"))
    new = tf.Module()
    new.dense = tf.Module()
    new.dense.kernel = tf.Variable(tf.zeros((3, 2)))
    report = check(prefix, new, strict=True)
    assert report.ok
    assert report.alignment is not None
    assert report.alignment.to_dict() == {"side": "checkpoint", "scope": "model"}
    assert any("tf.train.Checkpoint(model=<target>).read(CKPT)" in n for n in report.notes)
    # ...which is the restore the verdict speaks for: through that root attribute
    tf.train.Checkpoint(model=new).read(prefix).assert_existing_objects_matched()
    np.testing.assert_array_equal(new.dense.kernel.numpy(), np.full((3, 2), 0.5, np.float32))
    data = json.loads(runner.invoke(app, ["check", prefix, "--target", prefix, "--json"]).stdout)
    assert data["alignment"] is None
