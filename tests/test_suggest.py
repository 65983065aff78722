"""`suggest`: maps written for real TensorFlow checkpoints, then applied and checked."""

from __future__ import annotations

import itertools
import random
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import tf_save
from models import keras3_model, save_estimator_checkpoint
from typer.testing import CliRunner

import ckptmigrate
from ckptmigrate import check, load_map
from ckptmigrate.checker import mapped_inventory
from ckptmigrate.cli import app
from ckptmigrate.compare import CheckOptions, Kind, compare
from ckptmigrate.suggestion import Section, Suggestion, suggest
from ckptmigrate.suggestion.assign import greedy, hungarian
from ckptmigrate.targets.model import open_conversion_target

runner = CliRunner()
F32 = np.float32


def write(suggestion: Suggestion, path: Path) -> Path:
    path.write_text(suggestion.to_yaml())
    return path


def rules_of(suggestion: Suggestion, kind: str) -> list[dict[str, Any]]:
    return [r.body for r in suggestion.rules if r.kind == kind]


@pytest.fixture(scope="module")
def estimator(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """[10, 10] with 3 classes, trained; a [20, 20] 2-class model as a .meta (with Adagrad
    slots) and as a builder without an optimizer."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("estimator")
    small, _ = save_estimator_checkpoint(tf, root / "h10", partitioned=False)
    large, _ = save_estimator_checkpoint(
        tf, root / "h20", hidden_units=(20, 20), n_classes=2, partitioned=False
    )
    builder = root / "build_h20.py"
    builder.write_text(
        textwrap.dedent("""
        import tensorflow as tf
        from ckptmigrate.examples import build_estimator_dnn

        def build():
            build_estimator_dnn(
                tf, hidden_units=(20, 20), n_classes=2, partitioned=False, optimizer=False
            )
        """)
    )
    return {"h10": small, "meta": Path(str(large) + ".meta"), "bare": builder, "root": root}


def test_estimator_widened_with_slots_kept(
    tf: Any, estimator: dict[str, Path], tmp_path: Path
) -> None:
    suggestion = suggest(estimator["h10"], str(estimator["meta"]))
    pads = {r["name"]: r["pad"] for r in rules_of(suggestion, "pad")}
    assert pads["dnn/hiddenlayer_0/kernel"] == {"shape": [4, 20], "fill": "glorot_uniform"}
    assert pads["dnn/hiddenlayer_0/bias"] == {"shape": [20], "fill": "zeros"}
    # function-preserving: new units' weights random, the rows they feed zeros (issue 11.5)
    assert [r["pad"] for r in rules_of(suggestion, "pad") if r["name"].endswith("r_1/kernel")] == [
        {"shape": [10, 20], "fill": "glorot_uniform"},
        {"shape": [20, 20], "fill": "zeros"},
    ]
    assert pads["dnn/logits/kernel"] == {"shape": [20, 2], "fill": "zeros"}
    # the target keeps Adagrad slots: padded with their own fill (what the target's
    # AdagradOptimizer starts an accumulator at), never dropped
    assert pads["dnn/hiddenlayer_1/kernel/Adagrad"] == {
        "shape": [20, 20],
        "fill": "constant",
        "value": 0.1,
    }
    assert not rules_of(suggestion, "drop")
    slices = {r["name"]: r["slice"] for r in rules_of(suggestion, "slice")}
    assert slices == {
        "dnn/logits/bias": "[:2]",
        "dnn/logits/bias/Adagrad": "[:2]",
        "dnn/logits/kernel": "[:, :2]",
        "dnn/logits/kernel/Adagrad": "[:, :2]",
    }
    names = [r.body.get("name") for r in suggestion.rules]
    # a slot's own pad comes before its variable's
    assert names.index("dnn/hiddenlayer_0/kernel/Adagrad") < names.index("dnn/hiddenlayer_0/kernel")
    assert suggestion.predicted is not None
    assert suggestion.predicted.ok

    path = write(suggestion, tmp_path / "widen.yaml")
    report = check(estimator["h10"], estimator["meta"], map=path)
    assert report.ok, [f for f in report.findings if f.kind is not Kind.MATCHED]
    assert report.count(Kind.MATCHED) == 13

    # Applied for real and restored by TensorFlow's Saver into the [20, 20] graph.
    out = ckptmigrate.convert(estimator["h10"], path, tmp_path / "out")
    reader = tf.train.load_checkpoint(str(out.prefix))
    before = tf.train.load_checkpoint(str(estimator["h10"]))
    kernel = reader.get_tensor("dnn/hiddenlayer_1/kernel")
    assert kernel.shape == (20, 20)
    np.testing.assert_array_equal(kernel[:10, :10], before.get_tensor("dnn/hiddenlayer_1/kernel"))
    accumulator = reader.get_tensor("dnn/hiddenlayer_1/kernel/Adagrad")
    assert (accumulator > 0).all()  # Adagrad divides by its square root
    np.testing.assert_array_equal(
        reader.get_tensor("dnn/logits/bias"), before.get_tensor("dnn/logits/bias")[:2]
    )
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session() as session:
        saver = tf.compat.v1.train.import_meta_graph(str(estimator["meta"]))
        saver.restore(session, str(out.prefix))


def test_estimator_into_a_model_without_an_optimizer(estimator: dict[str, Path]) -> None:
    suggestion = suggest(estimator["h10"], f"{estimator['bare']}:build")
    drops = rules_of(suggestion, "drop")
    assert drops == [
        {"role": ["optimizer"], "drop": True, "note": "the target restores no optimizer slots"}
    ]
    assert not any("Adagrad" in str(r.body.get("name")) for r in suggestion.rules)
    assert suggestion.predicted is not None
    assert suggestion.predicted.ok


def test_keras_five_layers_into_six(tf: Any, tmp_path: Path) -> None:
    trained = keras3_model(units=(8, 8, 8, 8, 3))
    prefix = tf.train.Checkpoint(model=trained).write(str(tmp_path / "five" / "ckpt"))
    bigger = keras3_model(units=(8, 8, 8, 8, 3, 2), train=False)
    suggestion = suggest(prefix, bigger)
    # named as convert --target writes them (tf.train.Checkpoint(model=...)); save_counter,
    # the target's own metadata, is not a map's business
    inits = {r["init"]["name"]: r["init"] for r in rules_of(suggestion, "init")}
    assert inits == {
        "model/_functional/_operations/6/_kernel": {
            "name": "model/_functional/_operations/6/_kernel",
            "shape": [3, 2],
            "dtype": "float32",
            "fill": "glorot_uniform",
        },
        "model/_functional/_operations/6/bias": {
            "name": "model/_functional/_operations/6/bias",
            "shape": [2],
            "dtype": "float32",
            "fill": "zeros",
        },
    }
    assert {"role": ["optimizer", "step"], "drop": True} in [
        {k: v for k, v in body.items() if k != "note"} for body in rules_of(suggestion, "drop")
    ]
    # the pairing convert --target makes: every target variable has its value
    the_map = load_map(write(suggestion, tmp_path / "grow.yaml"))
    mapped = mapped_inventory(prefix, the_map)
    with open_conversion_target(bigger) as target:  # the keys convert --target writes
        report = compare(mapped, target.inventory, CheckOptions(rekeyed=True))
    # everything but the target's save_counter, which the target itself supplies
    assert [f.name for f in report.findings if f.kind is Kind.MISSING] == [
        "save_counter/.ATTRIBUTES/VARIABLE_VALUE"
    ]
    assert report.count(Kind.MATCHED) == 12


def test_renamed_scope_and_layer_numbers(tf: Any, tmp_path: Path) -> None:
    source = {
        "encoder/dense/kernel": np.ones((4, 8), F32),
        "encoder/dense/bias": np.ones(8, F32),
        "encoder/dense_1/kernel": np.ones((8, 8), F32),
        "encoder/dense_1/bias": np.ones(8, F32),
        "dnn/hiddenlayer_0/kernel": np.ones((8, 8), F32),
        "dnn/hiddenlayer_1/kernel": np.ones((8, 8), F32),
        "global_step": np.array(3, np.int64),
    }
    target = {
        "enc/dense/kernel": np.ones((4, 8), F32),
        "enc/dense/bias": np.ones(8, F32),
        "enc/dense_1/kernel": np.ones((8, 8), F32),
        "enc/dense_1/bias": np.ones(8, F32),
        "head/dense_0/kernel": np.ones((8, 8), F32),
        "head/dense_1/kernel": np.ones((8, 16), F32),  # widened: rename, then pad
        "global_step": np.array(0, np.int64),
    }
    ckpt = tf_save(tf, tmp_path / "src", source)
    tgt = tf_save(tf, tmp_path / "tgt", target)
    suggestion = suggest(ckpt, tgt)
    renames = rules_of(suggestion, "rename")
    assert {"match": "encoder/(.*)", "rename": "enc/{1}"} in [
        {k: v for k, v in r.items() if k != "note"} for r in renames
    ]
    by_name = {r["name"]: r["rename"] for r in renames if "name" in r}
    # the numbers in the layer names decide: hiddenlayer_1 is dense_1, not dense_0
    assert by_name == {
        "dnn/hiddenlayer_0/kernel": "head/dense_0/kernel",
        "dnn/hiddenlayer_1/kernel": "head/dense_1/kernel",
    }
    assert [r["name"] for r in rules_of(suggestion, "pad")] == ["head/dense_1/kernel"]
    sections = [r.section for r in suggestion.rules]
    assert sections == sorted(sections)  # renames, then shape fixes
    report = check(ckpt, tgt, map=write(suggestion, tmp_path / "m.yaml"))
    assert report.ok
    assert report.count(Kind.MATCHED) == 7


def _ftrl_dnn(scope: str) -> dict[str, np.ndarray]:
    """A TF1 DNN's variables under ``scope`` with Ftrl's two slots each, the optimizer
    built inside the same variable scope (its slots then carry the scope twice)."""
    out = {f"{scope}global_step": np.array(3, np.int64)}
    for layer, shape in (("hiddenlayer_0", (4, 3)), ("logits", (3, 2))):
        for leaf, value in (("kernel", np.full(shape, 2, F32)), ("bias", np.ones(shape[1], F32))):
            name = f"dnn/{layer}/{leaf}"
            out[scope + name] = value
            out[f"{scope}{scope}{name}/Ftrl"] = value + 1  # accumulator
            out[f"{scope}{scope}{name}/Ftrl_1"] = value - 1  # linear
    return out


@pytest.mark.parametrize(("before", "after"), [("", "tower/"), ("tower/", "")])
def test_ftrl_slots_follow_their_variables_into_a_scope(
    tf: Any, tmp_path: Path, before: str, after: str
) -> None:
    # Found by the behaviour oracle (issue 11): with two slots a variable, the slots under
    # one scope more or less outnumber the variables, and the simulation paired them by
    # stripping a scope, leaving every renamed variable to be dropped and re-created.
    ckpt = tf_save(tf, tmp_path / "src", _ftrl_dnn(before))
    tgt = tf_save(tf, tmp_path / "tgt", _ftrl_dnn(after))
    suggestion = suggest(ckpt, tgt)
    assert not rules_of(suggestion, "drop")
    assert not rules_of(suggestion, "init")
    renamed = {r["name"]: r["rename"] for r in rules_of(suggestion, "rename") if "name" in r}
    slots = {old: new for old, new in renamed.items() if "/Ftrl" in old}
    assert len(slots) == 8  # each slot after its variable, none re-created
    assert all(old[old.index("dnn/") :] == new[new.index("dnn/") :] for old, new in slots.items())
    report = check(ckpt, tgt, map=write(suggestion, tmp_path / "m.yaml"))
    assert report.ok
    assert report.count(Kind.MATCHED) == 13


def test_a_bundled_map_with_parameters_is_never_the_start(tf: Any, tmp_path: Path) -> None:
    # bert-to-model-garden pairs these two, but its reshapes need `heads`, which a
    # suggested map (rules only) does not carry: starting from it, suggest's own map did
    # not parse (found by the behaviour oracle once the map was bundled).
    names = ("beta", "gamma")
    ckpt = tf_save(
        tf, tmp_path / "src", {f"bert/embeddings/LayerNorm/{n}": np.ones(4, F32) for n in names}
    )
    tgt = tf_save(
        tf, tmp_path / "tgt", {f"embeddings/layer_norm/{n}": np.ones(4, F32) for n in names}
    )
    suggestion = suggest(ckpt, tgt)
    assert not [r for r in suggestion.rules if r.section is Section.BASE]
    assert check(ckpt, tgt, map=write(suggestion, tmp_path / "m.yaml")).ok


def test_renames_never_land_on_a_name_still_in_use(tf: Any, tmp_path: Path) -> None:
    # `second/w` changes rank, so it cannot stay where it is: it moves on to `third/w`
    # and `first/w` takes its place; the order of the renames makes that work.
    ckpt = tf_save(
        tf, tmp_path / "a", {"first/w": np.ones(4, F32), "second/w": np.ones((3, 3), F32)}
    )
    tgt = tf_save(
        tf, tmp_path / "b", {"second/w": np.ones(4, F32), "third/w": np.ones((3, 3), F32)}
    )
    suggestion = suggest(ckpt, tgt)
    renames = [(r["name"], r["rename"]) for r in rules_of(suggestion, "rename")]
    assert renames == [("second/w", "third/w"), ("first/w", "second/w")]
    assert check(ckpt, tgt, map=write(suggestion, tmp_path / "m.yaml")).ok


def test_ambiguous_choice_is_marked(tf: Any, tmp_path: Path) -> None:
    ckpt = tf_save(
        tf,
        tmp_path / "a",
        {
            "branch_a/kernel": np.ones((4, 4), F32),
            "branch_b/kernel": np.ones((4, 4), F32),
            "out/bias": np.ones(4, F32),
        },
    )
    tgt = tf_save(
        tf, tmp_path / "b", {"branch_c/kernel": np.ones((4, 4), F32), "out/bias": np.ones(4, F32)}
    )
    suggestion = suggest(ckpt, tgt)
    [uncertain] = suggestion.uncertain
    assert uncertain.section is Section.RENAME
    assert uncertain.body["rename"] == "branch_c/kernel"
    other = {"branch_a/kernel", "branch_b/kernel"} - {uncertain.body["name"]}
    assert f"{other.pop()!r} [4, 4] fits 'branch_c/kernel' as well" in (uncertain.uncertain or "")
    lines = suggestion.to_yaml().splitlines()
    at = lines.index(f"  - name: {uncertain.body['name']}")
    assert lines[at - 1].startswith("  # UNCERTAIN: ambiguous:")
    assert suggest(ckpt, tgt).to_yaml() == suggestion.to_yaml()  # deterministic
    assert check(ckpt, tgt, map=write(suggestion, tmp_path / "m.yaml")).ok


def test_yaml_round_trips_and_cli(tf: Any, tmp_path: Path) -> None:
    ckpt = tf_save(
        tf,
        tmp_path / "model.ckpt-5",
        {
            "old/kernel": np.ones((4, 6), F32),
            "old/kernel/Adam": np.ones((4, 6), F32),
            "old/bias": np.ones(6, F32),
            "global_step": np.array(5, np.int64),
        },
    )
    tgt = tf_save(
        tf,
        tmp_path / "target",
        {"new/kernel": np.ones((4, 4), F32), "new/bias": np.ones(4, F32), "extra": np.ones(2)},
    )
    suggestion = suggest(ckpt, tgt)
    text = suggestion.to_yaml()
    assert yaml.safe_load(text) == suggestion.to_dict()
    the_map = load_map(write(suggestion, tmp_path / "s.yaml"))
    assert len(the_map.rules) == len(suggestion.rules)
    assert [r.kind for r in suggestion.rules] == [
        "rename",
        "slice",
        "slice",
        "drop",
        "init",
    ], text
    assert check(ckpt, tgt, map=tmp_path / "s.yaml").ok

    printed = runner.invoke(app, ["suggest", str(ckpt), "--target", str(tgt)])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == text
    out = tmp_path / "maps" / "m.yaml"
    out.parent.mkdir()
    written = runner.invoke(app, ["suggest", str(ckpt), "--target", str(tgt), "-o", str(out)])
    assert written.exit_code == 0, written.output
    assert out.read_text() == text
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.yaml"]  # nothing staged left
    again = runner.invoke(app, ["suggest", str(ckpt), "--target", str(tgt), "-o", str(out)])
    assert again.exit_code == 2
    assert "already exists" in again.stderr
    assert "--force" in again.stderr
    forced = runner.invoke(
        app, ["suggest", str(ckpt), "--target", str(tgt), "-o", str(out), "--force"]
    )
    assert forced.exit_code == 0, forced.output
    bad = runner.invoke(app, ["suggest", str(ckpt), "--target", str(tmp_path / "nothing")])
    assert bad.exit_code == 2
    assert "cannot use this as a target" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert ckptmigrate.suggest is suggest  # exported


def test_hungarian_finds_the_best_assignment() -> None:
    # Greedy takes the single best edge (0.9) and loses the better total.
    weights = [[0.9, 0.8], [0.8, 0.0]]
    assert sorted(greedy(weights)) == [(0, 0)]
    assert sorted(hungarian(weights)) == [(0, 1), (1, 0)]
    rng = random.Random(7)
    for rows, cols in [(3, 3), (2, 4), (4, 2), (4, 4)]:
        for _ in range(20):
            w = [[rng.choice([0.0, rng.random()]) for _ in range(cols)] for _ in range(rows)]
            got = sum(w[i][j] for i, j in hungarian(w))
            best = max(
                sum(w[i][j] for i, j in zip(range(rows), perm, strict=False) if j is not None)
                for perm in itertools.permutations(list(range(cols)) + [None] * rows, rows)  # type: ignore[arg-type]
            )
            assert got == pytest.approx(best)


def test_variables_sharing_a_default_name_are_renamed_not_dropped(tf: Any, tmp_path: Path) -> None:
    """tf.Variable's default name 'Variable' is every variable's original name: it pairs
    nothing, so the scope move is found and written as a rename."""
    source = tf.Module()
    source.old = [tf.Variable(np.full(3, i, np.float32)) for i in range(4)]
    prefix = tf.train.Checkpoint(model=source).write(str(tmp_path / "src" / "ckpt"))
    target = tf.Module()
    target.new = [tf.Variable(np.zeros(3, np.float32)) for _ in range(4)]
    suggestion = suggest(prefix, target)
    assert [r.body.get("rename") for r in suggestion.rules] == ["model/new/{1}"]
    map_path = tmp_path / "m.yaml"
    map_path.write_text(suggestion.to_yaml())
    result = ckptmigrate.convert(prefix, map_path, tmp_path / "out", target=target, verify=True)
    assert result.verification is not None
    assert result.verification.ok, result.verification.verdict


def test_a_dropped_value_that_fits_a_fresh_variable_is_flagged() -> None:
    from ckptmigrate.inventory import Inventory, Scheme, VariableSpec
    from ckptmigrate.suggestion import SuggestedRule
    from ckptmigrate.suggestion.synthesis import _flag_discarded_fits

    ckpt = Inventory("checkpoint", "c", Scheme.TF1, {"old": VariableSpec("old", (3,), "float32")})
    rules = [
        SuggestedRule(Section.DROP, {"name": "old", "drop": True}),
        SuggestedRule(
            Section.INIT,
            {"init": {"name": "new", "shape": [3], "dtype": "float32", "fill": "zeros"}},
        ),
        SuggestedRule(
            Section.INIT,
            {"init": {"name": "other", "shape": [4], "dtype": "float32", "fill": "zeros"}},
        ),
    ]
    flagged = _flag_discarded_fits(rules, ckpt)
    assert flagged[0].uncertain
    assert "dropped" in flagged[0].uncertain
    assert flagged[1].uncertain
    assert "'old'" in flagged[1].uncertain
    assert flagged[2].uncertain is None  # another shape: nothing to suspect
