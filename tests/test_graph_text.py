"""graph.pbtxt (a text GraphDef, in every Estimator model_dir) as a check target: the same
verdict and findings as the model's .meta, partitioned variables included (issue 10.7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import ckptmigrate
from ckptmigrate.compare import Kind


def _model(tf: Any, directory: Path, width: int) -> tuple[str, Path, Path]:
    """A checkpoint, its .meta and its graph.pbtxt, with a partitioned embedding, resource
    and ref variables, and a global step."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.train.create_global_step()
        v1.get_variable("input/embedding", shape=(12, 4), partitioner=v1.fixed_size_partitioner(3))
        v1.get_variable("dnn/hidden/kernel", shape=(4, width), use_resource=True)
        v1.get_variable("dnn/hidden/bias", shape=(width,), use_resource=False)
        saver = v1.train.Saver()
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            prefix = saver.save(session, str(directory / "model.ckpt"), global_step=0)
        tf.io.write_graph(graph.as_graph_def(), str(directory), "graph.pbtxt")
    return prefix, Path(prefix + ".meta"), directory / "graph.pbtxt"


@pytest.fixture(scope="module")
def models(tf: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[str, Path, Path]]:
    return {w: _model(tf, tmp_path_factory.mktemp(f"w{w}"), w) for w in (8, 16)}


def test_graph_text_and_meta_give_the_same_report(
    models: dict[int, tuple[str, Path, Path]],
) -> None:
    prefix, _, _ = models[8]
    for width in (8, 16):
        _, meta, pbtxt = models[width]
        by_meta, by_text = ckptmigrate.check(prefix, meta), ckptmigrate.check(prefix, pbtxt)
        assert by_text.ok == by_meta.ok == (width == 8)
        assert by_text.headline == by_meta.headline
        found = {(f.kind, f.name, f.tensorflow_error) for f in by_text.findings}
        assert found == {(f.kind, f.name, f.tensorflow_error) for f in by_meta.findings}
    partitioned = [f for f in by_text.findings if f.name == "input/embedding"]
    assert partitioned[0].kind is Kind.MATCHED
    assert partitioned[0].target.shape == (12, 4)


def test_a_file_that_is_not_a_graph_is_a_clean_error(
    models: dict[int, tuple[str, Path, Path]], tmp_path: Path
) -> None:
    bad = tmp_path / "graph.pbtxt"
    bad.write_text("node { name: 'x' op: \n")
    with pytest.raises(ckptmigrate.CkptMigrateError, match="text GraphDef"):
        ckptmigrate.check(models[8][0], bad)
