"""`convert --target`: the output holds exactly what the target restores, under its keys.

TensorFlow restores every output here (Saver, tf.train.Checkpoint) and the values are
checked against the source and the map's fills."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from models import keras3_model, save_estimator_checkpoint
from typer.testing import CliRunner

from ckptmigrate import convert
from ckptmigrate.cli import app
from ckptmigrate.errors import CkptMigrateError
from ckptmigrate.mapping.retarget import TargetMismatchError

runner = CliRunner()

WIDEN = """\
version: 1
description: the [10, 10] estimator into the [20, 20], 2-class model
rules:
  - match: 'dnn/hiddenlayer_0/kernel'
    pad: {shape: [4, 20], fill: glorot_uniform, seed: 1}
  - match: 'dnn/hiddenlayer_1/kernel'
    pad: {shape: [20, 20], fill: glorot_uniform, seed: 2}
  - match: 'dnn/hiddenlayer_(\\d+)/bias'
    pad: {shape: [20], fill: zeros}
  - name: 'dnn/logits/kernel'
    pad: {shape: [20, 3], fill: zeros}
  - name: 'dnn/logits/kernel'
    slice: '[:, :2]'
  - name: 'dnn/logits/bias'
    slice: '[:2]'
  - role: optimizer
    drop: true
"""


# The [20, 20], 2-class model to fine-tune: no optimizer state yet.
H20_TWO_CLASSES = """
import tensorflow as tf
from ckptmigrate.examples import build_estimator_dnn

def build():
    build_estimator_dnn(
        tf, hidden_units=(20, 20), n_classes=2, partitioned=False, optimizer=False
    )
"""


def _builder(directory: Path, body: str) -> str:
    """A builder module file in ``directory``; returns its ``file.py:build`` spec."""
    path = directory / "build_target.py"
    path.write_text(textwrap.dedent(body))
    return f"{path}:build"


def _tf1_two_layers(tf: Any, directory: Path, scopes: tuple[str, str]) -> str:
    """A TF1 Saver checkpoint of two dense layers, [4, 8] and [8, 3], under ``scopes``."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        for scope, shape in zip(scopes, ([4, 8], [8, 3]), strict=True):
            with v1.variable_scope(scope):
                v1.get_variable("kernel", shape)
                v1.get_variable("bias", shape[1:], initializer=v1.ones_initializer())
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            return str(v1.train.Saver().save(session, str(directory / "model.ckpt")))


