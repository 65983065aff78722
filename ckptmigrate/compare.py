"""Compare what a checkpoint holds with what a target model needs. Pure: inventories in,
a Report out; nothing here reads tensors, prints or exits."""

from __future__ import annotations

import difflib
import functools
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, NamedTuple

from .errors import CkptMigrateError
from .formats.object_graph import OBJECT_GRAPH_KEY
from .inventory import Inventory, Scheme, VariableSpec
from .names import Role, variable_path
from .regex import UserRegex, compile_user_regex

SCHEMA_VERSION = 1

# TensorFlow's own spellings of dtypes in its error messages (DataTypeString).
_TF_DTYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half"}


class Kind(str, Enum):
    MATCHED = "matched"
    SHAPE_MISMATCH = "shape_mismatch"
    DTYPE_MISMATCH = "dtype_mismatch"
    MISSING = "missing"
    UNUSED = "unused"

    @property
    def label(self) -> str:
        return _KIND_LABELS[self]


_KIND_LABELS = {
    Kind.MATCHED: "matched",
    Kind.SHAPE_MISMATCH: "shape mismatch",
    Kind.DTYPE_MISMATCH: "dtype mismatch",
    Kind.MISSING: "missing from the checkpoint",
    Kind.UNUSED: "unused in the checkpoint",
}
FAILING = (Kind.SHAPE_MISMATCH, Kind.DTYPE_MISMATCH, Kind.MISSING)


@dataclass(frozen=True, slots=True)
class ValueDiff:
    identical: bool
    max_abs_diff: float | None = None
    rms_diff: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "max_abs_diff": self.max_abs_diff,
            "rms_diff": self.rms_diff,
        }


class Finding(NamedTuple):
    """One variable's verdict. ``name`` is the target's name (the checkpoint's for unused).
    ``suggested`` is the checkpoint variable the hint of a missing one points to (the same
    original name, the closest name, the same name under another scope), else None.

    A tuple, for the cost of building one per variable (``finding._replace(...)``)."""

    kind: Kind
    name: str
    role: Role
    checkpoint_name: str | None
    target: VariableSpec | None
    checkpoint: VariableSpec | None
    tensorflow_error: str | None = None
    hint: str | None = None
    values: ValueDiff | None = None
    suggested: str | None = None

    def to_dict(self) -> dict[str, Any]:
        def side(spec: VariableSpec | None) -> dict[str, Any] | None:
            if spec is None:
                return None
            return {
                "name": spec.name,
                "shape": list(spec.shape),
                "dtype": spec.dtype,
                "original_name": spec.original_name,
            }

        return {
            "kind": self.kind.value,
            "name": self.name,
            "role": self.role.value,
            "checkpoint_name": self.checkpoint_name,
            "target": side(self.target),
            "checkpoint": side(self.checkpoint),
            "tensorflow_error": self.tensorflow_error,
            "hint": self.hint,
            "values": None if self.values is None else self.values.to_dict(),
            "suggested": self.suggested,
        }


@dataclass(frozen=True)
class CheckOptions:
    ignore: tuple[str, ...] = ()  # regexes searched in both sides' names
    # The checkpoint will be rewritten under the target's keys (convert --target): pair
    # by key or by original name, whatever TF's own restore would look up.
    rekeyed: bool = False
    strict: bool = False  # unused checkpoint entries fail the check
    min_match: float | None = None  # fail when matched/target variables is below this
    # --values: the question becomes "identical" (every target variable restores, and
    # with the values the other checkpoint holds), not only "restorable".
    values: bool = False


