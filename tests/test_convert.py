"""convert: maps are validated with locations, operations do what they say, and TensorFlow
restores what we write."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits, tf_save
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models import estimator_dnn_graph, save_estimator_checkpoint
from typer.testing import CliRunner

from ckptmigrate import OutputError, check
from ckptmigrate.cli import app
from ckptmigrate.compare import Kind
from ckptmigrate.conversion import PROVENANCE_FILE, convert, plan
from ckptmigrate.mapping.fills import Fill, make_fill
from ckptmigrate.mapping.located import MapError
from ckptmigrate.mapping.ops import Cast, OpError, Pad
from ckptmigrate.mapping.schema import parse_map

runner = CliRunner()


def write_map(tmp_path: Path, body: str, name: str = "map.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


@pytest.fixture
def small(tf: Any, tmp_path: Path) -> Path:
    return tf_save(
        tf,
        tmp_path / "src" / "model.ckpt",
        {
            "dense/kernel": np.arange(12, dtype=np.float32).reshape(4, 3),
            "dense/bias": np.array([1.0, 2.0, 3.0], np.float32),
            "dense/kernel/Adam": np.full((4, 3), 0.5, np.float32),
            "dense/kernel/Adam_1": np.full((4, 3), 0.25, np.float32),
            "global_step": np.array(9, np.int64),
        },
    )


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where", "message"),
    [
        (
            "version: 1\nrules:\n  - name: a\n    renam: b\n",
            ":4:5",
            "unknown key 'renam' in rule 1 Hint: did you mean 'rename'?",
        ),
        (
            "version: 1\nrules:\n  - match: 'a(['\n    drop: true\n",
            ":3:12",
            "is not a valid regular expression",
        ),
        (
            "version: 1\nrules:\n  - match: 'layer_(\\d+)'\n    rename: 'layer_{2}'\n",
            ":4:13",
            "refers to group 2, but the pattern has 1 group(s)",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    slice: '[:, ::0]'\n",
            ":4:12",
            "a slice step cannot be 0",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    cast: float33\n",
            ":4:11",
            "'float33' is not a dtype",
        ),
        ("rules: []\n", ":1:1", "the map needs `version: 1`"),
        ("version: 2\nrules: []\n", ":1:10", "unsupported map version 2"),
        (
            "version: 1\nrules:\n  - name: a\n    drop: true\n    rename: b\n",
            ":3:5",
            "needs exactly one operation, found 2 (drop, rename)",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    pad: {shape: [2], fill: glorot}\n",
            ":4:29",
            "unknown fill 'glorot' Hint: did you mean 'glorot_uniform'?",
        ),
        (
            "version: 1\nrules:\n  - name: a\n    transpose: [0, 0]\n",
            ":4:16",
            "transpose needs a permutation of 0..1",
        ),
        ("version: 1\nrules: [\n", ":3:1", "not valid YAML"),
    ],
)
def test_bad_maps_are_refused_with_location(body: str, where: str, message: str) -> None:
    with pytest.raises(MapError) as raised:
        parse_map(body, "m.yaml")
    text = str(raised.value)
    assert text.startswith(f"m.yaml{where}: "), text
    assert message in text, text


def test_plan_time_errors_name_rule_and_variable(small: Path, tmp_path: Path) -> None:
    cases = {
        "  - name: dense/bias\n    slice: '[5]'\n": "rule 1, variable 'dense/bias': slice [5] "
        "does not fit shape [3]",
        "  - name: dense/bias\n    pad: {shape: [2]}\n": "pad only grows",
        "  - name: dense/bias\n    reshape: [2, 2]\n": "cannot reshape [3] (3 elements)",
        "  - match: 'dense/(kernel|bias)'\n    rename: same\n": "two variables would both be "
        "written as 'same'",
    }
    for rules, message in cases.items():
        path = write_map(tmp_path, "version: 1\nrules:\n" + rules)
        with pytest.raises(
            MapError,
            match=message.replace("[", r"\[")
            .replace("]", r"\]")
            .replace("(", r"\(")
            .replace(")", r"\)"),
        ):
            plan(small, path)


def test_rule_matching_nothing_warns_then_fails_with_strict(small: Path, tmp_path: Path) -> None:
    path = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - name: dense/kernal
            drop: true
    """,
    )
    warned = plan(small, path)
    assert len(warned.warnings) == 1
    assert "matches nothing; closest names: dense/kernel" in warned.warnings[0]
    assert "perhaps you misspelled it?" in warned.warnings[0]
    with pytest.raises(MapError, match="matches nothing"):
        plan(small, path, strict=True)


