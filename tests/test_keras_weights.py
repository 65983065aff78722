"""Keras 3 weight files written from supplied values, checked by Keras 3 itself: every file
is loaded with ``model.load_weights`` or ``keras.saving.load_model`` into a fresh model."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import same_bits

from ckptmigrate.errors import CkptMigrateError, OutputError
from ckptmigrate.formats.keras_weights import (
    KerasLayout,
    LayoutEntry,
    write_keras_archive,
    write_weights_h5,
)
from ckptmigrate.targets.keras_layout import keras_layout

pytestmark = pytest.mark.tensorflow  # every test builds Keras models

# ---------------------------------------------------------------------------------------
# Models. Every builder clears the Keras session first, so building the same architecture
# twice gives the same variable paths (seed_generator_1, adam, ...).


@functools.cache
def _custom_layers() -> tuple[type, type, type]:
    import keras

    @keras.saving.register_keras_serializable(package="ckptmigrate_tests")
    class Gate(keras.layers.Layer):  # type: ignore[misc]
        """Non-float state Keras saves: an int32 counter and two bool masks of one shape
        (two bools of 4 elements need a marker spread over elements to be told apart)."""

        def build(self, input_shape: Any) -> None:
            width = input_shape[-1]
            self.count = self.add_weight(
                shape=(3,), dtype="int32", initializer="zeros", trainable=False, name="count"
            )
            self.keep = self.add_weight(
                shape=(width,), dtype="bool", initializer="ones", trainable=False, name="keep"
            )
            self.flip = self.add_weight(
                shape=(width,), dtype="bool", initializer="zeros", trainable=False, name="flip"
            )

        def call(self, x: Any) -> Any:
            from keras import ops

            keep = ops.cast(self.keep, x.dtype)
            flip = ops.cast(self.flip, x.dtype)
            return x * keep * (1 - 2 * flip)

    @keras.saving.register_keras_serializable(package="ckptmigrate_tests")
    class TwoFlags(keras.layers.Layer):  # type: ignore[misc]
        """Two scalar bools: one bit of marker space for two variables, undiscoverable."""

        def build(self, input_shape: Any) -> None:
            self.a = self.add_weight(shape=(), dtype="bool", initializer="zeros", name="a")
            self.b = self.add_weight(shape=(), dtype="bool", initializer="zeros", name="b")

        def call(self, x: Any) -> Any:
            return x

    @keras.saving.register_keras_serializable(package="ckptmigrate_tests")
    class Fussy(keras.layers.Layer):  # type: ignore[misc]
        """Refuses (as Ctrl-C) to save while its weight holds a marker (its first element
        1 or 2; it is initialised to 0): an interruption in the middle of layout discovery."""

        def build(self, input_shape: Any) -> None:
            self.w = self.add_weight(shape=(7,), initializer="zeros", name="w")

        def call(self, x: Any) -> Any:
            return x

        def save_own_variables(self, store: Any) -> None:
            if float(self.w.numpy()[0]) >= 1.0:
                raise KeyboardInterrupt("interrupted while saving")
            super().save_own_variables(store)

    return Gate, TwoFlags, Fussy


def _fresh(seed: int = 0) -> Any:
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    return keras


def dense_stack(seed: int = 0) -> Any:
    keras = _fresh(seed)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6, activation="relu", name="d1"),
            keras.layers.Dense(5, activation="relu", name="d2"),
            keras.layers.Dense(3, name="head"),
        ],
        name="sequential",
    )


def batchnorm(seed: int = 0) -> Any:
    # gamma, beta, moving_mean, moving_variance: four (5,) float32 variables in one layer.
    keras = _fresh(seed)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, name="d1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dense(2, name="out"),
        ],
        name="bnnet",
    )


def lstm(seed: int = 0) -> Any:
    # dropout gives the LSTM a seed generator state, which Keras does not save.
    keras = _fresh(seed)
    return keras.Sequential(
        [
            keras.Input((5, 3)),
            keras.layers.LSTM(4, dropout=0.1, return_sequences=True, name="lstm_a"),
            keras.layers.LSTM(4, name="lstm_b"),
            keras.layers.Dense(2, name="out"),
        ],
        name="recurrent",
    )


def embedding(seed: int = 0) -> Any:
    keras = _fresh(seed)
    return keras.Sequential(
        [
            keras.Input((6,), dtype="int32"),
            keras.layers.Embedding(20, 4, name="tokens"),
            keras.layers.GlobalAveragePooling1D(name="pool"),
            keras.layers.Dense(4, name="proj"),
        ],
        name="embedder",
    )


def nested(seed: int = 0) -> Any:
    keras = _fresh(seed)
    inner = keras.Sequential(
        [
            keras.layers.Dense(5, activation="relu", name="d1"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dropout(0.2, seed=3, name="drop"),
            keras.layers.Dense(5, name="d2"),
        ],
        name="inner",
    )
    x = keras.Input((4,), name="x")
    h = inner(x)
    out = keras.layers.Dense(3, name="head")(keras.layers.Concatenate(name="cat")([x, h]))
    return keras.Model(x, out, name="outer")


def typed(seed: int = 0) -> Any:
    """int32/bool variables of a custom layer, bfloat16 and float16 layers, and a trained
    Adam (its int64 iteration counter and bfloat16/float16 slots are saved too)."""
    keras = _fresh(seed)
    gate, _, _ = _custom_layers()
    model = keras.Sequential(
        [
            keras.Input((4,)),
            gate(name="gate"),
            keras.layers.Dense(3, dtype="bfloat16", name="d_bf16"),
            keras.layers.Dense(3, dtype="float16", name="d_f16"),
            keras.layers.Dense(2, name="out"),
        ],
        name="typed",
    )
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(seed)
    model.fit(rng.standard_normal((8, 4)), rng.standard_normal((8, 2)), epochs=1, verbose=0)
    return model


ARCHITECTURES: dict[str, Callable[..., Any]] = {
    "dense_stack": dense_stack,
    "batchnorm": batchnorm,
    "lstm": lstm,
    "embedding": embedding,
    "nested": nested,
    "typed": typed,
}


# ---------------------------------------------------------------------------------------
# Helpers


def saveable(model: Any) -> list[Any]:
    """The model's variables and its optimizer's (built), as Keras may save them."""
    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        variables += list(optimizer.variables)
    return variables


def snapshot(model: Any) -> dict[str, np.ndarray]:
    from keras import ops

    return {v.path: np.array(ops.convert_to_numpy(v), copy=True) for v in saveable(model)}


def numpy_dtype(name: str) -> Any:
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(name)


def value_for(path: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Deterministic, distinct per variable path; floats in [0.5, 1.5) (valid variances)."""
    rng = np.random.default_rng(zlib.crc32(path.encode()))
    kind = np.dtype(numpy_dtype(dtype)).kind
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if kind in "iu":
        return rng.integers(1, 100, size=shape).astype(dtype)
    return rng.uniform(0.5, 1.5, size=shape).astype(numpy_dtype(dtype))