def _saver_restore(tf: Any, build: Any, prefix: Path) -> dict[str, np.ndarray]:
    """Build a TF1 graph with ``build``, restore ``prefix`` with a Saver, return the values."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        build()
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as session:
            saver.restore(session, str(prefix))
            return {v.op.name: session.run(v) for v in v1.global_variables()}


def test_story_1_estimator_into_the_wider_two_class_model(tf: Any, tmp_path: Path) -> None:
    from ckptmigrate.examples import build_estimator_dnn

    source, before = save_estimator_checkpoint(tf, tmp_path / "h10", partitioned=False)
    spec = _builder(tmp_path, H20_TWO_CLASSES)
    map_path = tmp_path / "widen.yaml"
    map_path.write_text(WIDEN)
    result = convert(source, map_path, tmp_path / "out", target=spec)

    after = _saver_restore(
        tf,
        lambda: build_estimator_dnn(
            tf, hidden_units=(20, 20), n_classes=2, partitioned=False, optimizer=False
        ),
        result.prefix,
    )
    # exactly the target's variables: no Adagrad slots, global_step kept
    assert set(after) == {
        "global_step",
        *(f"dnn/hiddenlayer_{i}/{w}" for i in (0, 1) for w in ("kernel", "bias")),
        "dnn/logits/kernel",
        "dnn/logits/bias",
    }
    assert after["global_step"] == before["global_step"]
    old = before["dnn/hiddenlayer_0/kernel"]
    new = after["dnn/hiddenlayer_0/kernel"]
    assert new.shape == (4, 20)
    np.testing.assert_array_equal(new[:, :10], old)  # copied cells bit for bit
    assert np.all(new[:, 10:] != 0)
    assert np.all(np.abs(new[:, 10:]) <= np.sqrt(6 / 24))
    np.testing.assert_array_equal(after["dnn/hiddenlayer_1/bias"][10:], 0)
    np.testing.assert_array_equal(
        after["dnn/logits/kernel"][:10], before["dnn/logits/kernel"][:, :2]
    )
    np.testing.assert_array_equal(after["dnn/logits/kernel"][10:], 0)
    np.testing.assert_array_equal(after["dnn/logits/bias"], before["dnn/logits/bias"][:2])
    record = json.loads((tmp_path / "out" / "ckptmigrate-provenance.json").read_text())
    assert record["target"] == spec


def test_story_1_without_the_slice_names_every_misfit(tf: Any, tmp_path: Path) -> None:
    source, _ = save_estimator_checkpoint(tf, tmp_path / "h10", partitioned=False)
    spec = _builder(tmp_path, H20_TWO_CLASSES)
    map_path = tmp_path / "widen.yaml"
    map_path.write_text(WIDEN.replace("  - name: 'dnn/logits/bias'\n    slice: '[:2]'\n", ""))
    with pytest.raises(TargetMismatchError) as caught:
        convert(source, map_path, tmp_path / "out", target=spec)
    message = str(caught.value)
    assert "dnn/logits/bias is [3] float32 but dnn/logits/bias needs [2] float32" in message
    assert not (tmp_path / "out").exists()
    result = runner.invoke(
        app, ["convert", str(source), "--map", str(map_path), "--target", spec, "-o", "o2"]
    )
    assert result.exit_code == 2
    assert "would not fit the target" in result.output
    assert "Traceback" not in result.output


def test_story_2_five_trained_layers_into_six(tf: Any, tmp_path: Path) -> None:
    old = keras3_model(units=(8, 8, 8, 8, 3), train=True)
    source = tf.train.Checkpoint(model=old).write(str(tmp_path / "five" / "ckpt"))
    old_weights = [w.numpy() for w in old.weights]
    new = keras3_model(units=(8, 8, 8, 8, 3, 2), train=False)
    new_initial = [w.numpy() for w in new.weights]

    with pytest.raises(TargetMismatchError, match=r"nothing supplies model/.*_operations/6"):
        convert(source, None, tmp_path / "refused", target=new)
    with pytest.raises(TargetMismatchError, match=r"output model/optimizer/.* has no place"):
        convert(source, None, tmp_path / "strict", target=new, strict=True)
    result = convert(source, None, tmp_path / "out", target=new, fill_missing_from_target=True)
    assert any("optimizer" in w and "left out" in w for w in result.plan.warnings)
    assert (result.copied, result.from_target) == (10, 3)  # the 6th layer and save_counter

    fresh = keras3_model(units=(8, 8, 8, 8, 3, 2), train=False)
    status = tf.train.Checkpoint(model=fresh).restore(str(result.prefix))
    status.assert_existing_objects_matched()
    for i, w in enumerate(fresh.weights):
        expected = old_weights[i] if i < 10 else new_initial[i]  # the 6th: target's init
        np.testing.assert_array_equal(w.numpy(), expected, err_msg=w.path)
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    # the copied layers compute what they did (the 5th has a relu in the 6-layer model)
    np.testing.assert_array_equal(np.maximum(old(x).numpy(), 0), _first_layers(fresh, 5)(x))


def _first_layers(model: Any, count: int) -> Any:
    import keras

    inputs = keras.Input((4,))
    net = inputs
    for layer in model.layers[:count]:
        net = layer(net)
    return keras.Model(inputs, net)


def test_story_3_tf1_saver_checkpoint_into_a_keras_model(tf: Any, tmp_path: Path) -> None:
    import keras

    v1 = tf.compat.v1
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        inputs = v1.placeholder(tf.float32, [None, 4])
        net = inputs
        for name, units in (("dense", 8), ("dense_1", 3)):  # tf.compat.v1.layers' names
            with v1.variable_scope(name):
                kernel = v1.get_variable("kernel", [net.shape[-1], units])
                bias = v1.get_variable("bias", [units], initializer=v1.random_normal_initializer())
            net = tf.matmul(net, kernel) + bias
            net = tf.nn.relu(net) if name == "dense" else net
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            expected = session.run(net, {inputs: x})
            prefix = saver.save(session, str(tmp_path / "tf1" / "model.ckpt"))

    model = keras3_model(units=(8, 3), train=False)
    result = convert(prefix, None, tmp_path / "out", target=model)
    restored = keras3_model(units=(8, 3), train=False)
    status = tf.train.Checkpoint(model=restored).restore(str(result.prefix))
    status.assert_consumed()  # every value in the output has its variable, and vice versa
    np.testing.assert_allclose(restored(x).numpy(), expected, rtol=1e-6, atol=1e-6)
    assert isinstance(restored, keras.Sequential)


def test_root_option_writes_the_model_itself_as_root(tf: Any, tmp_path: Path) -> None:
    old = keras3_model(units=(8, 3), train=False)
    source = tf.train.Checkpoint(model=old).write(str(tmp_path / "src" / "ckpt"))
    new = keras3_model(units=(8, 3), train=False, seed=5)
    result = convert(source, None, tmp_path / "out", target=new, root=None)
    restored = keras3_model(units=(8, 3), train=False, seed=7)
    tf.train.Checkpoint(restored).restore(str(result.prefix)).assert_existing_objects_matched()
    for a, b in zip(old.weights, restored.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_checkpoint_target_and_cli_dry_run(tf: Any, tmp_path: Path) -> None:
    source, before = save_estimator_checkpoint(tf, tmp_path / "h10", partitioned=False)
    target, _ = save_estimator_checkpoint(
        tf, tmp_path / "h20", hidden_units=(20, 20), n_classes=2, partitioned=False
    )
    map_path = tmp_path / "widen.yaml"
    map_path.write_text(WIDEN)
    args = ["convert", str(source), "--map", str(map_path), "--target", str(target)]
    # The target trains with Adagrad: its slots are missing unless taken from the target.
    refused = runner.invoke(app, [*args, "--dry-run"])
    assert refused.exit_code == 2
    assert "Adagrad" in refused.output
    dry = runner.invoke(app, [*args, "--fill-missing-from-target", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.output)
    assert planned["target"] == str(target)
    from_target = {o["name"] for o in planned["outputs"] if o["from_target"]}
    assert from_target
    assert all("Adagrad" in n for n in from_target)
    done = runner.invoke(app, [*args, "--fill-missing-from-target", "-o", str(tmp_path / "o")])
    assert done.exit_code == 0, done.output
    reader = tf.train.load_checkpoint(str(tmp_path / "o"))
    stored = reader.get_variable_to_shape_map()
    assert set(stored) == set(tf.train.load_checkpoint(str(target)).get_variable_to_shape_map())
    np.testing.assert_array_equal(
        reader.get_tensor("dnn/hiddenlayer_0/kernel")[:, :10], before["dnn/hiddenlayer_0/kernel"]
    )


def test_needs_a_map_or_a_target(tmp_path: Path) -> None:
    with pytest.raises(CkptMigrateError, match="needs a map, a target, or both"):
        convert(tmp_path / "x", None, tmp_path / "out")


def test_verify_restores_in_a_subprocess_and_compares_every_value(tf: Any, tmp_path: Path) -> None:
    source, _ = save_estimator_checkpoint(tf, tmp_path / "h10", partitioned=False)
    spec = _builder(tmp_path, H20_TWO_CLASSES)
    map_path = tmp_path / "widen.yaml"
    map_path.write_text(WIDEN)
    out = tmp_path / "out"
    done = runner.invoke(
        app,
        ["convert", str(source), "-m", str(map_path), "-t", spec, "-o", str(out), "--verify"],
    )
    assert done.exit_code == 0, done.output
    assert "verify ok: restored with tf.compat.v1.train.Saver" in done.output
    assert "all 7 values are as planned" in done.output

    # The same restore against a wrong expectation, and against a damaged output.
    from ckptmigrate.targets.model import open_target_model
    from ckptmigrate.verification import verify

    prefix = next(out.glob("*.index")).with_suffix("")
    with open_target_model(spec) as target:
        planned = tf.train.load_checkpoint(str(prefix))
        expected = {k: (lambda k=k: planned.get_tensor(k)) for k in target.inventory.variables}
        assert verify(prefix, None, spec, None, expected).ok
        expected["dnn/logits/bias"] = lambda: np.ones(2, np.float32)
        wrong = verify(prefix, None, spec, None, expected)
        assert not wrong.ok
        assert wrong.mismatched == ("dnn/logits/bias",)
        assert "max abs difference" in wrong.verdict
        data = next(out.glob("*.data-*"))
        data.write_bytes(bytes(b ^ 0xFF for b in data.read_bytes()))
        broken = verify(prefix, None, spec, None, expected)
    assert not broken.ok
    assert broken.error is not None
    assert "the restore failed" in broken.verdict


def test_a_complex_value_off_in_its_imaginary_part_is_measured_as_complex() -> None:
    """--verify's message measures complex values as complex: their real parts alone
    (numpy's cast to float64, with a ComplexWarning) said such a value was 0 off."""
    import warnings

    from ckptmigrate.verification import _difference

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        off = _difference(np.array([1 + 1j], np.complex64), np.array([1 + 3j], np.complex64))
    assert off == "max abs difference 2"


def test_verify_a_live_target_in_process_and_without_target(tf: Any, tmp_path: Path) -> None:
    old = keras3_model(units=(8, 3), train=True)
    source = tf.train.Checkpoint(model=old).write(str(tmp_path / "src" / "ckpt"))
    new = keras3_model(units=(8, 3), train=False, seed=3)
    result = convert(source, None, tmp_path / "out", target=new, verify=True)
    assert result.verification is not None
    assert result.verification.ok, result.verification.verdict
    assert "assert_existing_objects_matched" in result.verification.how
    plain = convert(source, "strip-optimizer", tmp_path / "plain", verify=True)
    assert plain.verification is not None
    assert plain.verification.ok, plain.verification.verdict
    assert "tf.train.load_checkpoint" in plain.verification.how
    assert plain.verification.compared == len(plain.plan.outputs)


def test_story_4_tf_keras_checkpoint_into_keras3_weights(tf: Any, tmp_path: Path) -> None:
    pytest.importorskip("tf_keras")
    import keras
    from models import tf_keras_model

    old = tf_keras_model()
    old.save_weights(str(tmp_path / "old" / "x.ckpt"))
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    expected = old.predict(x, verbose=0)
    archive = tmp_path / "new.keras"
    keras3_model(units=(8, 3), train=False, seed=9).save(archive)
    out = tmp_path / "converted.weights.h5"
    done = runner.invoke(
        app,
        [
            "convert",
            str(tmp_path / "old"),
            "--map",
            "tf-keras-to-keras3",
            "--target",
            str(archive),
            "--format",
            "keras",
            "-o",
            str(out),
            "--verify",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "verify ok: loaded with Keras model.load_weights" in done.output
    model = keras3_model(units=(8, 3), train=False, seed=11)
    model.load_weights(out)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)
    dry = runner.invoke(
        app,
        [
            "convert",
            str(tmp_path / "old"),
            "-m",
            "tf-keras-to-keras3",
            "-t",
            str(archive),
            "--format",
            "keras",
            "--dry-run",
            "--json",
        ],
    )
    assert dry.exit_code == 0, dry.output
    planned = {o["name"]: o["source"] for o in json.loads(dry.output)["outputs"]}
    assert (
        planned["layers/dense/vars/0"] == "layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    )
    # a whole .keras model, config from the target, weights converted
    whole = convert(
        tmp_path / "old",
        "tf-keras-to-keras3",
        tmp_path / "new-dir" / "converted.keras",
        target=archive,
        format="keras",
        durable=True,
    )
    assert whole.copied == 4
    loaded = keras.saving.load_model(tmp_path / "new-dir" / "converted.keras")
    assert [p.name for p in (tmp_path / "new-dir").iterdir()] == ["converted.keras"]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)


def test_keras_format_refusals(tf: Any, tmp_path: Path) -> None:
    old = keras3_model(units=(8, 3), train=False)
    source = tf.train.Checkpoint(model=old).write(str(tmp_path / "src" / "ckpt"))
    with pytest.raises(CkptMigrateError, match=r"\*\.weights\.h5"):
        convert(source, None, tmp_path / "out.h5", target=old, format="keras")
    with pytest.raises(CkptMigrateError, match="needs a Keras 3 model"):
        convert(source, None, tmp_path / "o.weights.h5", target=source, format="keras")
    bigger = keras3_model(units=(8, 8, 3), train=False)
    with pytest.raises(TargetMismatchError, match="nothing supplies layers/dense_2/vars/0"):
        convert(source, None, tmp_path / "o.weights.h5", target=bigger, format="keras")
    assert not (tmp_path / "o.weights.h5").exists()


def _suggest_convert_verify(
    tf: Any, source: Any, target: Any, out: Path, **options: Any
) -> tuple[Any, Any]:
    """suggest -> convert --target --verify, with no hand edits; returns (suggestion, result)."""
    from ckptmigrate import suggest

    suggestion = suggest(source, target)
    map_path = out.parent / f"{out.name}-suggested.yaml"
    map_path.write_text(suggestion.to_yaml())
    result = convert(source, map_path, out, target=target, verify=True, **options)
    assert result.verification is not None
    assert result.verification.ok, (result.verification.verdict, suggestion.to_yaml())
    return suggestion, result


def test_suggested_maps_fit_stories_2_3_and_4(tf: Any, tmp_path: Path) -> None:
    from ckptmigrate import check

    # 2: five trained Keras layers into six; the suggestion inits the new layer
    old = keras3_model(units=(8, 8, 8, 8, 3), train=True)
    five = tf.train.Checkpoint(model=old).write(str(tmp_path / "five" / "ckpt"))
    six = keras3_model(units=(8, 8, 8, 8, 3, 2), train=False)
    suggestion, result = _suggest_convert_verify(tf, five, six, tmp_path / "six")
    assert sum("init" in r.body for r in suggestion.rules) == 2
    assert check(result.prefix, six, ignore=["save_counter"]).ok

    # 3: a TF1 Saver checkpoint with other scope names into a Keras model
    tf1 = _tf1_two_layers(tf, tmp_path / "tf1", ("layer_a", "layer_b"))
    model = keras3_model(units=(8, 3), train=False)
    _, result = _suggest_convert_verify(tf, tf1, model, tmp_path / "keras")
    restored = keras3_model(units=(8, 3), train=False, seed=4)
    tf.train.Checkpoint(model=restored).restore(str(result.prefix)).assert_consumed()
    reader = tf.train.load_checkpoint(tf1)
    np.testing.assert_array_equal(restored.weights[0].numpy(), reader.get_tensor("layer_a/kernel"))
    np.testing.assert_array_equal(restored.weights[3].numpy(), reader.get_tensor("layer_b/bias"))

    # 4: tf-keras save_weights into a Keras 3 .weights.h5
    pytest.importorskip("tf_keras")
    from models import tf_keras_model

    tf_keras = tf_keras_model()
    tf_keras.save_weights(str(tmp_path / "tfk" / "x.ckpt"))
    keras3 = keras3_model(units=(8, 3), train=False, seed=6)
    _suggest_convert_verify(
        tf, tmp_path / "tfk", keras3, tmp_path / "k3.weights.h5", format="keras"
    )


def test_targets_a_tensorflow_checkpoint_cannot_be_restored_by_are_refused(
    tf: Any, tmp_path: Path
) -> None:
    model = keras3_model(units=(8, 3), train=False)
    source = tf.train.Checkpoint(model=model).write(str(tmp_path / "src" / "ckpt"))
    model.save_weights(tmp_path / "m.weights.h5")
    with pytest.raises(CkptMigrateError, match="no TensorFlow checkpoint keys"):
        convert(source, None, tmp_path / "o1", target=tmp_path / "m.weights.h5")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "scheme: tf2-object\nvariables:\n"
        "  model/_functional/_operations/1/_kernel/.ATTRIBUTES/VARIABLE_VALUE: {shape: [4, 8]}\n"
    )
    with pytest.raises(CkptMigrateError, match="no object graph"):
        convert(source, None, tmp_path / "o2", target=spec)
    assert not (tmp_path / "o1").exists()
    assert not (tmp_path / "o2").exists()


def test_keras_format_with_bfloat16_weights_verifies_and_fills(tf: Any, tmp_path: Path) -> None:
    import keras

    def build(seed: int) -> Any:
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, dtype="bfloat16")])

    old = build(0)
    source = tf.train.Checkpoint(model=old).write(str(tmp_path / "src" / "ckpt"))
    new = build(1)
    new_bias = new.weights[1].numpy()
    drop_bias = tmp_path / "drop-bias.yaml"
    drop_bias.write_text("version: 1\nrules:\n  - match: '.*/bias'\n    drop: true\n")
    out = tmp_path / "bf16.weights.h5"
    result = convert(
        source,
        drop_bias,
        out,
        target=new,
        format="keras",
        fill_missing_from_target=True,
        verify=True,
    )
    assert result.verification is not None
    assert result.verification.ok, result.verification.verdict
    loaded = build(2)
    loaded.load_weights(out)
    assert loaded.weights[0].dtype == "bfloat16"
    np.testing.assert_array_equal(loaded.weights[0].numpy(), old.weights[0].numpy())
    np.testing.assert_array_equal(loaded.weights[1].numpy(), new_bias)  # the target's own


