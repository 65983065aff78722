"""The differential oracle: ``check``'s verdict against TensorFlow's real restore.

Model pairs are generated from a seeded RNG: a source model whose checkpoint is saved by
TensorFlow, and a target derived from it by random edits (a variable renamed, moved to
another scope, every variable moved under a new scope, missing from the checkpoint, extra
in it, resized, retyped). Two families:

- TF1 graphs of ref (``use_resource=False``) and resource variables, saved by
  ``tf.compat.v1.train.Saver``; the target is the ``.meta`` of the target graph (or the
  live graph), restored by ``Saver.restore`` in a session;
- TF2 trees of ``tf.Module``s saved by ``tf.train.Checkpoint`` (with or without a root
  attribute); the target is the live module, a live ``tf.train.Checkpoint``, or a
  checkpoint written from one, restored by ``tf.train.Checkpoint(...).read(...)`` with
  ``assert_existing_objects_matched()`` (``assert_consumed()`` with ``strict``), as the
  README's verdict contract says.

For every pair: the verdict (``report.ok``) equals whether the restore succeeded, and every
variable ``check`` calls matched holds the checkpoint's value after the restore.

``CKPTMIGRATE_ORACLE_PAIRS`` sets the number of pairs (``make soak`` runs 10,000),
``CKPTMIGRATE_ORACLE_SEED`` the seed; a failure names the pair's seed and what it was.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ckptmigrate import check
from ckptmigrate.compare import Kind, Report

PAIRS = int(os.environ.get("CKPTMIGRATE_ORACLE_PAIRS", "200"))
SEED = int(os.environ.get("CKPTMIGRATE_ORACLE_SEED", "20261124"))
CHUNK = 20  # pairs per test item, so pytest-xdist spreads them over its workers
CHUNKS = max(1, -(-PAIRS // CHUNK))

SCOPES = ["encoder", "decoder", "dense", "dense_1", "layer_0", "layer_1", "head", "block"]
LEAVES = ["kernel", "bias", "gamma", "beta", "w", "embeddings"]
NEW_SCOPES = ["some_scope", "model", "bert", "net", "tower_0"]
DTYPES = ["float32", "float64", "int64"]


@dataclass(frozen=True)
class Var:
    path: tuple[str, ...]  # scopes then leaf
    shape: tuple[int, ...]
    dtype: str
    resource: bool = True  # TF1 only: a resource variable (else a ref variable)

    @property
    def name(self) -> str:
        return "/".join(self.path)


@dataclass
class Pair:
    seed: int
    family: str  # "tf1" | "tf2"
    source: list[Var]
    target: list[Var]
    edits: list[str] = field(default_factory=list)
    source_root: str | None = None  # TF2: tf.train.Checkpoint(<attr>=model) when set
    target_form: str = "module"  # TF2: module | checkpoint | saved; TF1: meta | graph
    target_root: str | None = None  # TF2 checkpoint/saved: its root attribute
    strict: bool = False

    def describe(self) -> str:
        def show(vs: list[Var]) -> str:
            return ", ".join(
                f"{v.name}{list(v.shape)}:{v.dtype}{'' if v.resource else ':ref'}" for v in vs
            )

        return (
            f"pair seed={self.seed} family={self.family} edits={self.edits} "
            f"source_root={self.source_root} target={self.target_form}/{self.target_root} "
            f"strict={self.strict}\n  source: {show(self.source)}\n  target: {show(self.target)}"
        )


# -- generating pairs ---------------------------------------------------------------------


def _prefix_free(vs: list[Var]) -> bool:
    """Unique names, and no variable's path is a scope of another's (a module attribute
    cannot be both a variable and a module)."""
    paths = {v.path for v in vs}
    if len(paths) != len(vs):
        return False
    return not any(v.path[:i] in paths for v in vs for i in range(1, len(v.path)))


def _random_var(rng: np.random.Generator, family: str) -> Var:
    depth = int(rng.integers(0, 4))
    scopes = tuple(str(rng.choice(SCOPES)) for _ in range(depth))
    rank = int(rng.integers(0, 3))
    shape = tuple(int(rng.integers(1, 5)) for _ in range(rank))
    dtype = str(rng.choice(DTYPES, p=[0.7, 0.15, 0.15]))
    resource = True if family == "tf2" else bool(rng.random() < 0.5)
    return Var((*scopes, str(rng.choice(LEAVES))), shape, dtype, resource)


def _edit(rng: np.random.Generator, family: str, target: list[Var]) -> tuple[str, list[Var]]:
    kind = str(
        rng.choice(
            ["rename", "move", "scope_all", "unscope_all", "missing", "extra", "resize", "dtype"]
        )
    )
    out = list(target)
    i = int(rng.integers(0, len(out)))
    v = out[i]
    if kind == "rename":
        out[i] = replace(v, path=(*v.path[:-1], v.path[-1] + "_renamed"))
    elif kind == "move":
        out[i] = replace(v, path=(str(rng.choice(NEW_SCOPES)), *v.path[1:]))
    elif kind == "scope_all":  # the target's names gain a leading scope
        scope = str(rng.choice(NEW_SCOPES))
        out = [replace(w, path=(scope, *w.path)) for w in out]
    elif kind == "unscope_all":  # the checkpoint's names carry a scope the target's lack
        if not all(len(w.path) > 1 for w in out) or len({w.path[0] for w in out}) != 1:
            return "unscope_all (not applicable)", target
        out = [replace(w, path=w.path[1:]) for w in out]
    elif kind == "missing":
        out.append(_random_var(rng, family))
    elif kind == "extra":
        if len(out) == 1:
            return "extra (not applicable)", target
        del out[i]
    elif kind == "resize":
        if v.shape and rng.random() < 0.7:
            axis = int(rng.integers(0, len(v.shape)))
            shape = list(v.shape)
            shape[axis] += 1
            out[i] = replace(v, shape=tuple(shape))
        else:
            out[i] = replace(v, shape=(*v.shape, 2))  # another rank
    elif kind == "dtype":
        out[i] = replace(v, dtype=str(rng.choice([d for d in DTYPES if d != v.dtype])))
    if family == "tf1" and rng.random() < 0.3:  # the target may declare another kind
        j = int(rng.integers(0, len(out)))
        out[j] = replace(out[j], resource=not out[j].resource)
    return f"{kind} {v.name}", out


def make_pair(seed: int) -> Pair:
    rng = np.random.default_rng(seed)
    family = "tf1" if rng.random() < 0.5 else "tf2"
    while True:
        width = int(rng.integers(1, 7))
        source = [_random_var(rng, family) for _ in range(width)]
        if _prefix_free(source):
            break
    target = list(source)
    edits: list[str] = []
    for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
        description, edited = _edit(rng, family, target)
        if _prefix_free(edited):
            target = edited
            edits.append(description)
    pair = Pair(seed, family, source, target, edits)
    if family == "tf1":
        pair.target_form = "meta" if rng.random() < 0.7 else "graph"
    else:
        pair.source_root = None if rng.random() < 0.5 else str(rng.choice(["model", "net"]))
        pair.target_form = str(rng.choice(["module", "checkpoint", "saved"]))
        if pair.target_form != "module" and rng.random() < 0.5:
            pair.target_root = str(rng.choice(["model", "net"]))
        pair.strict = bool(rng.random() < 0.3)
    return pair


def _values(vs: list[Var], rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for v in vs:
        if v.dtype == "int64":
            out[v.name] = rng.integers(-(10**9), 10**9, size=v.shape).astype(np.int64)
        else:
            out[v.name] = rng.standard_normal(v.shape).astype(v.dtype)
    return out


# -- TF1: Saver into a graph -----------------------------------------------------------


def _tf1_graph(tf: Any, vs: list[Var], values: dict[str, np.ndarray]) -> tuple[Any, Any]:
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        for v in vs:
            v1.get_variable(v.name, initializer=values[v.name], use_resource=v.resource)
        saver = v1.train.Saver()
    return graph, saver


def _run_tf1(tf: Any, pair: Pair, tmp: Path) -> tuple[Report, str | None, dict[str, Any]]:
    """(check's report, the restore's failure or None, restored values by name)."""
    v1 = tf.compat.v1
    rng = np.random.default_rng(pair.seed + 1)
    saved = _values(pair.source, rng)
    graph, saver = _tf1_graph(tf, pair.source, saved)
    with v1.Session(graph=graph) as session:
        session.run(v1.variables_initializer(graph.get_collection("variables")))
        prefix = saver.save(session, str(tmp / "source" / "model.ckpt"), write_meta_graph=False)
    initial = _values(pair.target, rng)
    graph, saver = _tf1_graph(tf, pair.target, initial)
    if pair.target_form == "meta":
        meta = tmp / "target.meta"
        with graph.as_default():
            saver.export_meta_graph(str(meta))
        report = check(prefix, meta, strict=pair.strict)
    else:
        report = check(prefix, graph, strict=pair.strict)
    restored: dict[str, Any] = {}
    with v1.Session(graph=graph) as session:
        variables = graph.get_collection("variables")
        session.run(v1.variables_initializer(variables))
        try:
            saver.restore(session, prefix)
        except tf.errors.OpError as e:
            return report, f"{type(e).__name__}: {e.message.splitlines()[0]}", restored
        for variable in variables:
            restored[variable.op.name] = session.run(variable)
        # TensorFlow's own inconsistency: a TF1 *resource* variable restored from a tensor
        # of another shape raises nothing; the variable silently takes the checkpoint's
        # shape while the graph still declares its own. check reports it as the shape
        # mismatch it is, so the oracle counts a restore that changed a declared shape as
        # failed (test_tf1_resource_variable_is_silently_reshaped pins TF's behaviour).
        for variable in variables:
            declared = tuple(variable.shape.as_list())
            actual = np.shape(restored[variable.op.name])
            if actual != declared:
                return (
                    report,
                    f"silent reshape: {variable.op.name} declared {declared}, now {actual}",
                    restored,
                )
    return report, None, restored


# -- TF2: tf.train.Checkpoint of tf.Module trees -----------------------------------------


def _module_tree(tf: Any, vs: list[Var], values: dict[str, np.ndarray]) -> tuple[Any, dict]:
    """The root module and {variable name: tf.Variable}."""
    root = tf.Module()
    variables = {}
    for v in vs:
        node = root
        for scope in v.path[:-1]:
            child = getattr(node, scope, None)
            if child is None:
                child = tf.Module()
                setattr(node, scope, child)
            node = child
        variable = tf.Variable(values[v.name], name=v.path[-1])
        setattr(node, v.path[-1], variable)
        variables[v.name] = variable
    return root, variables


def _wrap(tf: Any, module: Any, root: str | None) -> Any:
    return tf.train.Checkpoint(**{root: module}) if root else tf.train.Checkpoint(module)


def _run_tf2(tf: Any, pair: Pair, tmp: Path) -> tuple[Report, str | None, dict[str, Any]]:
    rng = np.random.default_rng(pair.seed + 1)
    saved = _values(pair.source, rng)
    source, _ = _module_tree(tf, pair.source, saved)
    prefix = _wrap(tf, source, pair.source_root).write(str(tmp / "source" / "ckpt"))
    initial = _values(pair.target, rng)
    module, variables = _module_tree(tf, pair.target, initial)
    # what check is given, and the object tf.train.Checkpoint restores through
    if pair.target_form == "module":
        report = check(prefix, module, strict=pair.strict)
        owner: Any = module  # check saves it as tf.train.Checkpoint(module)
    else:
        holder = _wrap(tf, module, pair.target_root)
        if pair.target_form == "checkpoint":
            report = check(prefix, holder, strict=pair.strict)
        else:
            written = holder.write(str(tmp / "target" / "ckpt"))
            report = check(prefix, written, strict=pair.strict)
        # tf.train.Checkpoint(module) saves the module as the root: the module is the
        # object a restore goes through (a positional-root Checkpoint nests as nothing)
        owner = holder if pair.target_root else module
    # The restore the verdict speaks for (README, the verdict contract): the target as
    # the root; through a root attribute when check says it aligned one.
    reached = set(variables)
    alignment = report.alignment
    if alignment is None:
        root = owner if isinstance(owner, tf.train.Checkpoint) else tf.train.Checkpoint(owner)
    elif alignment.side == "checkpoint":
        root = tf.train.Checkpoint(**{alignment.scope: owner})
    else:
        inner = getattr(owner, alignment.scope)
        root = tf.train.Checkpoint(inner)
        # variables outside that attribute are not restored: they keep their values (a
        # tf.train.Checkpoint(<scope>=module) holds every variable below it)
        if owner is module:
            reached = {v.name for v in pair.target if v.path[0] == alignment.scope}
    restored: dict[str, Any] = {}
    try:
        status = root.read(prefix)
    except (ValueError, tf.errors.OpError) as e:
        return report, f"read: {type(e).__name__}: {str(e).splitlines()[0]}", restored
    restored = {name: var.numpy() for name, var in variables.items()}
    try:
        if pair.strict:
            status.assert_consumed()
        else:
            status.assert_existing_objects_matched()
    except AssertionError as e:
        return report, f"assert: {str(e).splitlines()[0]}", restored
    if reached != set(variables):
        return (
            report,
            f"not reached through the root attribute: {set(variables) - reached}",
            restored,
        )
    # TensorFlow's assertion is weaker than its promise: a variable whose attribute name
    # the checkpoint uses for a module (no value there) counts as matched, and keeps its
    # initial value (test_tf2_variable_matched_to_a_module_node_keeps_its_value). check
    # calls it missing; the oracle counts a variable that got no value as a failed restore.
    kept = sorted(name for name in reached if np.array_equal(restored[name], initial[name]))
    if kept:
        return report, f"kept their initial values, the assertion passing: {kept}", restored
    return report, None, restored


# -- the oracle ------------------------------------------------------------------------


def run_pair(tf: Any, pair: Pair, tmp: Path) -> None:
    if pair.family == "tf1":
        report, failure, restored = _run_tf1(tf, pair, tmp)
    else:
        report, failure, restored = _run_tf2(tf, pair, tmp)
    findings = "\n  ".join(
        f"{f.kind.value}: {f.name} <- {f.checkpoint_name}" for f in report.findings
    )
    context = (
        f"{pair.describe()}\n  check: ok={report.ok} notes={report.notes}\n  {findings}\n"
        f"  restore: {failure or 'succeeded'}"
    )
    assert report.ok == (failure is None), context
    # every variable check calls matched holds the checkpoint's value after the restore
    rng = np.random.default_rng(pair.seed + 1)
    saved = _values(pair.source, rng)
    by_key = {_key(pair, v): v.name for v in pair.source}
    target_key = {_target_key(pair, v): v.name for v in pair.target}
    if not restored:
        return
    for f in report.findings:
        if f.kind is not Kind.MATCHED or f.checkpoint_name is None:
            continue
        source_name = by_key.get(f.checkpoint_name)
        target_name = target_key.get(f.name, f.name)
        if source_name is None or target_name not in restored:
            continue  # not a generated variable (TF2 bookkeeping)
        np.testing.assert_array_equal(
            restored[target_name], saved[source_name], err_msg=f"{target_name}\n{context}"
        )


def _key(pair: Pair, v: Var) -> str:
    if pair.family == "tf1":
        return v.name
    scope = f"{pair.source_root}/" if pair.source_root else ""
    return f"{scope}{v.name}/.ATTRIBUTES/VARIABLE_VALUE"


def _target_key(pair: Pair, v: Var) -> str:
    if pair.family == "tf1":
        return v.name
    scope = f"{pair.target_root}/" if pair.target_form != "module" and pair.target_root else ""
    return f"{scope}{v.name}/.ATTRIBUTES/VARIABLE_VALUE"


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_verdict_equals_the_real_restore(tf: Any, chunk: int) -> None:
    count = min(CHUNK, PAIRS - chunk * CHUNK)
    for index in range(chunk * CHUNK, chunk * CHUNK + count):
        pair = make_pair(SEED + index)
        with tempfile.TemporaryDirectory(prefix="ckptmigrate-oracle-") as tmp:
            run_pair(tf, pair, Path(tmp))


def test_the_generator_makes_every_edit_and_both_outcomes() -> None:
    """The default run covers what it claims: every edit, both families and target forms."""
    pairs = [make_pair(SEED + i) for i in range(PAIRS)]
    edits = {e.split()[0] for p in pairs for e in p.edits if "not applicable" not in e}
    assert edits >= {
        "rename",
        "move",
        "scope_all",
        "unscope_all",
        "missing",
        "extra",
        "resize",
        "dtype",
    }
    forms = {(p.family, p.target_form) for p in pairs}
    assert forms >= {
        ("tf1", "meta"),
        ("tf1", "graph"),
        ("tf2", "module"),
        ("tf2", "checkpoint"),
        ("tf2", "saved"),
    }
    assert any(not v.resource for p in pairs for v in p.source)
    assert any(not p.edits for p in pairs)


def test_tf1_resource_variable_is_silently_reshaped(tf: Any, tmp_path: Path) -> None:
    """TensorFlow's own inconsistency, pinned: Saver.restore of a differently shaped tensor
    raises for a ref variable but silently reshapes a resource variable; check fails both."""
    v1 = tf.compat.v1
    values = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    graph, saver = _tf1_graph(tf, [Var(("w",), (2, 3), "float32")], values)
    with v1.Session(graph=graph) as session:
        session.run(v1.global_variables_initializer())
        prefix = saver.save(session, str(tmp_path / "model.ckpt"), write_meta_graph=False)
    for resource in (False, True):
        target = [Var(("w",), (3, 2), "float32", resource)]
        graph, saver = _tf1_graph(tf, target, {"w": np.zeros((3, 2), np.float32)})
        assert not check(prefix, graph).ok
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            variable = graph.get_collection("variables")[0]
            if not resource:
                with pytest.raises(tf.errors.InvalidArgumentError, match="Assign requires shapes"):
                    saver.restore(session, prefix)
                continue
            saver.restore(session, prefix)  # no error...
            assert variable.shape.as_list() == [3, 2]  # ...the graph still says [3, 2]
            np.testing.assert_array_equal(session.run(variable), values["w"])  # holds [2, 3]


def test_tf2_variable_matched_to_a_module_node_keeps_its_value(tf: Any, tmp_path: Path) -> None:
    """TensorFlow's own inconsistency, pinned: the checkpoint's 'net' is a module holding
    'bias'; the target's 'net' is a variable. The restore matches the variable to that node
    and restores nothing into it, yet assert_existing_objects_matched() passes. check says
    the variable is missing, which is what happens to it."""
    old = tf.Module()
    old.net = tf.Module()
    old.net.bias = tf.Variable(1.5)
    prefix = tf.train.Checkpoint(old).write(str(tmp_path / "ckpt"))
    new = tf.Module()
    new.net = tf.Variable(-2.0)
    tf.train.Checkpoint(new).read(prefix).assert_existing_objects_matched()  # passes...
    assert new.net.numpy() == -2.0  # ...but the variable got no value
    report = check(prefix, new)
    assert not report.ok
    assert [f.name for f in report.findings if f.kind is Kind.MISSING] == [
        "net/.ATTRIBUTES/VARIABLE_VALUE"
    ]