def values_by_path(entry: LayoutEntry) -> np.ndarray:
    return value_for(entry.variable_path, entry.shape, entry.dtype)


# ---------------------------------------------------------------------------------------
# Layout discovery + write + load into a fresh model


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_written_weights_load_into_a_fresh_model(arch: str, tmp_path: Path) -> None:
    build = ARCHITECTURES[arch]
    model = build(seed=1)
    before = snapshot(model)

    with keras_layout(model) as layout:
        # The model's own values are back after the marker saves, bit for bit.
        after = snapshot(model)
        assert before.keys() == after.keys()
        for path, value in before.items():
            assert same_bits(after[path], value), path
        out = write_weights_h5(layout, values_by_path, tmp_path / "out.weights.h5")
        template = layout.template
        assert template.is_file()
    assert not template.exists()  # the layout's own temporary directory is gone

    model2 = build(seed=2)
    model2.load_weights(out)
    loaded = snapshot(model2)

    # Every variable Keras saves is mapped; only seed generator states are not saved.
    mapped = {e.variable_path for e in layout.entries}
    assert mapped | set(layout.unsaved) == set(loaded)
    assert all("seed_generator" in p for p in layout.unsaved), layout.unsaved
    if arch in ("lstm", "nested"):
        assert layout.unsaved
    # The test's own power: variables a layout could confuse (same shape and dtype) get
    # different values, so a swapped pair would show below.
    written: dict[tuple[tuple[int, ...], str], set[bytes]] = {}
    for e in layout.entries:
        group = written.setdefault((e.shape, e.dtype), set())
        value = values_by_path(e).tobytes()
        assert value not in group or value == b"", e
        group.add(value)
    # Each dataset holds the value written for its path, hence each variable got its own.
    for path in mapped:
        entry = layout.by_variable()[path][0]
        assert same_bits(loaded[path], value_for(path, entry.shape, entry.dtype)), path
    assert len(layout.entries) == len(mapped)


def test_layout_names_datasets_and_types(tmp_path: Path) -> None:
    with keras_layout(typed(), directory=tmp_path / "layout") as layout:
        entries = {e.variable_path: e for e in layout.entries}
        assert entries["typed/d_bf16/kernel"] == LayoutEntry(
            "layers/dense/vars/0", "typed/d_bf16/kernel", (4, 3), "bfloat16"
        )
        assert entries["typed/gate/count"].dtype == "int32"
        assert entries["typed/gate/keep"].dtype == "bool"
        assert entries["adam/iteration"] == LayoutEntry(
            "optimizer/vars/0", "adam/iteration", (), "int64"
        )
        assert layout.template == tmp_path / "layout" / "template.weights.h5"
    # A caller's directory is the caller's: the template stays, no marker file is left.
    assert sorted(os.listdir(tmp_path / "layout")) == ["template.weights.h5"]