@dataclass(frozen=True)
class Report:
    checkpoint: Inventory
    target: Inventory
    matching: str  # how names were paired, in words
    findings: tuple[Finding, ...]
    options: CheckOptions = field(default_factory=CheckOptions)
    notes: tuple[str, ...] = ()
    # A TF2 restore through a root attribute: the leading scope the comparison left out
    # (the verdict speaks for the restore the note names), else None.
    alignment: ScopeAlignment | None = None

    @functools.cached_property
    def _tally(self) -> tuple[dict[Kind, int], int, int]:
        """Findings per kind, and the parameters matched and needed: one pass over the
        findings, which the headline, verdict and summary each ask for."""
        counts = dict.fromkeys(Kind, 0)
        matched = needed = 0
        for f in self.findings:
            counts[f.kind] += 1
            if f.target is not None:
                n = f.target.num_elements
                needed += n
                if f.kind is Kind.MATCHED:
                    matched += n
        return counts, matched, needed

    def count(self, kind: Kind) -> int:
        return self._tally[0][kind]

    @property
    def target_variables(self) -> int:
        return len(self.findings) - self.count(Kind.UNUSED)

    @property
    def matched_parameters(self) -> int:
        return self._tally[1]

    @property
    def target_parameters(self) -> int:
        return self._tally[2]

    @property
    def match_ratio(self) -> float:
        n = self.target_variables
        return self.count(Kind.MATCHED) / n if n else 1.0

    @property
    def below_min_match(self) -> bool:
        return self.options.min_match is not None and self.match_ratio < self.options.min_match

    @property
    def values_differ(self) -> bool:
        return self.differing_values > 0

    @property
    def differing_values(self) -> int:
        """Matched pairs whose values differ (``--values``)."""
        return sum(1 for f in self.findings if f.values is not None and not f.values.identical)

    @property
    def question(self) -> str:
        """What ``ok`` answers: "restorable" (a strict restore of every target variable
        would succeed and the policy options hold) or, with ``--values``, "identical"
        (that, and every matched variable would get the value the target already holds)."""
        return "identical" if self.options.values else "restorable"

    @property
    def restorable(self) -> bool:
        """A strict restore of every target variable would succeed (and policy holds)."""
        if any(f.kind in FAILING for f in self.findings) or self.below_min_match:
            return False
        return not (self.options.strict and self.count(Kind.UNUSED))

    @property
    def ok(self) -> bool:
        """The one verdict, for :attr:`question`: what the exit code, text, JSON and HTML
        all say."""
        return self.restorable and not (self.options.values and self.values_differ)

    @property
    def headline(self) -> str:
        return (
            f"matched {self.count(Kind.MATCHED)} of {self.target_variables} target "
            f"variables ({self.matched_parameters:,} of {self.target_parameters:,} "
            "parameters)"
        )

    def __repr__(self) -> str:
        # Short: the headline and the counts (the findings are in .findings, the page in
        # Jupyter is _repr_html_, the full text ckptmigrate.render.check_text).
        counts = [f"{self.count(k)} {_KIND_LABELS[k]}" for k in (*FAILING, Kind.UNUSED)]
        problems = "; ".join(c for c in counts if not c.startswith("0 "))
        return f"<Report ok={self.ok}: {self.headline}{'; ' + problems if problems else ''}>"

    def _repr_html_(self) -> str:
        """The page ``check --html`` writes, as Jupyter shows a report: in an iframe, so
        the page's styles stay off the notebook's."""
        # A display hook, called long after import: the one import from compare up into
        # the report layer (tests/test_architecture.py exempts display hooks from the
        # no-cycles rule, and only them).
        from html import escape

        from .html_report import render_html

        return (
            f'<iframe srcdoc="{escape(render_html(self), quote=True)}" title="ckptmigrate '
            'check report" style="width: 100%; height: 36em; border: 1px solid #ccc">'
            "</iframe>"
        )

    def to_dict(self) -> dict[str, Any]:
        def side(inv: Inventory) -> dict[str, Any]:
            return {
                "kind": inv.kind,
                "path": inv.source,
                "scheme": inv.scheme.value,
                "naming": inv.naming,
                # the object graph is bookkeeping, not a variable (as in the summary)
                "variables": sum(1 for k in inv.variables if k != OBJECT_GRAPH_KEY),
                "parameters": sum(
                    v.num_elements for k, v in inv.variables.items() if k != OBJECT_GRAPH_KEY
                ),
            }

        return {
            "schema_version": SCHEMA_VERSION,
            "ok": self.ok,
            "question": self.question,
            "restorable": self.restorable,
            "alignment": None if self.alignment is None else self.alignment.to_dict(),
            "checkpoint": side(self.checkpoint),
            "target": side(self.target),
            "scheme": self.matching,
            "notes": list(self.notes),
            "summary": {
                "headline": self.headline,
                "target_variables": self.target_variables,
                **{kind.value: self.count(kind) for kind in Kind},
                "matched_parameters": self.matched_parameters,
                "target_parameters": self.target_parameters,
                "match_ratio": round(self.match_ratio, 6),
                "min_match": self.options.min_match,
                "strict": self.options.strict,
                "values_differ": self.differing_values if self.options.values else None,
            },
            "findings": [f.to_dict() for f in self.findings],
        }


# -- pairing names ---------------------------------------------------------------------

KeyFn = Callable[[VariableSpec], list[str]]


def _by_name(v: VariableSpec) -> list[str]:
    return [v.name, *v.aliases]


def _by_original(v: VariableSpec) -> list[str]:
    return [(v.original_name or v.name).removesuffix(":0")]


def _by_either(v: VariableSpec) -> list[str]:
    """Object paths (without the TF2 value suffix), then the original name: what a map
    that renames onto the target's own keys or onto its variables' names produces."""
    return [*(variable_path(k) for k in _by_name(v)), *_by_original(v)]


def _strip_first(key: str) -> str:
    return key.split("/", 1)[1] if "/" in key else key


def _first_scope(key: str) -> str | None:
    return key.split("/", 1)[0] if "/" in key else None


@dataclass(frozen=True)
class ScopeAlignment:
    """One side's names carry one more leading scope than the other's, and the comparison
    left it out. ``side`` is the side that carries it: "checkpoint" (a TF2 checkpoint saved
    as ``tf.train.Checkpoint(scope=model)``) or "target"."""

    side: str
    scope: str

    def to_dict(self) -> dict[str, str]:
        return {"side": self.side, "scope": self.scope}


@dataclass(frozen=True)
class _Strategy:
    description: str
    ckpt_keys: KeyFn
    target_keys: KeyFn
    note: str | None = None
    alignment: ScopeAlignment | None = None
    # A TF2 restore by object-graph path: pair as TensorFlow's walk binds (_pair_by_walk).
    walk: bool = False


def _under(scope: str, key_fn: KeyFn) -> KeyFn:
    """The keys below ``scope/``, without it; nothing for a variable outside it (a restore
    through that attribute never reaches it)."""
    prefix = scope + "/"
    return lambda v: [k[len(prefix) :] for k in key_fn(v) if k.startswith(prefix)]