def test_require_all(small: Path, tmp_path: Path) -> None:
    partial = write_map(tmp_path, "version: 1\nrules:\n  - name: global_step\n    drop: true\n")
    with pytest.raises(MapError, match="require_all=True: 4 variable"):
        plan(small, partial, require_all=True)  # only global_step has a rule
    full = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - name: global_step
            drop: true
          - keep: ['dense/.*']
    """,
        "full.yaml",
    )
    assert plan(small, full, require_all=True).outputs


# -- operations ------------------------------------------------------------------------


def test_ops_match_numpy() -> None:
    from ckptmigrate.mapping.exprs import parse_index
    from ckptmigrate.mapping.ops import Reshape, Slice, Transpose

    value = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(
        Slice(parse_index("[:, 1:, ::2]"), "").apply(value, "v"), value[:, 1:, ::2]
    )
    assert np.array_equal(Slice(parse_index("[..., -1]"), "").apply(value, "v"), value[..., -1])
    assert np.array_equal(Reshape((4, -1)).apply(value, "v"), value.reshape(4, 6))
    assert np.array_equal(Transpose((2, 0, 1)).apply(value, "v"), value.transpose(2, 0, 1))
    padded = Pad((3, 3, 5), Fill("constant", value=7.0)).apply(value, "v")
    assert np.array_equal(padded[:2, :, :4], value)
    assert (padded[2] == 7).all()
    assert (padded[:, :, 4] == 7).all()
    mean = Pad((2, 3, 6), Fill("mean")).apply(value, "v")
    assert (mean[:, :, 4:] == value.mean()).all()


def test_fills_are_seeded_and_shaped() -> None:
    glorot = make_fill(Fill("glorot_uniform", seed=3), (20, 30), "float32", "w")
    assert np.abs(glorot).max() <= np.sqrt(6 / 50)
    assert same_bits(glorot, make_fill(Fill("glorot_uniform", seed=3), (20, 30), "float32", "x"))
    unseeded = make_fill(Fill("normal", stddev=0.1), (100,), "float32", "name-a")
    assert same_bits(unseeded, make_fill(Fill("normal", stddev=0.1), (100,), "float32", "name-a"))
    assert not same_bits(unseeded, make_fill(Fill("normal", stddev=0.1), (100,), "float32", "b"))
    truncated = make_fill(
        Fill("truncated_normal", stddev=0.5, mean=1.0, seed=1), (1000,), "float64", "t"
    )
    assert np.abs(truncated - 1.0).max() <= 1.0
    assert make_fill(Fill("ones"), (2,), "int64", "o").dtype == np.int64


def test_cast_refuses_overflow_and_precision_loss() -> None:
    big = np.array([1.0, 70000.0], np.float32)
    with pytest.raises(OpError, match="overflows 1 value"):
        Cast("float16").apply(big, "v")
    assert np.isinf(Cast("float16", allow_overflow=True).apply(big, "v")[1])
    fine = np.array([0.1], np.float32)
    with pytest.raises(OpError, match="changes 1 value"):
        Cast("float16").apply(fine, "v")
    assert Cast("float16", allow_precision_loss=True).apply(fine, "v").dtype == np.float16
    assert Cast("float64").apply(fine, "v").dtype == np.float64  # widening is exact
    with pytest.raises(OpError, match="overflows"):
        Cast("int8").apply(np.array([300], np.int64), "v")


# -- end to end, TF restores what we write -----------------------------------------------

WIDEN = """
version: 1
description: Estimator DNN [10, 10] -> [20, 20] and 3 -> 2 classes, optimizer state dropped
rules:
  - match: '.*/Adagrad'
    drop: true
  - name: dnn/hiddenlayer_0/kernel
    pad: {shape: [4, 20], fill: glorot_uniform, seed: 1}
  - match: 'dnn/hiddenlayer_\\d+/bias'
    pad: {shape: [20], fill: zeros}
  - name: dnn/hiddenlayer_1/kernel
    pad: {shape: [20, 20], fill: normal, stddev: 0.01, seed: 2}
  - name: dnn/logits/kernel
    pad: {shape: [20, 3], fill: zeros}
  - name: dnn/logits/kernel
    slice: '[:, :2]'
  - name: dnn/logits/bias
    slice: '[:2]'
