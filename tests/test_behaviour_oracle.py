"""Behaviour oracles for suggested migrations (issue 11, "The proof").

Generated model families (Dense stacks, a small CNN, an LSTM/GRU, the Estimator-named DNN
of ckptmigrate.examples) are trained, edited (renamed or moved to another scope, moved
between TF1, tf-keras and Keras 3, widened, deepened by a layer inserted before the head),
and migrated by ``suggest`` -> ``convert --target --verify`` exactly as suggested, with no
hand edits. The result is loaded in the target framework, which is the oracle:

1. what it computes: a rename or a move between formats gives the same outputs on random
   inputs; widening is function-preserving (same outputs: suggest pads the rows fed by new
   units with zeros). Deepening keeps every copied layer bit-equal, the trained head
   becomes the head, and the inserted layer starts fresh (the map language has no
   identity fill, so its outputs are not claimed equal);
2. one training step with the target's optimizer (a TF1 target's Adagrad/Adam/Ftrl/SGD
   slots come from the checkpoint) leaves no NaN or Inf in any weight or slot;
3. no wrong pair: every target layer the generator says comes from a source layer holds
   that layer's values (the source's cells, where it grew); a trained layer that starts
   fresh instead must be marked UNCERTAIN in the map.

A fixed handful of cases runs in ``make test``; ``CKPTMIGRATE_BEHAVIOUR_CASES`` adds that
many random ones (``make soak`` runs 60), from ``CKPTMIGRATE_BEHAVIOUR_SEED``. A failure
names the case, which rebuilds from its description.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from behaviour_models import Net, build_keras, build_tf1, keras_optimizer, tf1_layer_names

from ckptmigrate import convert, suggest
from ckptmigrate.suggestion import write_map

RANDOM_CASES = int(os.environ.get("CKPTMIGRATE_BEHAVIOUR_CASES", "0"))
SEED = int(os.environ.get("CKPTMIGRATE_BEHAVIOUR_SEED", "20261129"))
TESTS = Path(__file__).resolve().parent
EDITS = ("rename", "move", "widen", "deepen")


@dataclass(frozen=True)
class Case:
    source: Net
    target: Net
    truth: tuple[int | None, ...]  # per target layer: the source layer it comes from
    edit: str
    output: str = "checkpoint"  # convert --format

    def __str__(self) -> str:
        return f"{self.edit}: {self.source} -> {self.target} ({self.output})"


# -- generating cases ----------------------------------------------------------------------


def _keras_net(framework: str, family: str, rng: np.random.Generator) -> Net:
    out = int(rng.integers(2, 5))
    if family == "cnn":
        layers = [("conv", "conv", int(rng.integers(3, 7))), ("pool", "pool", 0)]
    elif family == "rnn":
        kind = str(rng.choice(["lstm", "gru"]))
        layers = [(kind, kind, int(rng.integers(3, 7)))]
    else:
        depth = int(rng.integers(1, 4))
        layers = [("dense", f"d{i}", int(rng.integers(3, 10))) for i in range(depth)]
    activation = str(rng.choice(["relu", "tanh"]))
    optimizer = str(rng.choice(["adam", "adagrad", "sgd"]))
    return Net(framework, family, (*layers, ("dense", "head", out)), activation, "", optimizer)


def _estimator_net(rng: np.random.Generator) -> Net:
    depth = int(rng.integers(1, 4))
    hidden = [("dense", f"hiddenlayer_{i}", int(rng.integers(3, 10))) for i in range(depth)]
    optimizer = str(rng.choice(["adagrad", "ftrl", "adam", "sgd"]))
    return Net(
        "tf1",
        "estimator",
        (*hidden, ("dense", "logits", int(rng.integers(2, 5)))),
        "relu",
        "",
        optimizer,
    )


def _weighted(net: Net) -> list[int]:
    return [i for i, (kind, _, _) in enumerate(net.layers) if kind != "pool"]


def edit(source: Net, how: str, rng: np.random.Generator) -> Case:
    """``source`` edited ``how``, with the generator's truth."""
    same = tuple(range(len(source.layers)))
    if how == "rename":
        if source.framework == "tf1":
            return Case(source, replace(source, scope="tower"), same, how)
        names = ("layer", "block", "unit")[int(rng.integers(0, 3))]
        renamed = tuple(
            (kind, "out" if i == len(source.layers) - 1 else f"{names}_{i}", units)
            for i, (kind, _, units) in enumerate(source.layers)
        )
        return Case(source, replace(source, layers=renamed), same, how)
    if how == "move":
        to = {"tf1": "keras3", "tf_keras": "keras3", "keras3": "tf_keras"}[source.framework]
        return Case(source, replace(source, framework=to, optimizer="adam"), same, how)
    layers = list(source.layers)
    if how == "widen":
        i = int(
            rng.choice([i for i in _weighted(source)[:-1] if layers[i][0] in ("dense", "conv")])
        )
        kind, name, units = layers[i]
        layers[i] = (kind, name, units + int(rng.integers(1, 7)))
        return Case(source, replace(source, layers=tuple(layers)), same, how)
    # deepen: a layer inserted before the head, as wide as what feeds the head
    feeding = next(units for _, _, units in reversed(layers[:-1]) if units)
    if source.framework == "tf1":
        new = ("dense", f"hiddenlayer_{len(layers) - 1}", feeding)
    else:
        new = ("dense", "inserted", feeding)
    layers.insert(len(layers) - 1, new)
    truth = (*range(len(source.layers) - 1), None, len(source.layers) - 1)
    return Case(source, replace(source, layers=tuple(layers)), truth, how)