def _common_scopes(inv: Inventory, key_fn: KeyFn, limit: int = 3) -> list[str]:
    """The leading scopes most of the side's variables live under, most common first."""
    counts: dict[str, int] = defaultdict(int)
    for v in inv.variables.values():
        for scope in {_first_scope(k) for k in key_fn(v)} - {None}:
            assert scope is not None
            counts[scope] += 1
    return sorted(counts, key=lambda s: (-counts[s], s))[:limit]


def _tf2_root_note(alignment: ScopeAlignment) -> str:
    scope = alignment.scope
    if alignment.side == "checkpoint":
        return (
            f"the checkpoint's names carry one more leading scope, '{scope}/', than the "
            "target's (it was saved as tf.train.Checkpoint("
            f"{scope}=model)); compared as a restore through that root attribute sees them, "
            f"tf.train.Checkpoint({scope}=<target>).read(CKPT): restoring with the target "
            "itself as the root would find none of them (or strip the scope with a map)"
        )
    return (
        f"the target's names carry one more leading scope, '{scope}/', than the "
        "checkpoint's; compared as a restore rooted at that attribute sees them, "
        f"tf.train.Checkpoint(<target>.{scope}).read(CKPT) (or "
        f"tf.train.Checkpoint(<the model at '{scope}'>)): restoring with the target's own "
        "root would find none of them"
    )


def _strategies(ckpt: Inventory, target: Inventory, rekeyed: bool) -> list[_Strategy]:
    if ckpt.scheme == target.scheme:
        how = "by key" if target.scheme is not Scheme.TF2 else "by object-graph path"
        base = [(f"{how} ({target.naming})", _by_name, _by_name)]
    else:
        base = [
            (
                f"by original variable name (checkpoint: {ckpt.naming}; target: {target.naming})",
                _by_original,
                _by_original,
            )
        ]

    def stripped(key_fn: KeyFn) -> KeyFn:
        return lambda v: [_strip_first(k) for k in key_fn(v)]

    if rekeyed:
        base.append(
            (
                f"by key or original variable name (checkpoint: {ckpt.naming}; target: "
                f"{target.naming})",
                _by_either,
                _by_either,
            )
        )
    walk = not rekeyed and ckpt.scheme is Scheme.TF2 and target.scheme is Scheme.TF2
    out = []
    for description, ck, tk in base:
        out.append(_Strategy(description, ck, tk, walk=walk))
        if rekeyed:
            # The checkpoint is rewritten under the target's keys: any one extra leading
            # scope on either side is just another rename.
            out.append(
                _Strategy(
                    description,
                    stripped(ck),
                    tk,
                    "the checkpoint's names carry one more leading scope than the target's "
                    "(e.g. 'model/'); compared without it, as the conversion into the "
                    "target's keys renames them",
                )
            )
            out.append(
                _Strategy(
                    description,
                    ck,
                    stripped(tk),
                    "the target's names carry one more leading scope than the checkpoint's; "
                    "compared without it, as the conversion into the target's keys renames "
                    "them",
                )
            )
        elif ckpt.scheme is Scheme.TF2 and target.scheme is Scheme.TF2:
            # A TF2 restore walks the object graph from the root it is given: an extra
            # leading scope is one root attribute (tf.train.Checkpoint(model=...)), and
            # restoring through that attribute really ignores it. A name-based restore (a
            # Saver, a TF2 model reading a TF1 checkpoint, a TF1 graph reading a TF2 one)
            # looks every name up exactly: no scope is forgiven there (see _scope_hints).
            for scope in _common_scopes(ckpt, ck):
                alignment = ScopeAlignment("checkpoint", scope)
                out.append(
                    _Strategy(
                        description,
                        _under(scope, ck),
                        tk,
                        _tf2_root_note(alignment),
                        alignment,
                        walk=True,
                    )
                )
            for scope in _common_scopes(target, tk):
                alignment = ScopeAlignment("target", scope)
                out.append(
                    _Strategy(
                        description,
                        ck,
                        _under(scope, tk),
                        _tf2_root_note(alignment),
                        alignment,
                        walk=True,
                    )
                )
    return out


@dataclass
class _Pairing:
    strategy: _Strategy
    pairs: dict[str, VariableSpec | None]  # target name -> checkpoint variable (or None)
    match_keys: dict[str, str]  # target name -> the key it was looked up by

    @property
    def hits(self) -> int:
        return sum(1 for c in self.pairs.values() if c is not None)