"""


def _model_vars_restored(tf: Any, prefix: Path, **model: Any) -> dict[str, np.ndarray]:
    graph, _, _ = estimator_dnn_graph(tf, steps=0, **model)
    with graph.as_default():
        model_vars = [v for v in tf.compat.v1.global_variables() if "Adagrad" not in v.op.name]
        tf.compat.v1.train.Saver(model_vars).restore(graph.session, str(prefix))
        values = dict(
            zip([v.op.name for v in model_vars], graph.session.run(model_vars), strict=True)
        )
        graph.session.close()
    return values


def test_widen_estimator_and_restore_with_saver(tf: Any, tmp_path: Path) -> None:
    source, before = save_estimator_checkpoint(tf, tmp_path / "h10", partitioned=False)
    mapping = write_map(tmp_path, WIDEN)
    result = convert(source, mapping, tmp_path / "out")
    assert result.copied == 1  # global_step, untouched
    assert result.transformed == 6
    restored = _model_vars_restored(
        tf, result.prefix, hidden_units=(20, 20), n_classes=2, partitioned=False
    )
    kernel0 = restored["dnn/hiddenlayer_0/kernel"]
    assert same_bits(kernel0[:, :10], before["dnn/hiddenlayer_0/kernel"])  # copied cells
    fill = make_fill(
        parse_map(WIDEN).rules[1].op.fill,
        (4, 20),
        "float32",  # type: ignore[union-attr]
        "dnn/hiddenlayer_0/kernel",
    )
    assert same_bits(kernel0[:, 10:], fill[:, 10:])  # new cells: exactly the seeded fill
    assert (restored["dnn/hiddenlayer_1/bias"][10:] == 0).all()
    assert same_bits(restored["dnn/hiddenlayer_1/bias"][:10], before["dnn/hiddenlayer_1/bias"])
    assert same_bits(restored["dnn/logits/kernel"][:10], before["dnn/logits/kernel"][:, :2])
    assert same_bits(restored["dnn/logits/bias"], before["dnn/logits/bias"][:2])
    assert int(restored["global_step"]) == int(before["global_step"])
    provenance = json.loads((tmp_path / "out" / PROVENANCE_FILE).read_text())
    assert provenance["counts"] == {
        "copied": 1,
        "transformed": 6,
        "initialised": 0,
        "from_target": 0,
    }
    assert len(provenance["dropped"]) == 6
    assert provenance["map_sha256"] == result.plan.map.sha256


def test_insert_a_layer_in_front_with_rename_arithmetic(tf: Any, tmp_path: Path) -> None:
    source, before = save_estimator_checkpoint(
        tf, tmp_path / "two", hidden_units=(10, 10), partitioned=False
    )
    mapping = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - match: 'dnn/hiddenlayer_(\\d+)/(.*)'
            rename: 'dnn/hiddenlayer_{1+1}/{2}'
          - match: 'dnn/hiddenlayer_1/kernel(/.*)?'
            drop: true
          - init: {name: dnn/hiddenlayer_0/kernel, shape: [4, 10], fill: glorot_uniform}
          - init: {name: dnn/hiddenlayer_0/bias, shape: [10], fill: zeros}
          - init: {name: dnn/hiddenlayer_1/kernel, shape: [10, 10], fill: glorot_uniform}
          - match: '.*/Adagrad'
            drop: true
    """,
    )
    result = convert(source, mapping, tmp_path / "out")
    renamed = result.plan.to_dict()["outputs"]
    assert {o["name"] for o in renamed} >= {"dnn/hiddenlayer_2/kernel", "dnn/hiddenlayer_2/bias"}
    restored = _model_vars_restored(tf, result.prefix, hidden_units=(10, 10, 10), partitioned=False)
    assert same_bits(restored["dnn/hiddenlayer_2/kernel"], before["dnn/hiddenlayer_1/kernel"])
    assert same_bits(restored["dnn/hiddenlayer_1/bias"], before["dnn/hiddenlayer_0/bias"])
    assert (restored["dnn/hiddenlayer_0/bias"] == 0).all()


def test_rename_only_copies_stored_bytes_and_slots_follow(
    small: Path, tmp_path: Path, tf: Any
) -> None:
    mapping = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - match: 'dense/(.*)'
            rename: 'encoder/dense/{1}'
    """,
    )
    result = convert(small, mapping, tmp_path / "out")
    assert result.transformed == 0
    assert result.copied == 5
    names = dict(tf.train.list_variables(str(result.prefix)))
    assert set(names) == {
        "encoder/dense/kernel",
        "encoder/dense/bias",
        "encoder/dense/kernel/Adam",
        "encoder/dense/kernel/Adam_1",
        "global_step",
    }
    src, out = tf.train.load_checkpoint(str(small)), tf.train.load_checkpoint(str(result.prefix))
    assert same_bits(
        out.get_tensor("encoder/dense/kernel/Adam_1"), src.get_tensor("dense/kernel/Adam_1")
    )


def test_slot_follows_its_variable_through_rename_but_own_rules_win(
    small: Path, tmp_path: Path
) -> None:
    mapping = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - match: '.*/Adam_1'
            drop: true
          - name: dense/kernel
            rename: dense/w
    """,
    )
    outputs = {o.name: o.source for o in plan(small, mapping).outputs}
    assert outputs["dense/w"] == "dense/kernel"
    assert outputs["dense/w/Adam"] == "dense/kernel/Adam"
    assert "dense/w/Adam_1" not in outputs