def test_written_file_has_the_template_structure(tmp_path: Path) -> None:
    import h5py

    with keras_layout(typed()) as layout:
        out = write_weights_h5(layout, values_by_path, tmp_path / "out.weights.h5")

        def describe(path: Path) -> dict[str, Any]:
            found: dict[str, Any] = {}
            with h5py.File(path, "r") as f:
                found["/"] = dict(f.attrs)

                def visit(name: str, obj: Any) -> None:
                    kind = "dataset" if isinstance(obj, h5py.Dataset) else "group"
                    attrs = {k: (obj.attrs[k], obj.attrs.get_id(k).dtype) for k in obj.attrs}
                    found[name] = (kind, attrs, getattr(obj, "shape", None))
                    if kind == "dataset":
                        found[name + ":type"] = obj.id.get_type().dtype
                        found[name + ":layout"] = obj.id.get_create_plist().get_layout()

                f.visititems(visit)
            return found

        expected, actual = describe(layout.template), describe(out)
        assert actual == expected
        assert expected["layers/dense/vars/0"][1]["dtype"][0] == "bfloat16"


def test_template_holds_the_model_values(tmp_path: Path) -> None:
    model = nested(seed=4)
    expected = snapshot(model)
    with keras_layout(model) as layout:
        model2 = nested(seed=5)
        model2.load_weights(layout.template)
        loaded = snapshot(model2)
        for path in {e.variable_path for e in layout.entries}:
            assert same_bits(loaded[path], expected[path]), path


def test_ambiguous_variables_are_refused_and_the_model_kept(tmp_path: Path) -> None:
    keras = _fresh()
    _, two_flags, _ = _custom_layers()
    model = keras.Sequential([keras.Input((2,)), two_flags(name="flags")], name="flagged")
    model.variables[1].assign(True)
    before = snapshot(model)
    with pytest.raises(CkptMigrateError, match=r"cannot tell apart 2 bool variables") as info:
        keras_layout(model, directory=tmp_path)
    assert "flagged/flags/a" in str(info.value)
    after = snapshot(model)
    for path, value in before.items():
        assert same_bits(after[path], value), path
    assert sorted(os.listdir(tmp_path)) == ["template.weights.h5"]


def test_interrupted_discovery_restores_the_model(tmp_path: Path) -> None:
    keras = _fresh()
    _, _, fussy = _custom_layers()
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(7, name="d"), fussy(name="fussy")], name="f"
    )
    model.variables[0].assign(np.full((2, 7), 0.25, np.float32))
    before = snapshot(model)
    with pytest.raises(KeyboardInterrupt, match="interrupted while saving"):
        keras_layout(model, directory=tmp_path)
    after = snapshot(model)
    for path, value in before.items():
        assert same_bits(after[path], value), path
    assert sorted(os.listdir(tmp_path)) == ["template.weights.h5"]


# ---------------------------------------------------------------------------------------
# .keras archives


def test_archive_loads_and_predicts_like_the_written_values(tmp_path: Path) -> None:
    import keras

    model = nested(seed=6)
    model.save(tmp_path / "template.keras")
    with keras_layout(model) as layout:
        weights = write_weights_h5(layout, values_by_path, tmp_path / "new.weights.h5")
        unsaved = set(layout.unsaved)
    archive = write_keras_archive(tmp_path / "template.keras", weights, tmp_path / "new.keras")

    # The oracle: the same model with the values assigned directly, not through a file.
    for variable in model.variables:
        if variable.path not in unsaved:
            variable.assign(value_for(variable.path, tuple(variable.shape), "float32"))
    loaded = keras.saving.load_model(archive)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    actual = keras.ops.convert_to_numpy(loaded(x, training=False))
    np.testing.assert_array_equal(actual, expected)
    # ... and not what the template archive predicts.
    original = keras.saving.load_model(tmp_path / "template.keras")
    assert not np.array_equal(keras.ops.convert_to_numpy(original(x, training=False)), actual)

    with zipfile.ZipFile(tmp_path / "template.keras") as a, zipfile.ZipFile(archive) as b:
        assert a.namelist() == b.namelist()
        for name in a.namelist():
            if name == "model.weights.h5":
                assert b.read(name) == weights.read_bytes()
            else:
                assert a.read(name) == b.read(name), name