def test_verify_troubles_are_told_apart_from_a_failed_verification(
    tf: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target that can't be rebuilt for --verify is trouble (exit 2, the output written);
    Ctrl-C during verification says the output was written."""
    from ckptmigrate.errors import InterruptedAfterWriting
    from ckptmigrate.verification import VerificationError, verify

    source, _ = save_estimator_checkpoint(tf, tmp_path / "h10", partitioned=False)
    once = tmp_path / "built-once"
    spec = _builder(
        tmp_path,
        f"""
        from pathlib import Path
        import tensorflow as tf
        from ckptmigrate.examples import build_estimator_dnn

        def build():
            # builders run eagerly, then in a graph: the verify child's is the 3rd call
            marker = Path({str(once)!r})
            calls = int(marker.read_text()) if marker.exists() else 0
            marker.write_text(str(calls + 1))
            if calls >= 2:
                raise RuntimeError("the target cannot be built again")
            build_estimator_dnn(tf, partitioned=False, optimizer=False)
        """,
    )
    with pytest.raises(VerificationError, match="was written, but the target could not be"):
        convert(source, None, tmp_path / "out", target=spec, verify=True)
    assert (tmp_path / "out" / "ckptmigrate-provenance.json").exists()

    prefix = next((tmp_path / "out").glob("*.index")).with_suffix("")

    def interrupted() -> Any:
        raise KeyboardInterrupt

    with pytest.raises(InterruptedAfterWriting, match="was written; its verification"):
        verify(prefix, None, None, None, {"global_step": interrupted})


def test_check_restore_and_convert_agree_across_schemes(tf: Any, tmp_path: Path) -> None:
    """A TF1 Saver checkpoint against a Keras 3 model: TF2's name-based restore would load
    nothing (its names lack the model's scope), so check fails; restore() and convert
    --target migrate it. A tf-keras checkpoint: check --map pairs as convert --target."""
    pytest.importorskip("tf_keras")
    from models import tf_keras_model

    import ckptmigrate
    from ckptmigrate import check

    tf1 = _tf1_two_layers(tf, tmp_path / "tf1", ("dense", "dense_1"))
    model = keras3_model(units=(8, 3), train=False)
    report = check(tf1, model)
    assert not report.ok
    missing = [f for f in report.findings if f.kind.value == "missing"]
    assert len(missing) == 4
    assert all("loads nothing" in (f.tensorflow_error or "") for f in missing)
    ckptmigrate.restore(model, tf1)  # converted into the model's keys, then restored
    np.testing.assert_array_equal(
        model.weights[0].numpy(), tf.train.load_checkpoint(tf1).get_tensor("dense/kernel")
    )

    tf_keras_model().save_weights(str(tmp_path / "tfk" / "x.ckpt"))
    keras3 = keras3_model(units=(8, 3), train=False)
    assert not check(tmp_path / "tfk", keras3).ok  # Keras 3 can't restore it as it is
    assert check(tmp_path / "tfk", keras3, map="tf-keras-to-keras3").ok  # converted, it fits
    ckptmigrate.restore(keras3, tmp_path / "tfk")  # tf-keras into Keras 3, no map needed


def test_a_conversion_never_advises_the_conversion_that_is_running() -> None:
    """check's hint for a twin with the same original name says `convert --target T`; a
    conversion into the target reporting why it could not place a variable says what can
    (issue 10, item 7)."""
    from ckptmigrate.compare import Finding, Kind
    from ckptmigrate.inventory import VariableSpec
    from ckptmigrate.mapping.retarget import _problem
    from ckptmigrate.names import Role

    spec = VariableSpec("model/dense/kernel", (2, 3), "float32", Role.MODEL, "dense/kernel")
    hint = (
        "the checkpoint's 'layer_with_weights-0/kernel' has the same original name "
        "(dense/kernel) and shape [2, 3]: the object structure changed; `convert --target T` "
        "writes it under this model's paths (--format keras for a Keras 3 model)"
    )
    missing = Finding(Kind.MISSING, spec.name, Role.MODEL, None, spec, None, hint=hint)
    text = _problem(missing)
    assert "convert --target" not in text
    assert text.endswith("the object structure changed; a rename rule in the map can place it)")