def test_partitioned_variable_renamed_restores(tf: Any, tmp_path: Path) -> None:
    source, before = save_estimator_checkpoint(tf, tmp_path / "p", partitioned=True)
    mapping = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - match: 'dnn/input_from_feature_columns/(.*)'
            rename: 'dnn/features/{1}'
    """,
    )
    result = convert(source, mapping, tmp_path / "out")
    old = "dnn/input_from_feature_columns/input_layer/ids_embedding/embedding_weights"
    new = "dnn/features/input_layer/ids_embedding/embedding_weights"
    assert dict(tf.train.list_variables(str(result.prefix)))[new] == [10, 4]
    graph = tf.Graph()
    with graph.as_default():
        var = tf.compat.v1.get_variable(
            new, shape=[10, 4], partitioner=tf.compat.v1.fixed_size_partitioner(3)
        )
        with tf.compat.v1.Session(graph=graph) as session:
            tf.compat.v1.train.Saver(list(var)).restore(session, str(result.prefix))
            assert same_bits(session.run(tf.concat(list(var), 0)), before[old])


def test_check_with_map_predicts_the_converted_checkpoint(tf: Any, tmp_path: Path) -> None:
    source, _ = save_estimator_checkpoint(tf, tmp_path / "h10", partitioned=False)
    target, _ = save_estimator_checkpoint(
        tf, tmp_path / "h20", hidden_units=(20, 20), n_classes=2, partitioned=False
    )
    mapping = write_map(tmp_path, WIDEN)
    predicted = check(source, target, map=mapping, ignore=["Adagrad"])
    assert predicted.ok, predicted.findings
    converted = convert(source, mapping, tmp_path / "out")
    actual = check(converted.prefix, target, ignore=["Adagrad"])
    assert actual.ok
    assert actual.count(Kind.MATCHED) == predicted.count(Kind.MATCHED)


# -- safety ----------------------------------------------------------------------------


def test_output_rules(small: Path, tmp_path: Path) -> None:
    mapping = write_map(tmp_path, "version: 1\nrules:\n  - keep: ['.*']\n")
    with pytest.raises(OutputError, match="inside it"):
        convert(small.parent, mapping, small.parent / "converted")  # a directory source
    with pytest.raises(OutputError, match="inside it"):
        convert(small, mapping, small.parent, overwrite=True)
    with pytest.raises(OutputError, match="contains the source"):
        convert(small, mapping, tmp_path, overwrite=True)
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputError, match="already exists"):
        convert(small, mapping, tmp_path / "taken")
    assert convert(small, mapping, tmp_path / "taken", overwrite=True).copied == 5


def test_failure_mid_conversion_writes_nothing(tf: Any, tmp_path: Path) -> None:
    source = tf_save(
        tf, tmp_path / "src" / "c", {"a": np.ones(3, np.float32), "z": np.array([1e6], np.float32)}
    )
    mapping = write_map(tmp_path, "version: 1\nrules:\n  - match: '.*'\n    cast: float16\n")
    with pytest.raises(MapError, match="overflows"):
        convert(source, mapping, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.yaml", "src"]


def test_cli_convert_dry_run_json_and_errors(small: Path, tmp_path: Path) -> None:
    mapping = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - match: '.*/Adam(_1)?'
            drop: true
          - name: dense/bias
            pad: {shape: [5], fill: ones}
    """,
    )
    dry = runner.invoke(
        app, ["convert", str(small), "--map", str(mapping), "--dry-run"], env={"NO_COLOR": "1"}
    )
    assert dry.exit_code == 0, dry.output
    assert "pad to [5] with ones" in dry.stdout
    assert "dropped (2)" in dry.stdout
    assert not (tmp_path / "out").exists()
    data = json.loads(
        runner.invoke(
            app, ["convert", str(small), "--map", str(mapping), "--dry-run", "--json"]
        ).stdout
    )
    bias = next(o for o in data["outputs"] if o["name"] == "dense/bias")
    assert bias["shape"] == [5]
    assert bias["operations"][0]["shape_before"] == [3]
    done = runner.invoke(
        app, ["convert", str(small), "--map", str(mapping), "-o", str(tmp_path / "out")]
    )
    assert done.exit_code == 0
    assert "2 copied unchanged, 1 transformed, 0 initialised, 2 dropped" in done.stdout
    bad = write_map(tmp_path, "version: 1\nrules:\n  - nme: x\n    drop: true\n", "bad.yaml")
    failed = runner.invoke(
        app, ["convert", str(small), "--map", str(bad), "-o", str(tmp_path / "out2")]
    )
    assert failed.exit_code == 2
    assert f"{bad}:3:5: unknown key 'nme'" in failed.stderr
    assert not (tmp_path / "out2").exists()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_rename_drop_keep_agrees_with_a_tf_resave(
    tf: Any, tmp_path: Path, data: st.DataObject
) -> None:
    import tempfile

    work = Path(tempfile.mkdtemp(dir=tmp_path))
    names = data.draw(
        st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True)
    )
    values = {f"scope/{n}": np.full((2,), i, np.float32) for i, n in enumerate(names)}
    source = tf_save(tf, work / "src" / "ckpt", values)
    rules, expected = [], dict(values)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["rename", "drop", "keep"]))
        target = data.draw(st.sampled_from(names))
        if kind == "drop":
            rules.append(f"  - match: '(.*/)?{target}'\n    drop: true\n")
            expected = {k: v for k, v in expected.items() if k.split("/")[-1] != target}
        elif kind == "keep":
            rules.append(f"  - keep: ['(.*/)?{target}']\n")
            expected = {k: v for k, v in expected.items() if k.split("/")[-1] == target}
        else:
            rules.append(f"  - match: '(.*)/{target}'\n    rename: 'moved/{{1}}/{target}'\n")
            expected = {
                (f"moved/{k.rsplit('/', 1)[0]}/{target}" if k.split("/")[-1] == target else k): v
                for k, v in expected.items()
            }
    mapping = write_map(work, "version: 1\nrules:\n" + "".join(rules))
    # The oracle: apply the same renames to TF's listing and re-save with TF itself.
    reader = tf.train.load_checkpoint(str(source))
    oracle = {
        name: reader.get_tensor(old)
        for name, old in (
            (k, next(o for o, v in values.items() if v is expected[k])) for k in expected
        )
    }
    if oracle:
        tf_save(tf, work / "oracle" / "ckpt", oracle)
    result = convert(source, mapping, work / "out")
    ours = dict(tf.train.list_variables(str(result.prefix)))
    assert set(ours) == set(oracle)
    mine = tf.train.load_checkpoint(str(result.prefix))
    for name, value in oracle.items():
        assert same_bits(mine.get_tensor(name), value)


