"""`ckptmigrate demo-files DIR`: the checkpoints, models and map the README's examples use,
made with TensorFlow, so that every example runs as shown (the README's blocks are executed
against these files by tests/test_readme.py).

What is made, relative to DIR:

- ``runs/h10/``: a tf.estimator DNNClassifier-shaped TF1 checkpoint, hidden layers
  [10, 10], 3 classes, trained 20 Adagrad steps (``model.ckpt-20`` with its ``.meta`` and
  the ``checkpoint`` state file);
- ``new/model.ckpt-0.meta`` (and its checkpoint): the fresh [20, 20], 2-class model to
  fine-tune, without optimizer state;
- ``wide/`` and ``deep/``: the same 3-class model widened to [20, 20] and deepened to
  [10, 10, 10], each with its Adagrad optimizer (a training job's graph), fresh;
- ``old/x.ckpt``: a tf-keras ``save_weights`` checkpoint of a 4 -> 8 -> 3 Dense model;
- ``new.keras``: the same architecture as a Keras 3 model;
- ``model_builder.py``: ``build()`` returns that Keras 3 model (a builder target:
  ``--target model_builder.py:build``);
- ``widen.yaml``: the hand-written map from [10, 10] to [20, 20].
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ._tf import import_keras, import_tensorflow, import_tf_keras
from .fs import make_staging_dir, publish_dir

__all__ = ["WIDEN_MAP", "DemoFiles", "build_estimator_checkpoint", "make_demo_files"]

WIDEN_MAP = """\
version: 1
description: the [10, 10] 3-class DNN into the [20, 20] 2-class model
rules:
  - role: optimizer
    drop: true
    note: Adagrad accumulators of the old shapes; the new run starts its own
  - name: dnn/hiddenlayer_0/kernel
    pad: {shape: [4, 20], fill: glorot_uniform, seed: 1}
  - name: dnn/hiddenlayer_1/kernel
    pad: {shape: [20, 10], fill: zeros}
    note: zero weights from the new units of layer 0 keep what the model computes
  - name: dnn/hiddenlayer_1/kernel
    pad: {shape: [20, 20], fill: glorot_uniform, seed: 2}
  - match: 'dnn/hiddenlayer_\\d+/bias'
    pad: {shape: [20], fill: zeros}
  - name: dnn/logits/kernel
    pad: {shape: [20, 3], fill: zeros}
  - name: dnn/logits/kernel
    slice: '[:, :2]'
    note: keep the first two classes
  - name: dnn/logits/bias
    slice: '[:2]'
"""

_BUILDER = '''\
"""A model builder ckptmigrate takes as a target: --target model_builder.py:build."""

import keras


def build():
    """The Keras 3 model old/x.ckpt's weights are for: 4 inputs, 8 hidden units, 3 outputs."""
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)]
    )
'''


@dataclass(frozen=True)
class DemoFiles:
    """Where ``make_demo_files`` put each file (absolute paths)."""

    root: Path
    trained: Path
    """The prefix of the trained [10, 10] checkpoint (``runs/h10/model.ckpt-20``)."""
    wide_meta: Path
    """The fresh [20, 20] model's MetaGraph (``new/model.ckpt-0.meta``)."""
    tf_keras_checkpoint: Path
    """A tf-keras ``save_weights`` prefix (``old/x.ckpt``)."""
    keras_model: Path
    """The Keras 3 model (``new.keras``)."""
    builder: Path
    """``model_builder.py``, whose ``build()`` returns the Keras 3 model."""
    widen_map: Path
    """``widen.yaml``."""


def build_estimator_checkpoint(
    directory: Path,
    hidden: tuple[int, ...] = (10, 10),
    steps: int = 20,
    n_classes: int = 3,
    optimizer: bool | None = None,
) -> Path:
    """Save a tf.estimator DNNClassifier-shaped model with tf.compat.v1.train.Saver (which
    also writes the ``.meta`` graph) into ``directory``, after ``steps`` Adagrad steps.
    With ``steps=0`` it is the fresh model to fine-tune: no optimizer state, unless
    ``optimizer`` (the model a training job would restore into, Adagrad and all).

    Returns:
        The checkpoint's prefix.
    """
    from .examples import build_estimator_dnn

    tf = import_tensorflow()
    v1 = tf.compat.v1
    directory.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        with_optimizer = steps > 0 if optimizer is None else optimizer
        train = build_estimator_dnn(
            tf,
            hidden_units=hidden,
            n_classes=n_classes,
            partitioned=False,
            optimizer=with_optimizer,
        )
        # Relative paths in the state file: the directory still works once moved.
        saver = v1.train.Saver(save_relative_paths=True)
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            for _ in range(steps):
                session.run(train)
            step = v1.train.get_global_step(graph)
            return Path(saver.save(session, str(directory / "model.ckpt"), global_step=step))


def _tf_keras_checkpoint(prefix: Path) -> None:
    import numpy as np

    tf_keras = import_tf_keras()
    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(3)
    model = tf_keras.Sequential(
        [tf_keras.layers.Dense(8, activation="relu", input_shape=(4,)), tf_keras.layers.Dense(3)]
    )
    # A step of training, so the checkpoint holds optimizer state as a real one does.
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(3)
    model.fit(rng.standard_normal((8, 4)), rng.standard_normal((8, 3)), epochs=1, verbose=0)
    model.save_weights(str(prefix))


def _keras_model(path: Path) -> None:
    keras = import_keras()
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)]
    )
    model.save(str(path))


def make_demo_files(directory: Path, *, overwrite: bool = False) -> DemoFiles:
    """Make the README's example files in ``directory``, which appears complete or not at
    all (staged beside it, then renamed into place).

    Args:
        directory: where to make them; must not exist unless ``overwrite``.
        overwrite: replace an existing ``directory``.

    Returns:
        Where each file is.

    Raises:
        OutputError: ``directory`` exists (without ``overwrite``) or cannot be written.
        TensorFlowRequiredError: TensorFlow, Keras or tf-keras is not installed.
    """
    import_keras()
    import_tf_keras()
    # TF1's deprecation notices (Adagrad's initializer) are not the user's business here.
    import_tensorflow().get_logger().setLevel("ERROR")
    directory = directory.absolute()
    staging = make_staging_dir(directory)
    try:
        build_estimator_checkpoint(staging / "runs" / "h10")
        build_estimator_checkpoint(staging / "new", hidden=(20, 20), steps=0, n_classes=2)
        build_estimator_checkpoint(staging / "wide", hidden=(20, 20), steps=0, optimizer=True)
        build_estimator_checkpoint(staging / "deep", hidden=(10, 10, 10), steps=0, optimizer=True)
        (staging / "old").mkdir()
        _tf_keras_checkpoint(staging / "old" / "x.ckpt")
        _keras_model(staging / "new.keras")
        (staging / "model_builder.py").write_text(_BUILDER, encoding="utf-8")
        (staging / "widen.yaml").write_text(WIDEN_MAP, encoding="utf-8")
        publish_dir(staging, directory, overwrite=overwrite, durable=False)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return DemoFiles(
        root=directory,
        trained=directory / "runs" / "h10" / "model.ckpt-20",
        wide_meta=directory / "new" / "model.ckpt-0.meta",
        tf_keras_checkpoint=directory / "old" / "x.ckpt",
        keras_model=directory / "new.keras",
        builder=directory / "model_builder.py",
        widen_map=directory / "widen.yaml",
    )
