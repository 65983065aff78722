"""The map language follows a model's size (issue 11, item 10): size expressions in
reshape, pad, slice bounds and init shapes, parameters a map declares and the caller sets
(--set heads=12, params=), and replace: renames. One map converts two model sizes, and
TensorFlow reads back exactly what numpy computes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers import same_bits, tf_save
from typer.testing import CliRunner

from ckptmigrate.cli import app
from ckptmigrate.conversion import convert, plan
from ckptmigrate.mapping.located import MapError
from ckptmigrate.mapping.schema import load_map

ATTENTION_MAP = textwrap.dedent("""\
    version: 1
    params: {heads: 2, extra: 1}
    rules:
      - match: 'bert/(.*)/query/kernel'
        reshape: [dim0, heads, 'dim1/heads']
      - match: 'bert/(.*)/query/bias'
        pad: {shape: ['dim0 + extra'], fill: zeros}
      - match: 'bert/(.*)/key/kernel'
        slice: '[:, :dim1/heads]'
      - replace: {old: 'bert/', new: 'encoder/'}
        match: 'bert/.*'
      - init: {name: encoder/new/kernel, shape: [heads, 4]}
""")


def _bert(tf: Any, directory: Path, hidden: int, rng: np.random.Generator) -> dict[str, Any]:
    tensors = {
        "bert/layer_0/query/kernel": rng.standard_normal((hidden, hidden)).astype("f4"),
        "bert/layer_0/query/bias": rng.standard_normal(hidden).astype("f4"),
        "bert/layer_0/key/kernel": rng.standard_normal((hidden, hidden)).astype("f4"),
        "bert/layer_0/key/kernel/Adagrad": np.full((hidden, hidden), 0.1, "f4"),
    }
    return {"prefix": tf_save(tf, directory / "model.ckpt", tensors), "tensors": tensors}


@pytest.mark.parametrize(("hidden", "heads", "settings"), [(8, 2, {}), (12, 3, {"heads": 3})])
def test_one_map_converts_two_model_sizes(
    tf: Any, tmp_path: Path, hidden: int, heads: int, settings: dict[str, int]
) -> None:
    source = _bert(tf, tmp_path / "src", hidden, np.random.default_rng(hidden))
    (tmp_path / "attention.yaml").write_text(ATTENTION_MAP)
    result = convert(
        source["prefix"], tmp_path / "attention.yaml", tmp_path / "out", params=settings
    )
    reader = tf.train.load_checkpoint(str(result.prefix))
    t = source["tensors"]
    q = reader.get_tensor("encoder/layer_0/query/kernel")
    assert same_bits(q, t["bert/layer_0/query/kernel"].reshape(hidden, heads, hidden // heads))
    bias = reader.get_tensor("encoder/layer_0/query/bias")
    assert same_bits(bias[:hidden], t["bert/layer_0/query/bias"])
    assert bias.shape == (hidden + 1,)
    assert not bias[hidden:].any()
    k = reader.get_tensor("encoder/layer_0/key/kernel")
    assert same_bits(k, t["bert/layer_0/key/kernel"][:, : hidden // heads])
    # The Adagrad slot follows its variable: sliced the same way, renamed by replace.
    slot = reader.get_tensor("encoder/layer_0/key/kernel/Adagrad")
    assert slot.shape == (hidden, hidden // heads)
    assert reader.get_tensor("encoder/new/kernel").shape == (heads, 4)
    assert load_map(tmp_path / "attention.yaml", settings).params == tuple(
        sorted({"heads": 2, "extra": 1, **settings}.items())
    )


def test_parameters_and_expressions_are_checked_where_written(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(ATTENTION_MAP)
    with pytest.raises(MapError, match="no parameter 'layers'"):
        load_map(path, {"layers": 3})
    path.write_text("version: 1\nrules:\n  - {name: a, reshape: [dim0, heads]}\n")
    with pytest.raises(
        MapError, match=r"m.yaml:3:\d+: bad reshape size 'heads': unknown parameter"
    ):
        load_map(path)
    path.write_text("version: 1\nrules:\n  - init: {name: a, shape: [dim0]}\n")
    with pytest.raises(MapError, match="reads a dimension; there is none"):
        load_map(path)
    path.write_text("version: 1\nparams: {dim0: 3}\nrules: []\n")
    with pytest.raises(MapError, match="not a parameter name"):
        load_map(path)


def test_an_expression_that_does_not_fit_names_rule_and_variable(tf: Any, tmp_path: Path) -> None:
    source = _bert(tf, tmp_path / "src", 8, np.random.default_rng(0))
    (tmp_path / "m.yaml").write_text(ATTENTION_MAP)
    with pytest.raises(
        MapError,
        match=r"rule 1, variable 'bert/layer_0/query/kernel': reshape: size 'dim1/heads' "
        r"divides 8 by 3",
    ):
        plan(source["prefix"], tmp_path / "m.yaml", params={"heads": 3})


def test_cli_set(tf: Any, tmp_path: Path) -> None:
    source = _bert(tf, tmp_path / "src", 12, np.random.default_rng(1))
    (tmp_path / "m.yaml").write_text(ATTENTION_MAP)
    runner = CliRunner()
    base = ["convert", str(source["prefix"]), "--map", str(tmp_path / "m.yaml"), "--dry-run"]
    done = runner.invoke(app, [*base, "--set", "heads=4", "--json"])
    assert done.exit_code == 0, done.output
    shapes = {v["name"]: v["shape"] for v in json.loads(done.stdout)["outputs"]}
    assert shapes["encoder/layer_0/query/kernel"] == [12, 4, 3]
    bad = runner.invoke(app, [*base, "--set", "heads=four"])
    assert bad.exit_code == 2
    assert "'heads=four' is not NAME=INTEGER" in bad.stderr


def test_the_json_schema_knows_the_new_forms() -> None:
    import jsonschema

    schema = json.loads((Path(__file__).parents[1] / "mappings" / "schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    assert not list(validator.iter_errors(yaml.safe_load(ATTENTION_MAP)))
    bad = {"version": 1, "rules": [{"match": "a", "replace": {"old": "a"}}]}
    assert list(validator.iter_errors(bad))