def test_json_schema_accepts_valid_maps_and_rejects_typos() -> None:
    import jsonschema
    import yaml

    schema = json.loads((Path(__file__).parents[1] / "mappings" / "schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    good = yaml.safe_load(WIDEN)
    assert not list(validator.iter_errors(good))
    more = yaml.safe_load("""
        version: 1
        rules:
          - keep: ['a.*']
          - init: {name: x, shape: [2], dtype: float16, fill: normal, stddev: 0.1, seed: 1}
          - {name: x, cast: {dtype: float32, allow_precision_loss: true}}
          - {match: 'l_(\\d+)', rename: 'l_{1+1}', note: shift}
          - {match: '(.*)/qkv', split: {axis: 1, into: ['{1}/q', '{1}/k']}}
          - concat: {sources: [a, b], axis: 0, into: c}
          - from: {checkpoint: other/ckpt, match: 'head/.*'}
          - {name: p, resize: {shape: [4, 2], method: nearest}}
          - {name: e, remap_rows: {old_vocab: o.txt, new_vocab: n.txt, fill: zeros}}
    """)
    assert not list(validator.iter_errors(more))
    for bad in (
        {"version": 1, "rules": [{"name": "a", "renam": "b"}]},
        {"version": 1, "rules": [{"name": "a", "drop": True, "rename": "b"}]},
        {"version": 1, "rules": [{"name": "a", "cast": "float33"}]},
        {"rules": []},
    ):
        assert list(validator.iter_errors(bad)), bad
        with pytest.raises(MapError):
            parse_map(json.dumps(bad))  # the loader refuses what the schema refuses


def _restore_into_graph(
    tf: Any, prefix: Path, shapes: dict[str, tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """TF1 Saver restore into variables built for the new shapes (TF is the oracle)."""
    graph = tf.Graph()
    with graph.as_default():
        variables = {
            name: tf.compat.v1.get_variable(name, shape=list(shape))
            for name, shape in shapes.items()
        }
        with tf.compat.v1.Session(graph=graph) as session:
            tf.compat.v1.train.Saver(list(variables.values())).restore(session, str(prefix))
            return dict(zip(variables, session.run(list(variables.values())), strict=True))


def test_split_concat_resize_remap_and_from(tf: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    qkv = rng.standard_normal((4, 12)).astype(np.float32)
    positions = rng.standard_normal((8, 3)).astype(np.float32)
    embedding = np.arange(8, dtype=np.float32).reshape(4, 2)
    source = tf_save(
        tf,
        tmp_path / "a" / "ckpt",
        {"attn/qkv/kernel": qkv, "pos/embeddings": positions, "words/embeddings": embedding},
    )
    head = rng.standard_normal((2, 5)).astype(np.float32)
    tf_save(
        tf, tmp_path / "b" / "ckpt", {"head/kernel": head, "head/unused": np.ones(1, np.float32)}
    )
    (tmp_path / "old.txt").write_text("a\nb\nc\nd\n")
    (tmp_path / "new.txt").write_text("d\nx\na\n")
    mapping = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - match: '(.*)/qkv/kernel'
            split: {axis: 1, into: ['{1}/q/kernel', '{1}/k/kernel', '{1}/v/kernel']}
          - concat: {sources: [attn/q/kernel, attn/v/kernel], axis: 1, into: attn/qv/kernel}
          - name: pos/embeddings
            resize: {shape: [15, 3]}
          - name: words/embeddings
            remap_rows: {old_vocab: old.txt, new_vocab: new.txt, fill: constant, value: -1}
          - from: {checkpoint: b/ckpt, match: 'head/kernel'}
    """,
    )
    result = convert(source, mapping, tmp_path / "out")
    restored = _restore_into_graph(
        tf,
        result.prefix,
        {
            "attn/k/kernel": (4, 4),
            "attn/qv/kernel": (4, 8),
            "pos/embeddings": (15, 3),
            "words/embeddings": (3, 2),
            "head/kernel": (2, 5),
        },
    )
    assert same_bits(restored["attn/k/kernel"], qkv[:, 4:8])
    assert same_bits(restored["attn/qv/kernel"], np.concatenate([qkv[:, :4], qkv[:, 8:]], 1))
    expected = np.stack(
        [np.interp(np.linspace(0, 7, 15), np.arange(8), positions[:, c]) for c in range(3)], axis=1
    ).astype(np.float32)
    np.testing.assert_allclose(restored["pos/embeddings"], expected, rtol=1e-6)
    assert same_bits(restored["pos/embeddings"][[0, -1]], positions[[0, -1]])
    assert restored["words/embeddings"].tolist() == [[6, 7], [-1, -1], [0, 1]]
    assert same_bits(restored["head/kernel"], head)
    names = {name for name, _ in tf.train.list_variables(str(result.prefix))}
    assert names == {
        "attn/k/kernel",
        "attn/qv/kernel",
        "pos/embeddings",
        "words/embeddings",
        "head/kernel",
    }
    assert result.copied == 1  # head/kernel from the second checkpoint, as stored bytes


def test_new_operation_errors(small: Path, tmp_path: Path) -> None:
    cases = {
        "  - name: dense/kernel\n    split: {axis: 1, into: [a, b]}\n": (
            "axis 1 of [4, 3] (3) does not split into 2 equal parts"
        ),
        "  - concat: {sources: [dense/kernel, dense/bias], axis: 0, into: x}\n": (
            "they must agree except on axis 0"
        ),
        "  - concat: {sources: [dense/kernel, nope], into: x}\n": "'nope' do(es) not exist",
        "  - name: dense/bias\n    resize: {shape: [2, 2]}\n": "has rank 2",
    }
    for rules, message in cases.items():
        path = write_map(tmp_path, "version: 1\nrules:\n" + rules)
        with pytest.raises(MapError) as raised:
            plan(small, path)
        assert message in str(raised.value)
    missing_vocab = write_map(
        tmp_path,
        "version: 1\nrules:\n  - name: dense/bias\n"
        "    remap_rows: {old_vocab: nope.txt, new_vocab: nope.txt}\n",
        "v.yaml",
    )
    with pytest.raises(MapError, match="cannot read the old_vocab file"):
        plan(small, missing_vocab)


def _tf_keras_three_layers(seed: int) -> Any:
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(seed)
    model = tf_keras.Sequential(
        [
            tf_keras.Input((4,)),
            tf_keras.layers.Dense(4, name="a"),
            tf_keras.layers.Dense(4, name="b"),
            tf_keras.layers.Dense(2, name="c"),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(seed)
    model.fit(rng.standard_normal((8, 4)), rng.standard_normal((8, 2)), epochs=1, verbose=0)
    return model


def test_object_based_drop_and_move_rewrite_the_object_graph(tf: Any, tmp_path: Path) -> None:
    from ckptmigrate.formats.object_graph import rebuild_object_graph

    model = _tf_keras_three_layers(0)
    model.save_weights(str(tmp_path / "x.ckpt"))
    saved = {w.name: w.numpy().copy() for w in model.weights}
    from ckptmigrate import open_checkpoint

    with open_checkpoint(tmp_path / "x.ckpt") as ckpt:
        graph = ckpt.object_graph_bytes
        keys = ckpt.reader.variable_keys()
    assert graph is not None
    assert rebuild_object_graph(graph, {k: k for k in keys}) == graph  # identity is exact

    mapping = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - match: 'optimizer/.*'
            drop: true
          - match: 'layer_with_weights-0/(.*)'
            rename: 'swap/{1}'
          - match: 'layer_with_weights-1/(.*)'
            rename: 'layer_with_weights-0/{1}'
          - match: 'swap/(.*)'
            rename: 'layer_with_weights-1/{1}'
    """,
    )
    result = convert(tmp_path / "x.ckpt", mapping, tmp_path / "out")
    assert {name for name, _ in tf.train.list_variables(str(result.prefix))} == {
        "_CHECKPOINTABLE_OBJECT_GRAPH",
        *(
            f"layer_with_weights-{i}/{w}/.ATTRIBUTES/VARIABLE_VALUE"
            for i in range(3)
            for w in ("kernel", "bias")
        ),
    }
    fresh = _tf_keras_three_layers(1)
    status = fresh.load_weights(str(result.prefix))
    status.assert_existing_objects_matched()
    layers = {layer.name: layer for layer in fresh.layers}
    assert same_bits(layers["a"].kernel.numpy(), saved["b/kernel:0"])  # moved by the map
    assert same_bits(layers["b"].kernel.numpy(), saved["a/kernel:0"])
    assert same_bits(layers["c"].bias.numpy(), saved["c/bias:0"])


def test_object_based_rename_to_a_missing_object_is_refused(tf: Any, tmp_path: Path) -> None:
    model = _tf_keras_three_layers(0)
    model.save_weights(str(tmp_path / "x.ckpt"))
    mapping = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - match: 'layer_with_weights-2/(.*)'
            rename: 'layer_with_weights-3/{1}'
    """,
    )
    with pytest.raises(MapError, match="no object at 'layer_with_weights-3/"):
        plan(tmp_path / "x.ckpt", mapping)


def test_unchanged_shards_are_linked_unless_copy(tf: Any, tmp_path: Path) -> None:
    from models import save_sharded_checkpoint

    (tmp_path / "src").mkdir()
    source, values = save_sharded_checkpoint(tf, tmp_path / "src")
    rename = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - match: 'dev(\\d)/(.*)'
            rename: 'device_{1}/{2}'
    """,
    )
    linked = convert(source, rename, tmp_path / "linked")
    assert len(linked.linked_shards) == 2
    assert set(linked.linked_shards) <= {"reflink", "hard link", "copy"}
    shards = sorted(source.parent.glob("sharded.ckpt.data-*"))
    for shard in shards:
        out = linked.prefix.with_name(linked.prefix.name + shard.name[len("sharded.ckpt") :])
        assert out.read_bytes() == shard.read_bytes()
    reader = tf.train.load_checkpoint(str(linked.prefix))
    for name, value in values.items():
        assert same_bits(reader.get_tensor(name.replace("dev", "device_")), value)
    copied = convert(source, rename, tmp_path / "copied", copy=True)
    assert copied.linked_shards == ("copy", "copy")  # whole-file kernel copies, no links
    assert copied.copied == 4
    for shard in sorted((tmp_path / "copied").glob("*.data-*")):
        assert all(shard.stat().st_ino != s.stat().st_ino for s in shards)
    # One changed tensor: only its shard is rewritten; the other is carried over.
    partial = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - name: dev1/w0
            cast: float64
    """,
        "partial.yaml",
    )
    mixed = convert(source, partial, tmp_path / "mixed")
    assert len(mixed.linked_shards) == 1
    reader = tf.train.load_checkpoint(str(mixed.prefix))
    assert reader.get_tensor("dev1/w0").dtype == np.float64
    assert same_bits(reader.get_tensor("dev0/w1"), values["dev0/w1"])
    assert (tmp_path / "src" / "sharded.ckpt.index").exists()
    with open(shards[0], "rb") as f:  # the source is intact
        assert f.read() == shards[0].read_bytes()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_real_signal_mid_conversion_leaves_nothing(tf: Any, tmp_path: Path, sig: str) -> None:
    import signal
    import subprocess
    import sys

    source = tf_save(
        tf, tmp_path / "src" / "ckpt", {f"v{i}": np.full((64, 64), i, np.float32) for i in range(4)}
    )
    before = {p.name: p.read_bytes() for p in source.parent.iterdir()}
    mapping = write_map(tmp_path, "version: 1\nrules:\n  - match: '.*'\n    cast: float64\n")
    out = tmp_path / "out"
    # The real CLI in a real process, slowed after its first tensor so the signal lands
    # mid-write.
    script = textwrap.dedent(f"""
        import sys, time
        from ckptmigrate.conversion.options import Counts
        real = Counts.add
        def slow(*args, **kwargs):
            real(*args, **kwargs)
            print("wrote one", flush=True)
            time.sleep(30)
        Counts.add = slow
        sys.argv = ["ckptmigrate", "convert", {str(source)!r}, "--map", {str(mapping)!r},
                    "-o", {str(out)!r}, "--quiet"]
        from ckptmigrate.cli import main
        main()
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "wrote one"
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; nothing was written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.yaml", "src"]
    assert {p.name: p.read_bytes() for p in source.parent.iterdir()} == before


def test_full_disk_mid_conversion_is_exit_2_and_leaves_nothing(tf: Any, tmp_path: Path) -> None:
    import subprocess
    import sys

    source = tf_save(
        tf,
        tmp_path / "src" / "ckpt",
        {f"v{i}": np.full((128, 128), i, np.float32) for i in range(4)},
    )
    mapping = write_map(tmp_path, "version: 1\nrules:\n  - match: '.*'\n    cast: float64\n")
    out = tmp_path / "out"
    # RLIMIT_FSIZE makes the kernel refuse writes past 200 kB (EFBIG), as a full disk would.
    script = textwrap.dedent(f"""
        import resource, signal, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        sys.argv = ["ckptmigrate", "convert", {str(source)!r}, "--map", {str(mapping)!r},
                    "-o", {str(out)!r}]
        from ckptmigrate.cli import main
        main()
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert "cannot write" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.yaml", "src"]


def test_corrupt_source_tensor_aborts_convert_with_nothing_written(tf: Any, tmp_path: Path) -> None:
    from ckptmigrate import ChecksumMismatchError

    source = tf_save(
        tf, tmp_path / "src" / "ckpt", {f"v{i}": np.full((64, 64), i, np.float32) for i in range(6)}
    )
    data_file = source.with_name("ckpt.data-00000-of-00001")
    data = bytearray(data_file.read_bytes())
    data[-7] ^= 0x08
    data_file.write_bytes(bytes(data))
    mapping = write_map(
        tmp_path,
        """
        version: 1
        rules:
          - match: 'v(\\d)'
            rename: 'w{1}'
          - name: w0
            cast: float64
    """,
    )
    # v0 is transformed, so the shard is copied, not linked; the others are checked aside.
    with pytest.raises(ChecksumMismatchError, match="CRC32C"):
        convert(source, mapping, tmp_path / "out", durable=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.yaml", "src"]


def test_whole_shard_copies_are_byte_identical_and_corruption_stays_detectable(
    tf: Any, tmp_path: Path
) -> None:
    from ckptmigrate import ChecksumMismatchError, inspect_checkpoint

    source = tf_save(
        tf, tmp_path / "src" / "ckpt", {f"v{i}": np.full((32, 32), i, np.float32) for i in range(4)}
    )
    data_file = source.with_name("ckpt.data-00000-of-00001")
    data = bytearray(data_file.read_bytes())
    data[100] ^= 0x01
    data_file.write_bytes(bytes(data))
    mapping = write_map(tmp_path, "version: 1\nrules:\n  - match: 'v(.)'\n    rename: 'w{1}'\n")
    result = convert(source, mapping, tmp_path / "out", copy=True)
    copied = result.prefix.with_name(result.prefix.name + ".data-00000-of-00001")
    assert copied.read_bytes() == bytes(data)  # carried over as is, never silently "fixed"
    with pytest.raises(ChecksumMismatchError):
        inspect_checkpoint(result.prefix, check_crc=True)


def test_a_shape_rule_reaches_the_slots_of_its_variable(tf: Any, tmp_path: Path) -> None:
    """Slots follow their variable's layout, but their new cells hold optimizer state (an
    accumulator's mean, else zeros), not the variable's initialiser."""
    prefix = tf_save(
        tf,
        tmp_path / "ckpt",
        {
            "w": np.ones(3, np.float32),
            "w/Adagrad": np.full(3, 0.1, np.float32),  # an accumulator: positive
            "w/Momentum": np.float32([-1, 2, 1]),  # signed
        },
    )
    map_path = tmp_path / "m.yaml"
    map_path.write_text(
        "version: 1\nrules:\n"
        "  - name: w\n    pad: {shape: [5], fill: ones}\n"
        "  - name: w\n    add_to_block: {axis: 0, blocks: 5, block: 0, value: 2.0}\n"
    )
    result = convert(prefix, map_path, tmp_path / "out")
    reader = tf.train.load_checkpoint(str(result.prefix))
    np.testing.assert_array_equal(reader.get_tensor("w"), [3, 1, 1, 1, 1])
    np.testing.assert_array_equal(reader.get_tensor("w/Adagrad"), np.float32([0.1] * 5))
    np.testing.assert_array_equal(reader.get_tensor("w/Momentum"), [-1, 2, 1, 0, 0])
