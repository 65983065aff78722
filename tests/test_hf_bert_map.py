"""The bundled map tf1-bert-to-hf-bert (issue 15, item 2, "The proof"): a BERT-shaped TF1
checkpoint with google-research/bert's names, converted to safetensors with the map, loads
into transformers' BertModel with load_state_dict(strict=True), and the model's outputs on a
fixed input equal a forward pass of the same weights in TensorFlow (written here from the
BERT paper's definition: embeddings + LayerNorm, multi-head self-attention, exact-erf GELU,
the feed-forward block, the tanh pooler) to 1e-5. Skipped without torch or transformers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bert_tf1 import BertSize, bert_shapes
from typer.testing import CliRunner

import ckptmigrate
from ckptmigrate.cli import app

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")
runner = CliRunner()

SIZE = BertSize("h32-a4", hidden=32, heads=4, layers=2, intermediate=64, vocab=40, seed=32)
EPS = 1e-12  # google-research/bert's LayerNorm epsilon, and BertConfig's default


def _values(size: BertSize) -> dict[str, np.ndarray]:
    """Weights large enough that a wrong layout shows (LayerNorm gammas near 1, kernels of
    unit-scale outputs), Adam slots for each, global_step."""
    rng = np.random.default_rng(size.seed)
    values = {}
    for name, shape in bert_shapes(size).items():
        if name.endswith("gamma"):
            value = 1 + 0.2 * rng.standard_normal(shape)
        elif name.endswith("kernel"):
            value = rng.standard_normal(shape) / math.sqrt(shape[0])
        else:
            value = 0.3 * rng.standard_normal(shape)
        values[name] = value.astype(np.float32)
        values[f"{name}/adam_m"] = rng.standard_normal(shape).astype(np.float32)
        values[f"{name}/adam_v"] = np.abs(rng.standard_normal(shape)).astype(np.float32)
    values["global_step"] = np.array(7, np.int64)
    return values


def _save(tf: Any, values: dict[str, np.ndarray], prefix: Path) -> Path:
    """A TF1 Saver checkpoint of ``values`` (ref variables, as BERT's were)."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        variables = [
            v1.get_variable(name, initializer=tf.constant(value), use_resource=False)
            for name, value in values.items()
        ]
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            saved = v1.train.Saver(variables).save(session, str(prefix), write_meta_graph=False)
    return Path(saved)


def _tf_bert(tf: Any, prefix: Path, ids: np.ndarray, types: np.ndarray) -> tuple[Any, Any]:
    """BERT's forward pass in TensorFlow on the checkpoint's own values (no dropout, every
    position attended): the sequence output and the pooled output."""
    reader = tf.train.load_checkpoint(str(prefix))

    def w(name: str) -> Any:
        return tf.constant(reader.get_tensor(f"bert/{name}"))

    def layer_norm(x: Any, scope: str) -> Any:
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(variance + EPS) * w(f"{scope}/gamma") + w(f"{scope}/beta")

    def dense(x: Any, scope: str) -> Any:
        return tf.matmul(x, w(f"{scope}/kernel")) + w(f"{scope}/bias")

    batch, length = ids.shape
    heads, size = SIZE.heads, SIZE.hidden // SIZE.heads
    x = (
        tf.gather(w("embeddings/word_embeddings"), ids)
        + tf.gather(w("embeddings/token_type_embeddings"), types)
        + w("embeddings/position_embeddings")[:length]
    )
    x = layer_norm(x, "embeddings/LayerNorm")
    for n in range(SIZE.layers):
        scope = f"encoder/layer_{n}"

        def split(t: Any) -> Any:
            return tf.transpose(tf.reshape(t, [batch, length, heads, size]), [0, 2, 1, 3])

        q, k, v = (
            split(dense(x, f"{scope}/attention/self/{p}")) for p in ("query", "key", "value")
        )
        scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(size)
        context = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, length, SIZE.hidden])
        attended = dense(context, f"{scope}/attention/output/dense")
        x = layer_norm(attended + x, f"{scope}/attention/output/LayerNorm")
        inner = dense(x, f"{scope}/intermediate/dense")
        inner = 0.5 * inner * (1.0 + tf.math.erf(inner / math.sqrt(2.0)))  # exact GELU
        x = layer_norm(dense(inner, f"{scope}/output/dense") + x, f"{scope}/output/LayerNorm")
    pooled = tf.tanh(dense(x[:, 0], "pooler/dense"))
    return x.numpy(), pooled.numpy()


def _bert_model(layers: int = SIZE.layers) -> Any:
    config = transformers.BertConfig(
        vocab_size=SIZE.vocab,
        hidden_size=SIZE.hidden,
        num_hidden_layers=layers,
        num_attention_heads=SIZE.heads,
        intermediate_size=SIZE.intermediate,
        max_position_embeddings=SIZE.max_positions,
        type_vocab_size=SIZE.type_vocab,
        hidden_act="gelu",
        layer_norm_eps=EPS,
    )
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


def test_the_converted_checkpoint_computes_what_bert_computes(tf: Any, tmp_path: Path) -> None:
    prefix = _save(tf, _values(SIZE), tmp_path / "bert" / "bert_model.ckpt")
    model = _bert_model()
    out = tmp_path / "model.safetensors"
    result = ckptmigrate.convert(
        prefix, "tf1-bert-to-hf-bert", out, target=model, format="safetensors", verify=True
    )
    assert result.verification is not None
    assert result.verification.ok, result.verification.verdict
    assert result.verification.compared == len(model.state_dict())
    state = safetensors_torch.load_file(out)
    model.load_state_dict(state, strict=True)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, SIZE.vocab, size=(3, 11))
    types = rng.integers(0, SIZE.type_vocab, size=(3, 11))
    with torch.no_grad():
        got = model(
            input_ids=torch.from_numpy(ids),
            token_type_ids=torch.from_numpy(types),
            attention_mask=torch.ones(3, 11, dtype=torch.int64),
        )
    sequence, pooled = _tf_bert(tf, prefix, ids, types)
    assert float(np.abs(sequence).mean()) > 0.1  # a real signal, not near-zero activations
    np.testing.assert_allclose(got.last_hidden_state.numpy(), sequence, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.pooler_output.numpy(), pooled, rtol=0, atol=1e-5)


def test_check_names_what_a_wrong_size_lacks(tf: Any, tmp_path: Path) -> None:
    """check --map against a model of another depth: the third layer's weights are missing,
    and the command says so (exit 1), before anything is written."""
    prefix = _save(tf, _values(SIZE), tmp_path / "bert" / "bert_model.ckpt")
    deeper = _bert_model(layers=SIZE.layers + 1)
    torch.save(deeper.state_dict(), tmp_path / "deeper.bin")
    result = runner.invoke(
        app,
        [
            "check",
            str(prefix),
            "--map",
            "tf1-bert-to-hf-bert",
            "--target",
            str(tmp_path / "deeper.bin"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "encoder.layer.2.output.dense.weight" in result.stdout
