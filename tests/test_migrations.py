"""Migrations judged by the model that comes out (issue 11): the converted weights land where
the map says, and one real training step of the target's optimizer on a suggested
migration leaves no NaN or Inf. TensorFlow and Keras are the oracles: every checkpoint is
made, loaded and trained by them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from ckptmigrate import convert
from ckptmigrate.cli import app
from ckptmigrate.mapping.retarget import PairingConflictError

runner = CliRunner()

LAYERS = ("layer0", "layer1", "layer2", "head")

SWAP = """\
version: 1
description: the two hidden [8, 8] layers change places
rules:
  - match: 'layer_with_weights-1/(.*)'
    rename: 'layer2/{1}'
  - match: 'layer_with_weights-2/(.*)'
    rename: 'layer1/{1}'
  - name: save_counter
    drop: true
"""


def _tf_keras_stack(directory: Path) -> Any:
    """A tf-keras [4] -> 8 -> 8 -> 8 -> 3 Dense stack (two same-shape hidden layers),
    saved with save_weights into ``directory``; returns the model."""
    import tf_keras

    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(3)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Dense(8, activation="relu", input_shape=(4,), name="layer0"),
            tf_keras.layers.Dense(8, activation="relu", name="layer1"),
            tf_keras.layers.Dense(8, activation="relu", name="layer2"),
            tf_keras.layers.Dense(3, name="head"),
        ]
    )
    model.save_weights(str(directory / "x.ckpt"))
    return model


def _keras3_stack(seed: int) -> Any:
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((4,)),
            *(
                keras.layers.Dense(u, activation="relu" if n != "head" else None, name=n)
                for n, u in zip(LAYERS, (8, 8, 8, 3), strict=True)
            ),
        ],
        name="stack",
    )


def test_keras_format_follows_a_map_that_swaps_two_layers(tf: Any, tmp_path: Path) -> None:
    pytest.importorskip("tf_keras")
    old = _tf_keras_stack(tmp_path / "old")
    archive = tmp_path / "new.keras"
    _keras3_stack(seed=5).save(archive)
    swap = tmp_path / "swap.yaml"
    swap.write_text(SWAP)
    out = tmp_path / "swapped.weights.h5"
    done = runner.invoke(
        app,
        [
            "convert",
            str(tmp_path / "old"),
            "--map",
            str(swap),
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
    assert "verify ok" in done.output
    model = _keras3_stack(seed=7)
    model.load_weights(out)
    landed = {"layer0": "layer0", "layer1": "layer2", "layer2": "layer1", "head": "head"}
    for new, source in landed.items():
        for got, want in zip(
            model.get_layer(new).get_weights(), old.get_layer(source).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(got, want, err_msg=f"{new} should hold {source}")
    # The checkpoint output of the same map follows it too, and TensorFlow restores it.
    result = convert(tmp_path / "old", swap, tmp_path / "ckpt", target=archive, verify=True)
    assert result.verification is not None
    assert result.verification.ok
    restored = _keras3_stack(seed=9)
    tf.train.Checkpoint(model=restored).read(str(result.prefix)).assert_existing_objects_matched()
    kernel = restored.get_layer("layer1").get_weights()[0]
    np.testing.assert_array_equal(kernel, old.get_layer("layer2").get_weights()[0])


def test_a_rename_the_pairing_by_original_name_contradicts_is_refused_naming_both(
    tf: Any, tmp_path: Path
) -> None:
    pytest.importorskip("tf_keras")
    _tf_keras_stack(tmp_path / "old")
    archive = tmp_path / "new.keras"
    _keras3_stack(seed=5).save(archive)
    # Only one half of the swap: layer2 is claimed by the rule and by layer2's own name.
    half = tmp_path / "half.yaml"
    half.write_text(
        SWAP.replace("  - match: 'layer_with_weights-2/(.*)'\n    rename: 'layer1/{1}'\n", "")
    )
    with pytest.raises(PairingConflictError) as caught:
        convert(tmp_path / "old", half, tmp_path / "h.weights.h5", target=archive, format="keras")
    message = str(caught.value)
    assert "the target's layers/dense_2/vars/0 (layer2/kernel) is claimed by rule 1" in message
    assert "renames layer_with_weights-1/kernel to layer2/kernel" in message
    assert "layer_with_weights-2/kernel, whose original name layer2/kernel" in message
    # A rename onto a name the target lacks is not quietly undone by the original name.
    typo = tmp_path / "typo.yaml"
    typo.write_text(SWAP.replace("rename: 'layer2/{1}'", "rename: 'layer9/{1}'"))
    with pytest.raises(
        PairingConflictError,
        match=r"renames layer_with_weights-1/kernel to "
        r"layer9/kernel, which is no variable of the target, while its original "
        r"name layer1/kernel pairs it with the target's layers/dense_1/vars/0",
    ):
        convert(tmp_path / "old", typo, tmp_path / "t.weights.h5", target=archive, format="keras")
    assert not (tmp_path / "h.weights.h5").exists()
    assert not (tmp_path / "t.weights.h5").exists()
