"""Peer equivalence (issue 11, "The proof"): the bundled map "bert-to-model-garden" with
``--set heads=N`` does what TensorFlow Model Garden's BERT converter
(official/nlp/tools/tf2_bert_encoder_checkpoint_converter.py) does, bit for bit, for two
model sizes.

The oracle is Model Garden's converter itself, run by tests/golden/make_model_garden_golden.py
in a virtualenv with tf-models-official (it pins its own TensorFlow); its outputs are kept
under tests/golden/model_garden/<size>/. Two of them are compared:

- the name-based checkpoint the converter writes first (renames, attention kernels reshaped
  by num_heads, Adam state excluded) and restores its BertEncoder from: the map's own output
  must hold exactly the names the encoder reads from it, with the same bits;
- its final, object-based checkpoint (``tf.train.Checkpoint(encoder=BertEncoder)``): the
  map's output written ``--target`` that checkpoint must equal it key for key, bit for bit.

The sources are re-created here with TensorFlow from tests/bert_tf1.py's seeds; their
fingerprint must equal the one the golden files were made from. With tf-models-official
importable (here, or in the interpreter MODEL_GARDEN_PYTHON names) the converter also runs
live on fresh checkpoints.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bert_tf1 import SIZES, BertSize, bert_values, fingerprint, save_bert_checkpoint
from helpers import same_bits
from typer.testing import CliRunner

from ckptmigrate import convert
from ckptmigrate.cli import app

MAP = "bert-to-model-garden"
GOLDEN = Path(__file__).parent / "golden" / "model_garden"
GOLDEN_SCRIPT = Path(__file__).parent / "golden" / "make_model_garden_golden.py"
OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"

size_params = pytest.mark.parametrize("size", SIZES, ids=[s.name for s in SIZES])


def _values(tf: Any, prefix: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name != OBJECT_GRAPH
    }


def _original_names(tf: Any, prefix: Path) -> dict[str, str]:
    """Checkpoint key -> the variable name it was saved under, from the object graph as
    TensorFlow parses it: the names a name-based restore into the same model looks up."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(str(prefix)).get_tensor(OBJECT_GRAPH))
    return {
        attribute.checkpoint_key: attribute.full_name
        for node in graph.nodes
        for attribute in node.attributes
    }


def _described(value: np.ndarray) -> dict[str, Any]:
    value = np.ascontiguousarray(value)
    return {
        "dtype": value.dtype.str,
        "shape": list(value.shape),
        "sha256": hashlib.sha256(value.tobytes()).hexdigest(),
    }


def _source(tf: Any, tmp_path: Path, size: BertSize, golden: Path) -> Path:
    """The size's google-research/bert checkpoint, proven to be the one ``golden`` was
    made from (read back through TensorFlow, not only as generated)."""
    prefix = save_bert_checkpoint(tf, tmp_path / "bert", size)
    recorded = json.loads((golden / "source.json").read_text())
    assert recorded["config"] == size.config()
    assert fingerprint(_values(tf, prefix)) == recorded["source_fingerprint"]
    assert fingerprint(bert_values(size)) == recorded["source_fingerprint"]
    return prefix


def _assert_names_as_model_garden(tf: Any, output: Path, golden: Path) -> None:
    """The map's name-based output holds exactly what Model Garden's encoder restores from
    the converter's first step, with the same bits."""
    tf1_step = json.loads((golden / "tf1_names.json").read_text())
    # The encoder's variables (the converter saves tf.train.Checkpoint(encoder=...), whose
    # own save_counter is no model variable).
    encoder_reads = {
        name
        for key, name in _original_names(tf, golden / "ckpt-1").items()
        if key.startswith("encoder/")
    }
    # What the converter's first step keeps but the encoder never reads: the step counter
    # and the renamed pre-training heads. The map drops them; nothing else may be missing.
    left_behind = set(tf1_step) - encoder_reads
    assert left_behind, "the sources have cls/ heads and global_step"
    assert all(n == "global_step" or "cls/" in n or "predictions/" in n for n in left_behind)
    assert encoder_reads <= set(tf1_step)

    ours = _values(tf, output)
    assert set(ours) == encoder_reads
    for name in sorted(encoder_reads):
        assert _described(ours[name]) == tf1_step[name], name


def _assert_same_checkpoint(tf: Any, ours: Path, theirs: Path) -> None:
    mine, golden = _values(tf, ours), _values(tf, theirs)
    assert set(mine) == set(golden)
    for key in sorted(golden):
        assert same_bits(mine[key], golden[key]), key
    # And the object graph says the same about which object holds which value.
    assert _original_names(tf, ours) == _original_names(tf, theirs)