def random_case(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    family = str(rng.choice(["dense", "cnn", "rnn", "estimator"]))
    if family == "estimator":
        source = _estimator_net(rng)
    else:
        source = _keras_net(str(rng.choice(["keras3", "tf_keras"])), family, rng)
    edits = [e for e in EDITS if not (e == "widen" and family == "rnn")]
    case = edit(source, str(rng.choice(edits)), rng)
    if case.target.framework == "keras3" and rng.random() < 0.5:
        case = replace(case, output="keras")
    return case


def _fixed_cases() -> list[Case]:
    rng = np.random.default_rng(SEED)
    dense3 = Net("keras3", "dense", (("dense", "d0", 6), ("dense", "d1", 5), ("dense", "head", 3)))
    tfk = replace(dense3, framework="tf_keras", activation="tanh", optimizer="adagrad")
    dnn = Net(
        "tf1",
        "estimator",
        (("dense", "hiddenlayer_0", 6), ("dense", "hiddenlayer_1", 5), ("dense", "logits", 3)),
        optimizer="adagrad",
    )
    cnn = Net("keras3", "cnn", (("conv", "conv", 4), ("pool", "pool", 0), ("dense", "head", 3)))
    gru = Net("tf_keras", "rnn", (("gru", "gru", 3), ("dense", "head", 3)), optimizer="adam")
    return [
        # each a regression the random cases found first, where noted
        replace(edit(dense3, "widen", rng), output="keras"),  # fan-in by original name
        edit(tfk, "move", rng),
        edit(dnn, "widen", rng),
        edit(replace(dnn, optimizer="ftrl"), "deepen", rng),
        edit(dnn, "move", rng),
        edit(dnn, "rename", rng),  # slots named tower/tower/...: renamed, not re-created
        edit(cnn, "widen", rng),
        edit(gru, "deepen", rng),  # head [3, 3] kept as the head, not layer_with_weights-1
        # Ftrl's two slots a variable outnumber the variables: the slots' extra scope must
        # not decide how the renamed variables pair (random case 14)
        edit(replace(dnn, optimizer="ftrl"), "rename", rng),
    ]


CASES = _fixed_cases() + [random_case(SEED + k) for k in range(RANDOM_CASES)]


# -- running a case ------------------------------------------------------------------------


@dataclass
class Trained:
    prefix: Path
    weights: list[list[np.ndarray]]  # per layer (pool: none)
    outputs: np.ndarray  # on the case's inputs


def _inputs(net: Net) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(99)
    x = rng.standard_normal((8, *net.inputs)).astype(np.float32)
    y = rng.standard_normal((8, net.outputs)).astype(np.float32)
    return x, y


def _train_source(tf: Any, net: Net, directory: Path) -> Trained:
    x, _ = _inputs(net)
    rng = np.random.default_rng(1)
    if net.framework == "tf1":
        v1 = tf.compat.v1
        graph, train, features, logits = build_tf1(tf, net)
        with graph.as_default(), v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            for _ in range(3):
                session.run(train)
            prefix = v1.train.Saver().save(session, str(directory / "model.ckpt"), global_step=3)
            weights = _tf1_weights(session, net)
            outputs = session.run(logits, {features: x})
        return Trained(Path(prefix), weights, outputs)
    model = build_keras(net, seed=0)
    model.compile(optimizer=keras_optimizer(net.framework, net.optimizer), loss="mse")
    data = rng.standard_normal((16, *net.inputs)).astype(np.float32)
    model.fit(data, rng.standard_normal((16, net.outputs)), epochs=2, batch_size=8, verbose=0)
    if net.framework == "keras3":
        prefix = tf.train.Checkpoint(model=model).write(str(directory / "ckpt"))
    else:
        prefix = str(directory / "ckpt")
        model.save_weights(prefix)
    weights = [list(layer.get_weights()) for layer in model.layers]
    return Trained(Path(prefix), weights, np.asarray(model.predict(x, verbose=0)))


def _tf1_weights(session: Any, net: Net) -> list[list[np.ndarray]]:
    import tensorflow as tf

    variables = {v.op.name: v for v in tf.compat.v1.global_variables()}
    return [
        [session.run(variables[f"{scope}/{leaf}"]) for leaf in ("kernel", "bias")]
        for scope in tf1_layer_names(net)
    ]


def _target(tf: Any, net: Net, directory: Path) -> str:
    """The target as a user names it: a .keras file, a builder file, a .meta graph."""
    if net.framework == "keras3":
        path = directory / "target.keras"
        build_keras(net, seed=1).save(path)
        return str(path)
    if net.framework == "tf_keras":
        path = directory / "target_builder.py"
        path.write_text(
            f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
            "from behaviour_models import Net, build_keras\n\n\n"
            f"def build():\n    return build_keras({net!r}, seed=1)\n"
        )
        return f"{path}:build"
    graph, _, _, _ = build_tf1(tf, net)
    path = directory / "target.meta"
    with graph.as_default():
        tf.compat.v1.train.export_meta_graph(str(path))
    return str(path)


def _finite(named: dict[str, np.ndarray]) -> list[str]:
    return [
        f"{name} has NaN/Inf after one step"
        for name, value in named.items()
        if np.asarray(value).dtype.kind == "f" and not np.isfinite(value).all()
    ]


def _migrated(
    tf: Any, case: Case, out: Path
) -> tuple[list[list[np.ndarray]], np.ndarray, list[str]]:
    """Load the converted output in the target framework: (weights per layer, outputs on
    the case's inputs, problems after one training step of the target's optimizer)."""
    net = case.target
    x, y = _inputs(net)
    if net.framework == "tf1":
        v1 = tf.compat.v1
        graph, train, features, logits = build_tf1(tf, net)
        with graph.as_default(), v1.Session(graph=graph) as session:
            v1.train.Saver().restore(session, tf.train.latest_checkpoint(str(out)))
            weights = _tf1_weights(session, net)
            outputs = session.run(logits, {features: x})
            session.run(train)
            after = {v.op.name: session.run(v) for v in v1.global_variables()}
        return weights, outputs, _finite(after)
    model = build_keras(net, seed=2)
    if case.output == "keras":
        model.load_weights(str(out))
    else:
        found = tf.train.latest_checkpoint(str(out))
        tf.train.Checkpoint(model=model).read(found).assert_existing_objects_matched()
    weights = [list(layer.get_weights()) for layer in model.layers]
    outputs = np.asarray(model.predict(x, verbose=0))
    optimizer = keras_optimizer(net.framework, net.optimizer)
    model.compile(optimizer=optimizer, loss="mse")
    model.train_on_batch(x, y)
    slots = optimizer.variables
    slots = slots() if callable(slots) else slots
    after = {f"weight {k}": np.asarray(w) for k, w in enumerate(model.weights)}
    after |= {f"slot {k}": np.asarray(v) for k, v in enumerate(slots)}
    return weights, outputs, _finite(after)


def _wrong_pairs(
    case: Case, source: list[list[np.ndarray]], migrated: list[list[np.ndarray]]
) -> list[str]:
    wrong = []
    for t, s in enumerate(case.truth):
        if s is None:
            continue
        name = case.target.layers[t][1]
        if len(migrated[t]) != len(source[s]):
            wrong.append(f"layer {name}: {len(migrated[t])} weights, the source's {len(source[s])}")
            continue
        for k, (got, want) in enumerate(zip(migrated[t], source[s], strict=True)):
            cells = got[tuple(slice(0, d) for d in want.shape)]
            if cells.shape != want.shape or not np.array_equal(cells, want):
                origin = case.source.layers[s][1]
                wrong.append(
                    f"layer {name} weight {k} does not hold source layer {origin}'s values"
                )
    return wrong


def run_case(tf: Any, case: Case, directory: Path) -> list[str]:
    """Every way ``case`` fails the oracles (empty: it passes)."""
    (directory / "source").mkdir(parents=True)
    trained = _train_source(tf, case.source, directory / "source")
    target = _target(tf, case.target, directory)
    suggestion = suggest(trained.prefix, target, format=case.output)
    map_path = write_map(suggestion, directory / "suggested.yaml")
    out = directory / ("out.weights.h5" if case.output == "keras" else "out")
    result = convert(trained.prefix, map_path, out, target=target, format=case.output, verify=True)
    assert result.verification is not None
    problems = [] if result.verification.ok else [f"verify: {result.verification.verdict}"]
    weights, outputs, step = _migrated(tf, case, out)
    problems += step
    problems += _wrong_pairs(case, trained.weights, weights)
    for rule in suggestion.rules:  # a trained layer starting fresh is at least marked
        init = rule.body.get("init")
        if init is not None and not rule.uncertain and _from_source(case, init["name"]):
            problems.append(f"unmarked init of {init['name']}, which the source has")
    if case.edit != "deepen":
        gap = float(np.max(np.abs(outputs - trained.outputs)))
        if gap > 1e-5:
            problems.append(f"outputs differ by {gap:.3g} after a {case.edit}")
    if problems:
        problems.append(f"map:\n{map_path.read_text()}")
    return problems


def _from_source(case: Case, variable: str) -> bool:
    """Whether the target variable ``variable`` (a map name) lies in a layer the
    generator says comes from the source."""
    names = tf1_layer_names(case.target) if case.target.framework == "tf1" else None
    for t, s in enumerate(case.truth):
        layer = names[t] if names else case.target.layers[t][1]
        if s is not None and f"{layer}/" in f"{variable}/":
            return True
    return False


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[
        f"{c.edit}-{c.source.framework}-{c.source.family}-{c.target.framework}-{k}"
        for k, c in enumerate(CASES)
    ],
)
def test_suggested_migration_keeps_what_the_model_computes(
    tf: Any, tmp_path: Path, case: Case
) -> None:
    pytest.importorskip("tf_keras")
    problems = run_case(tf, case, tmp_path)
    assert not problems, f"{case}\n" + "\n".join(problems)