def _pair_by_walk(strategy: _Strategy, ckpt: Inventory, target: Inventory) -> _Pairing:
    """Pairs as a TF2 restore binds: TensorFlow walks the checkpoint's object graph breadth
    first, binding each checkpoint node to the object at the same path in the target the
    first time its walk reaches the node through a path the target has; an object takes
    its value from the first node bound to it, and a node bound to an object another node
    already restored gives nothing (TensorFlow still counts it consumed). So a variable
    reachable by several paths pairs through the checkpoint's first path the target has,
    not through any shared one: a Keras 3 Adam's ``_variables/3`` (v of the first variable)
    meets a tf-keras Adam's ``_variables/3`` (m of the second) there, though both reach
    the right slot as ``_velocities/0`` too, and the restore fails on its shape.

    A path's keys list the variable's paths breadth first (its key first), so the first
    one the target has is where the walk binds it; bindings happen shallowest first."""
    owner: dict[str, VariableSpec] = {}
    for t in target.variables.values():
        for key in strategy.target_keys(t):
            owner.setdefault(key, t)
    bindings: list[tuple[int, int, str, VariableSpec, str]] = []
    for order, c in enumerate(ckpt.variables.values()):
        for key in strategy.ckpt_keys(c):
            bound = owner.get(key)
            if bound is not None:
                bindings.append((key.count("/"), order, bound.name, c, key))
                break
    bindings.sort(key=lambda b: (b[0], b[1]))
    pairs: dict[str, VariableSpec | None] = dict.fromkeys(target.variables)
    match_keys = {
        t.name: next(iter(strategy.target_keys(t)), t.name) for t in target.variables.values()
    }
    for _, _, name, c, key in bindings:
        if pairs[name] is None:
            pairs[name] = c
            match_keys[name] = key
    return _Pairing(strategy, pairs, match_keys)


def _pair_with(strategy: _Strategy, ckpt: Inventory, target: Inventory) -> _Pairing:
    if strategy.walk:
        return _pair_by_walk(strategy, ckpt, target)
    if strategy.ckpt_keys is _by_name and strategy.target_keys is _by_name:
        by_name = _pair_by_names(strategy, ckpt, target)
        if by_name is not None:
            return by_name
    index: dict[str, VariableSpec] = {}
    # A key two different variables share on one side (a subclassed Keras model records
    # the same original name for every layer; a stripped scope leaves bare 'kernel's)
    # says nothing about which is which: it pairs nothing rather than the first one.
    ambiguous: set[str] = set()
    for v in ckpt.variables.values():
        for key in strategy.ckpt_keys(v):
            seen = index.setdefault(key, v)
            if seen is not v:
                ambiguous.add(key)
    target_owner: dict[str, str] = {}
    for t in target.variables.values():
        for key in strategy.target_keys(t):
            if target_owner.setdefault(key, t.name) != t.name:
                ambiguous.add(key)
    pairs: dict[str, VariableSpec | None] = {}
    match_keys: dict[str, str] = {}
    taken: set[str] = set()
    for t in target.variables.values():
        all_keys = strategy.target_keys(t)
        keys = [k for k in all_keys if k not in ambiguous]
        match_keys[t.name] = keys[0] if keys else (all_keys[0] if all_keys else t.name)
        pairs[t.name] = None
        for key in keys:
            c = index.get(key)
            if c is not None and c.name not in taken:
                pairs[t.name] = c
                match_keys[t.name] = key
                taken.add(c.name)
                break
    return _Pairing(strategy, pairs, match_keys)


def _pair_by_names(strategy: _Strategy, ckpt: Inventory, target: Inventory) -> _Pairing | None:
    """:func:`_pair_with` by name where no variable has aliases (most checks of two
    checkpoints): each side's names are then distinct keys, none ambiguous, so each target
    variable pairs with the checkpoint variable of its name. None where aliases exist."""
    if any(v.aliases for v in ckpt.variables.values()) or any(
        t.aliases for t in target.variables.values()
    ):
        return None
    index = {v.name: v for v in ckpt.variables.values()}
    if len(index) != len(ckpt.variables):
        return None  # two entries under one name: the general pairing words it
    pairs = {t.name: index.get(t.name) for t in target.variables.values()}
    if len(pairs) != len(target.variables):
        return None
    return _Pairing(strategy, pairs, {name: name for name in pairs})


def _pair(ckpt: Inventory, target: Inventory, rekeyed: bool) -> _Pairing:
    """The naming strategy that pairs the most target variables (the plainest on ties)."""
    best: _Pairing | None = None
    for strategy in _strategies(ckpt, target, rekeyed):
        pairing = _pair_with(strategy, ckpt, target)
        if best is None or pairing.hits > best.hits:
            best = pairing
        if best.hits == len(target.variables):  # none can pair more; the plainest won
            break
    assert best is not None
    return best


def _yaml_quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class _ScopeHint:
    checkpoint: VariableSpec
    side: str  # the side carrying the extra scope
    scope: str
    rule: str  # the one map rule (YAML flow mapping) that makes the names equal