@size_params
def test_map_gives_model_gardens_names_and_values(tf: Any, tmp_path: Path, size: BertSize) -> None:
    golden = GOLDEN / size.name
    source = _source(tf, tmp_path, size, golden)
    result = convert(source, MAP, tmp_path / "out", params={"heads": size.heads}, require_all=True)
    assert not result.plan.warnings
    _assert_names_as_model_garden(tf, result.prefix, golden)


@size_params
def test_map_into_model_gardens_checkpoint_equals_its_converter(
    tf: Any, tmp_path: Path, size: BertSize
) -> None:
    """By the command line, as a user converts: the map with --set heads=N, written into
    the BertEncoder checkpoint Model Garden's converter made, equals that checkpoint."""
    golden = GOLDEN / size.name
    source = _source(tf, tmp_path, size, golden)
    out = tmp_path / "encoder"
    cli = CliRunner().invoke(
        app,
        [
            "convert",
            str(source),
            "--map",
            MAP,
            "--set",
            f"heads={size.heads}",
            "--target",
            str(golden / "ckpt-1"),
            "-o",
            str(out),
            "--json",
        ],
    )
    assert cli.exit_code == 0, cli.output
    counts = json.loads(cli.stdout)
    encoder_variables = len(_original_names(tf, golden / "ckpt-1")) - 1  # save_counter
    # Every encoder variable came from the source through the map; only the checkpoint's
    # own counter is the target's.
    assert counts["copied"] + counts["transformed"] == encoder_variables
    assert counts["from_target"] == 1
    assert counts["initialised"] == 0
    _assert_same_checkpoint(tf, Path(counts["output"]), golden / "ckpt-1")


def test_heads_that_do_not_fit_are_refused(tf: Any, tmp_path: Path) -> None:
    size = SIZES[0]
    source = _source(tf, tmp_path, size, GOLDEN / size.name)
    # 8 is not divisible by 3: refused when the plan meets the shape, naming the variable.
    bad = CliRunner().invoke(
        app, ["convert", str(source), "--map", MAP, "--set", "heads=3", "-o", str(tmp_path / "a")]
    )
    assert bad.exit_code == 2, bad.output
    assert "bert/encoder/layer_0/attention/self/key/kernel" in bad.output
    assert "dim1/heads" in bad.output
    assert "Traceback" not in bad.output
    # 4 divides 8 but is the wrong head count: the heads come out [8, 4, 2] where the
    # encoder has [8, 2, 4], and convert --target refuses instead of writing a wrong model.
    wrong = CliRunner().invoke(
        app,
        [
            "convert",
            str(source),
            "--map",
            MAP,
            "--set",
            "heads=4",
            "--target",
            str(GOLDEN / size.name / "ckpt-1"),
            "-o",
            str(tmp_path / "b"),
        ],
    )
    assert wrong.exit_code == 2, wrong.output
    assert "transformer/layer_0/self_attention/key/kernel is [8, 4, 2]" in wrong.output
    assert "needs [8, 2, 4]" in wrong.output
    assert not (tmp_path / "b").exists()


# -- live: Model Garden's converter run now --------------------------------------------------


def _model_garden_python() -> str | None:
    """An interpreter with tf-models-official: this one, or MODEL_GARDEN_PYTHON's (it pins
    its own TensorFlow, so it usually lives in a virtualenv of its own)."""
    if importlib.util.find_spec("official") is not None:
        return sys.executable
    return os.environ.get("MODEL_GARDEN_PYTHON") or None


@size_params
def test_live_model_garden_converter(tf: Any, tmp_path: Path, size: BertSize) -> None:
    python = _model_garden_python()
    if python is None:
        pytest.skip("tf-models-official is not importable (set MODEL_GARDEN_PYTHON to a venv's)")
    live = tmp_path / "model_garden"
    subprocess.run(
        [python, str(GOLDEN_SCRIPT), "--out", str(live), "--size", size.name],
        check=True,
        capture_output=True,
    )
    source = _source(tf, tmp_path, size, live / size.name)
    named = convert(source, MAP, tmp_path / "named", params={"heads": size.heads})
    _assert_names_as_model_garden(tf, named.prefix, live / size.name)
    into = convert(
        source,
        MAP,
        tmp_path / "encoder",
        params={"heads": size.heads},
        target=live / size.name / "ckpt-1",
    )
    _assert_same_checkpoint(tf, into.prefix, live / size.name / "ckpt-1")