def test_archive_refuses_weights_of_another_model(tmp_path: Path) -> None:
    dense_stack().save(tmp_path / "template.keras")
    with keras_layout(batchnorm()) as layout:
        weights = write_weights_h5(layout, values_by_path, tmp_path / "bn.weights.h5")
    with pytest.raises(CkptMigrateError, match="do not fit the archive's model") as info:
        write_keras_archive(tmp_path / "template.keras", weights, tmp_path / "out.keras")
    assert "bn.weights.h5" in str(info.value)
    assert not (tmp_path / "out.keras").exists()
    with pytest.raises(CkptMigrateError, match="zip"):
        write_keras_archive(weights, weights, tmp_path / "out2.keras")


# ---------------------------------------------------------------------------------------
# Errors and atomicity


@pytest.fixture(scope="module")
def dense_layout() -> Any:
    with keras_layout(dense_stack()) as layout:
        yield layout


@pytest.mark.parametrize("exception", [RuntimeError, KeyboardInterrupt])
def test_failure_midway_leaves_nothing(
    dense_layout: KerasLayout, exception: type[BaseException], tmp_path: Path
) -> None:
    calls = []

    def values(entry: LayoutEntry) -> np.ndarray:
        calls.append(entry)
        if len(calls) == 3:
            raise exception("source unreadable")
        return values_by_path(entry)

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(exception, match="source unreadable"):
        write_weights_h5(dense_layout, values, out_dir / "m.weights.h5")
    assert len(calls) == 3  # it did get mid-way
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda v: v.reshape(-1)[:-1], r"has shape \[\d+\] float32, the model needs \[6, 5\]"),
        (lambda v: v.astype("float64"), r"has dtype \[6, 5\] float64, the model needs"),
    ],
)
def test_wrong_value_names_the_paths(
    dense_layout: KerasLayout, bad: Callable[[np.ndarray], np.ndarray], message: str, tmp_path: Path
) -> None:
    def values(entry: LayoutEntry) -> np.ndarray:
        value = values_by_path(entry)
        return bad(value) if entry.variable_path == "sequential/d2/kernel" else value

    out = tmp_path / "m.weights.h5"
    with pytest.raises(CkptMigrateError, match=message) as info:
        write_weights_h5(dense_layout, values, out)
    text = str(info.value)
    h5_path = dense_layout.by_variable()["sequential/d2/kernel"][0].h5_path
    assert h5_path == "layers/dense_1/vars/0"
    assert h5_path in text
    assert "sequential/d2/kernel" in text
    assert str(out) in text
    assert "Hint:" in text
    assert os.listdir(tmp_path) == []


def test_existing_output_needs_overwrite(dense_layout: KerasLayout, tmp_path: Path) -> None:
    out = tmp_path / "m.weights.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="already exists"):
        write_weights_h5(dense_layout, values_by_path, out)
    assert out.read_bytes() == b"keep me"
    write_weights_h5(dense_layout, values_by_path, out, overwrite=True)
    assert os.listdir(tmp_path) == ["m.weights.h5"]
    model = dense_stack(seed=7)
    model.load_weights(out)
    kernel = next(v for v in model.variables if v.path == "sequential/head/kernel")
    assert same_bits(np.asarray(kernel.numpy()), value_for(kernel.path, (5, 3), "float32"))


def test_source_errors_pass_through_and_names_are_checked(
    dense_layout: KerasLayout, tmp_path: Path
) -> None:
    def unreadable(entry: LayoutEntry) -> np.ndarray:
        raise FileNotFoundError(2, "No such file", "source.data-00000-of-00001")

    # The callable's OSError is its own, not reported as a problem writing the output.
    with pytest.raises(FileNotFoundError, match=r"source\.data"):
        write_weights_h5(dense_layout, unreadable, tmp_path / "m.weights.h5")
    with pytest.raises(OutputError, match=r"must end in \.weights\.h5"):
        write_weights_h5(dense_layout, values_by_path, tmp_path / "m.h5")
    with pytest.raises(OutputError, match=r"must end in \.keras"):
        write_keras_archive(tmp_path / "a.keras", tmp_path / "b.weights.h5", tmp_path / "c.zip")
    assert os.listdir(tmp_path) == []


def test_only_built_keras3_models_are_accepted() -> None:
    keras = _fresh()
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    with pytest.raises(CkptMigrateError, match=r"expected a Keras 3 model \(keras.Model\)"):
        keras_layout(layer)
    unbuilt = keras.Sequential([keras.layers.Dense(2)], name="lazy")
    with pytest.raises(CkptMigrateError, match="'lazy' is not built"):
        keras_layout(unbuilt)


def test_closed_layout_is_refused(tmp_path: Path) -> None:
    with keras_layout(dense_stack()) as layout:
        pass
    with pytest.raises(CkptMigrateError, match="template weights file is gone"):
        write_weights_h5(layout, values_by_path, tmp_path / "m.weights.h5")


def test_module_import_stays_cheap() -> None:
    code = (
        "import sys, ckptmigrate.formats.keras_weights; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'h5py', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