def _scope_hints(ckpt: Inventory, target: Inventory, plain: _Pairing) -> dict[str, _ScopeHint]:
    """For a restore that looks names up exactly (a Saver): target variables the checkpoint
    holds under a name differing only by one leading scope, with the map rule that renames
    the checkpoint's names onto the target's. Map rules rename checkpoint keys, which are
    the names only in a name-based (TF1) checkpoint."""
    if ckpt.scheme is not Scheme.TF1 or plain.hits == len(target.variables):
        return {}
    base = plain.strategy

    def stripped(key_fn: KeyFn) -> KeyFn:
        return lambda v: [_strip_first(k) for k in key_fn(v)]

    candidates = [
        (
            "checkpoint",
            _pair_with(_Strategy("", stripped(base.ckpt_keys), base.target_keys), ckpt, target),
        ),
        (
            "target",
            _pair_with(_Strategy("", base.ckpt_keys, stripped(base.target_keys)), ckpt, target),
        ),
    ]
    side, best = max(candidates, key=lambda c: c[1].hits)
    if best.hits <= plain.hits:
        return {}
    found = {
        t: c
        for t, c in best.pairs.items()
        if c is not None and plain.pairs.get(t) is None and c.name != t
    }
    if side == "checkpoint":
        out = {}
        for t, c in found.items():
            scope = c.name.split("/", 1)[0]
            rule = f"{{match: {_yaml_quoted(re.escape(scope) + '/(.*)')}, rename: '{{1}}'}}"
            out[t] = _ScopeHint(c, side, scope, rule)
        return out
    by_scope: dict[str, list[tuple[str, VariableSpec]]] = defaultdict(list)
    for t, c in found.items():
        by_scope[t.split("/", 1)[0]].append((t, c))
    all_heads = {v.name.split("/", 1)[0] for v in ckpt.variables.values()}
    out = {}
    for scope, members in by_scope.items():
        heads = sorted({c.name.split("/", 1)[0] for _, c in members})
        if set(heads) >= all_heads:
            pattern = "(.*)"
        else:
            pattern = "((?:" + "|".join(re.escape(h) for h in heads) + ")(?:/.*)?)"
        rule = f"{{match: {_yaml_quoted(pattern)}, rename: {_yaml_quoted(scope + '/{1}')}}}"
        for t, c in members:
            out[t] = _ScopeHint(c, side, scope, rule)
    return out


def _scope_hint_text(hint: _ScopeHint, target: VariableSpec) -> str:
    where = (
        f"under one more leading scope, '{hint.scope}/'"
        if hint.side == "checkpoint"
        else f"without the leading scope '{hint.scope}/'"
    )
    text = (
        f"the checkpoint holds it as {hint.checkpoint.name!r}, {where}; a name-based "
        f"restore (tf.compat.v1.train.Saver) looks names up exactly, so the map rule "
        f"{hint.rule} "
    )
    stored = hint.checkpoint
    if stored.shape == target.shape and stored.dtype == target.dtype:
        return text + "fixes it"
    return (
        text + f"renames it, but it holds {_human(stored.shape)} {stored.dtype} where the "
        f"model needs {_human(target.shape)} {target.dtype}: that takes another rule"
    )


def _scope_note(hints: dict[str, _ScopeHint]) -> str:
    rules = sorted({h.rule for h in hints.values()})
    side = next(iter(hints.values())).side
    which = (
        "the checkpoint's names carry one more leading scope than the target's"
        if side == "checkpoint"
        else "the target's names carry one more leading scope than the checkpoint's"
    )
    shown = "; ".join(rules[:3]) + (f"; and {len(rules) - 3} more" if len(rules) > 3 else "")
    return (
        f"{which} ({len(hints)} variables): not matched, because a name-based restore "
        "(tf.compat.v1.train.Saver) looks every name up exactly. The map rule"
        f"{'s' if len(rules) > 1 else ''} {shown} rename{'' if len(rules) > 1 else 's'} "
        "the checkpoint's names onto the target's (check again with --map, then convert "
        "with --map and --target)"
    )


# -- messages --------------------------------------------------------------------------


