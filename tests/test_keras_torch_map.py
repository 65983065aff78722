"""The bundled map keras-to-torch (issue 15, item 2, "The proof"): Keras models' weights,
migrated with the map to the equivalent torch.nn modules (verified by load_state_dict(
strict=True)), give the same outputs on the same inputs to 1e-5: a CNN (Conv2D, BatchNorm
with trained statistics, Dense after Flatten) and a sequence model (Embedding, LSTM, GRU,
LayerNormalization, Dense). Skipped without torch or Keras."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ckptmigrate

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
nn = torch.nn


@pytest.fixture
def keras() -> Any:
    return pytest.importorskip("keras")


def _randomise(model: Any, seed: int) -> None:
    """Every weight random (biases, statistics and gammas too), variances positive."""
    rng = np.random.default_rng(seed)
    values = []
    for weight in model.weights:
        shape = tuple(weight.shape)
        value = rng.standard_normal(shape) * 0.5
        if "variance" in weight.path:
            value = np.abs(value) + 0.5
        values.append(value.astype(np.float32))
    model.set_weights(values)


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(2, 4, 3)
        self.batch_normalization = nn.BatchNorm2d(4, eps=1e-3)
        self.dense = nn.Linear(6 * 6 * 4, 5)

    def forward(self, x: Any) -> Any:
        y = self.batch_normalization(torch.relu(self.conv2d(x)))
        return self.dense(y.permute(0, 2, 3, 1).flatten(1))  # Keras flattens channels-last


class Sequence(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(20, 6)
        self.lstm = nn.LSTM(6, 5, batch_first=True)
        self.gru = nn.GRU(5, 4, batch_first=True)
        self.layer_normalization = nn.LayerNorm(4, eps=1e-3)
        self.dense = nn.Linear(4, 3)

    def forward(self, ids: Any) -> Any:
        x, _ = self.lstm(self.embedding(ids))
        x, _ = self.gru(x)
        return self.dense(self.layer_normalization(x[:, -1]))


def _migrate(model: Any, module: nn.Module, tmp_path: Path) -> nn.Module:
    weights = tmp_path / "model.weights.h5"
    model.save_weights(weights)
    out = tmp_path / "model.safetensors"
    result = ckptmigrate.convert(
        weights,
        "keras-to-torch",
        out,
        target=module,
        format="safetensors",
        verify=True,
        fill_missing_from_target=True,  # BatchNorm's num_batches_tracked
    )
    assert result.verification is not None
    assert result.verification.ok, result.verification.verdict
    module.load_state_dict(safetensors_torch.load_file(out), strict=True)
    return module.eval()


def test_a_cnn_computes_the_same(keras: Any, tmp_path: Path) -> None:
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(5),
        ]
    )
    _randomise(model, 1)
    module = _migrate(model, CNN(), tmp_path)
    x = np.random.default_rng(2).standard_normal((3, 8, 8, 2)).astype(np.float32)
    want = np.asarray(model(x, training=False))
    with torch.no_grad():
        got = module(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_an_lstm_and_gru_compute_the_same(keras: Any, tmp_path: Path) -> None:
    model = keras.Sequential(
        [
            keras.Input((7,), dtype="int32"),
            keras.layers.Embedding(20, 6),
            keras.layers.LSTM(5, return_sequences=True),
            keras.layers.GRU(4),
            keras.layers.LayerNormalization(),
            keras.layers.Dense(3),
        ]
    )
    _randomise(model, 3)
    module = _migrate(model, Sequence(), tmp_path)
    ids = np.random.default_rng(4).integers(0, 20, size=(3, 7)).astype(np.int32)
    want = np.asarray(model(ids, training=False))
    with torch.no_grad():
        got = module(torch.from_numpy(ids).long()).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_a_gru_without_reset_after_is_refused(keras: Any, tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.GRU(4, reset_after=False)])
    model.save_weights(tmp_path / "gru.weights.h5")
    with pytest.raises(ckptmigrate.CkptMigrateError, match=r"split sizes \[1, 1\]"):
        ckptmigrate.plan(tmp_path / "gru.weights.h5", "keras-to-torch", format="safetensors")


def test_variable_names_of_default_named_layers_map_too(tmp_path: Path) -> None:
    """The <layer>/<weight> form (tf-keras names, Keras 3 variable paths) with a leading
    scope: every layout as torch has it, the LSTM bias split with a zero bias_hh, the GRU's
    gate blocks reordered and its bias rows split."""
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(5)
    source = {
        "model/dense_1/kernel": rng.standard_normal((4, 3)),
        "model/dense_1/bias": rng.standard_normal(3),
        "model/conv2d/kernel": rng.standard_normal((3, 2, 5, 7)),
        "model/batch_normalization/moving_variance": rng.standard_normal(7),
        "model/embedding/embeddings": rng.standard_normal((9, 5)),
        "model/lstm/lstm_cell/kernel": rng.standard_normal((5, 16)),
        "model/lstm/lstm_cell/bias": rng.standard_normal(16),
        "model/gru/gru_cell/recurrent_kernel": rng.standard_normal((4, 12)),
        "model/gru/gru_cell/bias": rng.standard_normal((2, 12)),
    }
    source = {k: v.astype(np.float32) for k, v in source.items()}
    save_file(source, str(tmp_path / "keras.safetensors"))
    out = tmp_path / "torch.safetensors"
    ckptmigrate.convert(tmp_path / "keras.safetensors", "keras-to-torch", out, format="safetensors")
    got = load_file(str(out))

    def gru(x: np.ndarray) -> np.ndarray:  # blocks z, r, h -> r, z, h on the last axis
        z, r, h = np.split(x, 3, axis=-1)
        return np.concatenate([r, z, h], axis=-1)

    want = {
        "model.dense_1.weight": source["model/dense_1/kernel"].T,
        "model.dense_1.bias": source["model/dense_1/bias"],
        "model.conv2d.weight": source["model/conv2d/kernel"].transpose(3, 2, 0, 1),
        "model.batch_normalization.running_var": source[
            "model/batch_normalization/moving_variance"
        ],
        "model.embedding.weight": source["model/embedding/embeddings"],
        "model.lstm.weight_ih_l0": source["model/lstm/lstm_cell/kernel"].T,
        "model.lstm.bias_ih_l0": source["model/lstm/lstm_cell/bias"],
        "model.lstm.bias_hh_l0": np.zeros(16, np.float32),
        "model.gru.weight_hh_l0": gru(source["model/gru/gru_cell/recurrent_kernel"]).T,
        "model.gru.bias_ih_l0": gru(source["model/gru/gru_cell/bias"])[0],
        "model.gru.bias_hh_l0": gru(source["model/gru/gru_cell/bias"])[1],
    }
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].tobytes() == np.ascontiguousarray(value).tobytes(), key