def _dims(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _human(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _py_shape(shape: tuple[int, ...]) -> str:
    return str(tuple(shape))


def tensorflow_error(
    kind: Kind,
    target: VariableSpec,
    ckpt: VariableSpec | None,
    key: str,
    scheme: Scheme,
    *,
    checkpoint_scheme: Scheme | None = None,
    checkpoint_format: str | None = None,
    checkpoint_source: str = "",
) -> str | None:
    """The error TensorFlow raises restoring this variable, worded as TensorFlow words it
    for this variable's kind and the checkpoint's format (each text checked against the real
    restore in tests/test_tensorflow_errors.py), or what it does when it raises nothing.

    ``scheme`` is how the target restores; ``checkpoint_scheme`` how the checkpoint names;
    ``checkpoint_format`` "v1" or "v2"; ``checkpoint_source`` the checkpoint's path (V1
    errors name it)."""
    v1 = checkpoint_format == "v1"
    if scheme is Scheme.KERAS3:
        return _keras_error(kind, target, ckpt)
    if kind is Kind.MISSING:
        if scheme is not Scheme.TF2:
            if v1:
                return f'Tensor name "{key}" not found in checkpoint files {checkpoint_source}'
            return f"Key {key} not found in checkpoint"
        # A TF2 restore doesn't fail on a missing value: the variable keeps its initial
        # value, and only the assertions say so.
        if checkpoint_scheme is Scheme.TF1:  # TF2 restoring a name-based checkpoint
            return (
                f"no value named {key} in the checkpoint: the variable keeps its initial "
                "value, and restore(...).assert_existing_objects_matched() raises "
                '"Some objects had attributes which were not restored"'
            )
        return (
            f"no value at {key}: the variable keeps its initial value, and "
            'restore(...).assert_existing_objects_matched() raises "Found N Python objects '
            "that were not bound to checkpointed values, likely due to changes in the Python "
            'program"'
        )
    assert ckpt is not None
    if kind is Kind.SHAPE_MISMATCH:
        if scheme is Scheme.TF2:
            name = (target.original_name or target.name) + ":0"
            return (
                f"Received incompatible tensor with shape {_py_shape(ckpt.shape)} when "
                f"attempting to restore variable with shape {_py_shape(target.shape)} and "
                f"name {name}."
            )
        if target.storage == "ref":
            return (
                "Assign requires shapes of both tensors to match. lhs shape= "
                f"{_dims(target.shape)} rhs shape= {_dims(ckpt.shape)}"
            )
        if target.storage == "resource":
            return (
                "raises nothing: Saver.restore assigns the stored "
                f"{_dims(ckpt.shape)} value to this resource variable, which silently takes "
                f"that shape while the graph still declares {_dims(target.shape)}; the model "
                "fails later, or computes with the wrong weights"
            )
        if v1:
            return (
                "Shape in shape_and_slice spec does not match the shape in the save file: "
                f"{_dims(target.shape)}, save file shape: {_dims(ckpt.shape)}"
            )
        return (
            f"tensor_name = {key}; shape in shape_and_slice spec {_dims(target.shape)} "
            f"does not match the shape stored in checkpoint: {_dims(ckpt.shape)}"
        )
    if kind is Kind.DTYPE_MISMATCH:
        expected = _TF_DTYPE_NAMES.get(target.dtype, target.dtype)
        original = _TF_DTYPE_NAMES.get(ckpt.dtype, ckpt.dtype)
        if v1 and scheme is not Scheme.TF2:
            return (
                f"Expected to restore a tensor of type {expected}, got a tensor of type "
                f"{original} instead: tensor_name = {key}"
            )
        return (
            f"tensor_name = {key}; expected dtype {expected} does not equal original dtype "
            f"{original}"
        )
    return None


def keras_group(key: str) -> str:
    """The saved object a Keras 3 weight path belongs to: ``layers/dense/vars/1`` ->
    ``layers/dense`` (``load_weights`` loads each object's variables together)."""
    return key.rpartition("/vars/")[0] if "/vars/" in key else ""


def _keras_layer(target: VariableSpec) -> str:
    # A variable's path is <model>/.../<layer>/<weight>: Keras names the layer in its error.
    parts = (target.original_name or "").split("/")
    return parts[-2] if len(parts) >= 2 else keras_group(target.name).rpartition("/")[2]


def _keras_error(kind: Kind, target: VariableSpec, ckpt: VariableSpec | None) -> str | None:
    """What Keras 3 ``model.load_weights`` does with this variable (its error, or what it
    does when it raises nothing); a group's count is worded by :func:`_keras_count_error`."""
    if kind is Kind.MISSING:
        return (
            f"no value at {target.name}: load_weights raises \"Layer '{_keras_layer(target)}' "
            'expected N variables, but received M variables during loading"'
        )
    assert ckpt is not None
    if kind is Kind.SHAPE_MISMATCH:
        return (
            "The shape of the target variable and the shape of the target value in "
            f"`variable.assign(value)` must match. variable.shape={_py_shape(target.shape)}, "
            f"Received: value.shape={_py_shape(ckpt.shape)}."
        )
    if kind is Kind.DTYPE_MISMATCH:
        return (
            f"raises nothing: load_weights casts the stored {ckpt.dtype} value to the "
            f"variable's {target.dtype}, so the variable does not hold the file's value"
        )
    return None


def _keras_count_error(target: VariableSpec, stored: int, needed: int) -> str:
    if keras_group(target.name) == "optimizer":
        return (
            "raises nothing: Keras skips the optimizer's variables with a warning when "
            "their number differs from the file's ('Skipping variable loading for "
            f"optimizer ..., because it has {needed} variables whereas the saved optimizer "
            f"has {stored} variables'), so they keep their values"
        )
    return (
        f"Layer '{_keras_layer(target)}' expected {needed} variables, but received {stored} "
        "variables during loading"
    )


def _keras_refused(ckpt: Inventory, target: Inventory) -> dict[str, tuple[int, int]]:
    """The saved objects ``load_weights`` restores nothing into: Keras loads an object's
    variables only when the file holds exactly as many for it as the object has (a layer
    raises, an optimizer is skipped with a warning), whatever their names. Group ->
    (stored, needed)."""
    stored: dict[str, int] = defaultdict(int)
    needed: dict[str, int] = defaultdict(int)
    for key in ckpt.variables:
        stored[keras_group(key)] += 1
    for key in target.variables:
        needed[keras_group(key)] += 1
    return {g: (stored[g], n) for g, n in needed.items() if stored[g] != n}


def _closest(name: str, candidates: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    return matches[0] if matches else None


class _Hints:
    """'Did you mean': an unused checkpoint variable with the same original name, else the
    closest by name, preferring the same shape."""

    MAX_ANY_SHAPE = 5000  # beyond this many unused names, only same-shape candidates

    def __init__(self, unused: dict[str, VariableSpec], key_fn: KeyFn) -> None:
        self.by_key = {(key_fn(v) or [v.name])[0]: v for v in unused.values()}
        originals: dict[str, list[VariableSpec]] = defaultdict(list)
        for v in unused.values():
            if v.original_name:
                originals[_by_original(v)[0]].append(v)
        # A name several variables share (tf.Variable's default 'Variable') points nowhere.
        self.by_original = {k: vs[0] for k, vs in originals.items() if len(vs) == 1}
        self.by_shape: dict[tuple[int, ...], list[str]] = defaultdict(list)
        for key, spec in self.by_key.items():
            self.by_shape[spec.shape].append(key)

    def for_target(self, key: str, target: VariableSpec) -> tuple[str, str] | None:
        """The hint, and the name of the checkpoint variable it points to."""
        if target.original_name:
            twin = self.by_original.get(_by_original(target)[0])
            if twin is not None:
                return (
                    f"the checkpoint's {twin.name!r} has the same original name "
                    f"({twin.original_name}) and shape {_human(twin.shape)}: the object "
                    "structure changed; `convert --target T` writes it under this model's "
                    "paths (--format keras for a Keras 3 model)"
                ), twin.name
        same = _closest(key, self.by_shape.get(target.shape, []))
        if same is not None:
            name = self.by_key[same].name
            return f"did you mean {name!r} (unused, same shape {_human(target.shape)})?", name
        if len(self.by_key) <= self.MAX_ANY_SHAPE:
            other = _closest(key, list(self.by_key))
            if other is not None:
                candidate = self.by_key[other]
                return _reshape_hint(target, candidate), candidate.name
        return None


def _reshape_hint(target: VariableSpec, candidate: VariableSpec) -> str:
    hint = f"the closest unused name is {candidate.name!r}, shape {_human(candidate.shape)}"
    if candidate.num_elements == target.num_elements:
        return hint + ": reshape it with a map if it is the same variable"
    names = f"{target.name} {target.original_name or ''} {candidate.name}".lower()
    recurrent = any(word in names for word in ("lstm", "gru", "rnn", "cell"))
    if not recurrent:
        return hint + ": slice or pad it with a map if it is the same variable"
    axes = [
        i for i, (a, b) in enumerate(zip(target.shape, candidate.shape, strict=False)) if a != b
    ]
    fused = (
        len(target.shape) == len(candidate.shape)
        and len(axes) == 1
        and candidate.shape[axes[0]] > target.shape[axes[0]]
    )
    if not fused:
        return hint + ": slice or pad it with a map if it is the same variable"
    axis = axes[0]
    hint += (
        f": it may hold this variable fused with others along axis {axis} (TF1 RNN "
        "cells fuse the input and recurrent kernels into one [input + units, "
        f"gates * units] matrix); split it along axis {axis} with a map"
    )
    if "lstm" in names:
        hint += (
            "; TF1 LSTM cells also order the gates i, j, f, o where Keras uses "
            "i, f, c, o, so the gate blocks need reordering"
        )
    return hint


# -- the comparison --------------------------------------------------------------------


def cannot_restore(ckpt: Inventory, target: Inventory) -> str | None:
    """Why the target's own restore reads nothing from this checkpoint, however its names
    compare; None when it can."""
    if target.scheme is Scheme.KERAS3 and ckpt.scheme in (Scheme.TF1, Scheme.TF2):
        return (
            "Keras 3 model.load_weights reads .weights.h5 and .keras files, not TensorFlow "
            "checkpoints"
        )
    if ckpt.scheme is Scheme.TF1 and target.scheme is Scheme.TF2 and not target.restores_by_name:
        return (
            "a Keras 3 model's variables have no TF1 names: restoring a name-based (TF1) "
            "checkpoint into it loads nothing"
        )
    return None


def _ignore_pattern(text: str) -> UserRegex:
    try:
        return compile_user_regex(text)
    except re.error as e:
        raise CkptMigrateError(
            f"the [[ignore]] pattern {text!r} is not a valid regular expression: {e}",
            hint="quote the pattern; escape literal dots as \\.",
        ) from None


def _ignored(patterns: Sequence[UserRegex], v: VariableSpec) -> bool:
    return any(
        p.search(v.name) or (v.original_name and p.search(v.original_name)) for p in patterns
    )


def _without(inv: Inventory, patterns: Sequence[UserRegex]) -> tuple[Inventory, int]:
    """The inventory without the object graph (not a variable) and ignored names, and how
    many names the patterns left out."""
    if not patterns:
        if OBJECT_GRAPH_KEY not in inv.variables:
            return inv, 0
        kept = dict(inv.variables)
        del kept[OBJECT_GRAPH_KEY]
        return replace(inv, variables=kept), 0
    kept = {}
    ignored = 0
    for key, spec in inv.variables.items():
        if key == OBJECT_GRAPH_KEY:
            continue
        if _ignored(patterns, spec):
            ignored += 1
            continue
        kept[key] = spec
    return replace(inv, variables=kept), ignored


_KIND_ORDER = {
    kind: i
    for i, kind in enumerate(
        [Kind.SHAPE_MISMATCH, Kind.DTYPE_MISMATCH, Kind.MISSING, Kind.UNUSED, Kind.MATCHED]
    )
}
_ROLE_ORDER = {role: i for i, role in enumerate(Role)}


def compare(
    checkpoint: Inventory, target: Inventory, options: CheckOptions | None = None
) -> Report:
    """Every target variable's fate in a restore from ``checkpoint``, and what is left over."""
    options = options or CheckOptions()
    patterns = [_ignore_pattern(p) for p in options.ignore]
    ckpt_inv, ckpt_ignored = _without(checkpoint, patterns)
    target_inv, target_ignored = _without(target, patterns)
    pairing = _pair(ckpt_inv, target_inv, options.rekeyed)
    cannot = None if options.rekeyed else cannot_restore(ckpt_inv, target_inv)
    if cannot is not None:  # names may agree, but this restore reads none of them
        pairing = replace(pairing, pairs=dict.fromkeys(pairing.pairs))
    strategy = pairing.strategy
    used = {c.name for c in pairing.pairs.values() if c is not None}
    unused = {k: v for k, v in ckpt_inv.variables.items() if k not in used}
    # A model variable's "did you mean" is another model variable, never an optimizer slot.
    hints = {
        role: _Hints({k: v for k, v in unused.items() if v.role is role}, strategy.ckpt_keys)
        for role in {t.role for t in target_inv.variables.values()}
    }
    # Same scheme: TF looks a variable up by the target's own key. Across schemes (a TF2
    # model restoring a name-based checkpoint, or a Saver restoring an object-based one)
    # it goes through the variable's name.
    restore_scheme = target_inv.scheme
    same_scheme = ckpt_inv.scheme == target_inv.scheme
    scope_hints = (
        {}
        if options.rekeyed or cannot is not None or strategy.alignment is not None
        else _scope_hints(ckpt_inv, target_inv, pairing)
    )

    # Keras 3 load_weights restores an object's variables only all together.
    refused = (
        _keras_refused(checkpoint, target)
        if restore_scheme is Scheme.KERAS3 and same_scheme and not options.rekeyed
        else {}
    )

    findings: list[Finding] = []
    for tname, tspec in target_inv.variables.items():
        cspec = pairing.pairs[tname]
        group = refused.get(keras_group(tname)) if refused else None
        if (
            group is None
            and cspec is not None
            and cspec.shape == tspec.shape
            and cspec.dtype == tspec.dtype
            and cannot is None
        ):  # restores: no error to word and no hint (most variables of most checks)
            findings.append(Finding(Kind.MATCHED, tspec.name, tspec.role, cspec.name, tspec, cspec))
            continue
        key = pairing.match_keys[tname]
        if group is not None:
            kind = Kind.MISSING
            cspec = None
        elif cspec is None:
            kind = Kind.MISSING
        elif cspec.shape != tspec.shape:
            kind = Kind.SHAPE_MISMATCH
        elif cspec.dtype != tspec.dtype:
            kind = Kind.DTYPE_MISMATCH
        else:
            kind = Kind.MATCHED
        lookup = tspec.name if same_scheme else key
        if cspec is not None and kind is not Kind.MATCHED:
            # A value TF found but cannot use is named by its key in the checkpoint file
            # (through a root attribute, 'model/...', not the target's own path).
            lookup = cspec.name
        # TensorFlow's RestoreV2 checks the dtype before anything reads the shape: a value
        # wrong in both is refused for its dtype.
        # (Keras casts first and then refuses the shape.)
        both = (
            kind is Kind.SHAPE_MISMATCH
            and cspec is not None
            and cspec.dtype != tspec.dtype
            and restore_scheme is not Scheme.KERAS3
        )
        error = cannot or (_keras_count_error(tspec, *group) if group else None)
        if not error and kind is not Kind.MATCHED:  # a matched variable raises nothing
            error = tensorflow_error(
                Kind.DTYPE_MISMATCH if both else kind,
                tspec,
                cspec,
                lookup,
                restore_scheme,
                checkpoint_scheme=ckpt_inv.scheme,
                checkpoint_format=ckpt_inv.checkpoint_format,
                checkpoint_source=ckpt_inv.source,
            )
        hint = suggested = None
        if group is not None:
            hint = (
                f"the file holds {group[0]} weights for {keras_group(tname)}, the model "
                f"{group[1]}: another configuration of the layer (use_bias, center, scale) "
                "or another layer of the same type at that position; a map can make it fit"
            )
        elif kind is Kind.MISSING and tname in scope_hints:
            hint = _scope_hint_text(scope_hints[tname], tspec)
            suggested = scope_hints[tname].checkpoint.name
        elif kind is Kind.MISSING:
            hint, suggested = hints[tspec.role].for_target(key, tspec) or (None, None)
        elif kind is Kind.SHAPE_MISMATCH:
            assert cspec is not None
            hint = (
                f"the checkpoint holds {_human(cspec.shape)}, the model needs "
                f"{_human(tspec.shape)}: slice/pad/reshape it with a map, or drop it "
                "and initialise"
            )
        elif kind is Kind.DTYPE_MISMATCH:
            assert cspec is not None
            hint = f"cast it from {cspec.dtype} to {tspec.dtype} with a map"
        findings.append(
            Finding(
                kind,
                tspec.name,
                tspec.role,
                None if cspec is None else cspec.name,
                tspec,
                cspec,
                error,
                hint,
                suggested=suggested,
            )
        )
    for cspec in unused.values():
        findings.append(Finding(Kind.UNUSED, cspec.name, cspec.role, cspec.name, None, cspec))
    findings.sort(key=lambda f: (_KIND_ORDER[f.kind], _ROLE_ORDER[f.role], f.name))
    notes = [*checkpoint.notes, *target.notes]
    if cannot is not None:
        notes.append(
            f"{cannot}; `convert CKPT --target T` (with --format keras for a Keras 3 "
            "model) writes it under the model's own keys"
        )
    if strategy.note:
        notes.append(strategy.note)
    if scope_hints:
        notes.append(_scope_note(scope_hints))
    if patterns:
        notes.append(
            f"--ignore left out {ckpt_ignored} checkpoint and {target_ignored} target names"
        )
    return Report(
        checkpoint,
        target,
        strategy.description,
        tuple(findings),
        options,
        tuple(notes),
        strategy.alignment,
    )
