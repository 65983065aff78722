"""Plan a conversion: run every checkpoint variable through the map's rules, on names,
shapes and dtypes only. Pure: no values are read, nothing is written.

Each variable flows through the rules in order. An optimizer slot variable (its name is its
variable's name plus a slot suffix: ``.../kernel/Adagrad``, ``.../kernel/t_0/Adam_1``,
``.../kernel/.OPTIMIZER_SLOT/...``) follows its variable: a rule matching the variable also
renames, drops or reshapes the slot, unless the rule matched the slot's own name.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from ..checkpoint import Checkpoint
from ..formats.object_graph import OBJECT_GRAPH_KEY
from ..names import OPTIMIZER_SLOT_MARKER, VARIABLE_SUFFIX, Role
from .located import MapError
from .ops import OpError, ShapeOp, describe, result_dtype, result_shape
from .schema import AnyRule, Drop, InitRule, KeepRule, Map, Rename, Rule


@dataclass(frozen=True, slots=True)
class Step:
    rule: str  # "rule 3 (map.yaml:9:5)"
    op: ShapeOp
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...]
    dtype_before: str
    dtype_after: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "operation": describe(self.op),
            "shape_before": list(self.shape_before),
            "shape_after": list(self.shape_after),
            "dtype_before": self.dtype_before,
            "dtype_after": self.dtype_after,
        }


@dataclass(frozen=True, slots=True)
class PlannedVariable:
    name: str
    source: str | None  # checkpoint key it comes from; None for init
    role: Role
    shape: tuple[int, ...]
    dtype: str
    source_shape: tuple[int, ...]
    source_dtype: str
    steps: tuple[Step, ...] = ()
    renamed_by: tuple[str, ...] = ()
    init: InitRule | None = None

    @property
    def raw_copy(self) -> bool:
        """Only renamed or kept: copied as stored bytes, never decoded."""
        return self.init is None and not self.steps

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "role": self.role.value,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "source_shape": list(self.source_shape),
            "source_dtype": self.source_dtype,
            "copied_unchanged": self.raw_copy,
            "renamed_by": list(self.renamed_by),
            "operations": [s.to_dict() for s in self.steps],
            "init": None
            if self.init is None
            else {"rule": self.init.label, "fill": self.init.fill.kind},
        }


@dataclass(frozen=True, slots=True)
class Dropped:
    source: str
    rule: str

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "rule": self.rule}


@dataclass(frozen=True)
class Plan:
    checkpoint: str
    map: Map
    outputs: tuple[PlannedVariable, ...]
    dropped: tuple[Dropped, ...]
    warnings: tuple[str, ...] = ()
    passthrough: tuple[str, ...] = field(default_factory=tuple)  # e.g. the object graph

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "checkpoint": self.checkpoint,
            "map": self.map.path,
            "map_sha256": self.map.sha256,
            "outputs": [o.to_dict() for o in self.outputs],
            "dropped": [d.to_dict() for d in self.dropped],
            "passthrough": list(self.passthrough),
            "warnings": list(self.warnings),
        }


@dataclass
class _State:
    name: str
    source: str | None
    role: Role
    shape: tuple[int, ...]
    dtype: str
    source_shape: tuple[int, ...]
    source_dtype: str
    owner: _State | None = None  # the variable an optimizer slot belongs to
    suffix: str = ""  # the slot part of the name, after the owner's name
    steps: list[Step] = field(default_factory=list)
    renamed_by: list[str] = field(default_factory=list)
    alive: bool = True
    dropped_by: str | None = None
    handled: bool = False
    init: InitRule | None = None
    produced_by: str = "the checkpoint"


def _display(key: str) -> str:
    return key.removesuffix(VARIABLE_SUFFIX)


def _split_slot(key: str, keys: set[str]) -> tuple[str, str] | None:
    """(owner key, slot suffix) when ``key`` is an optimizer slot of another variable."""
    if OPTIMIZER_SLOT_MARKER in key:
        owner = key.split(OPTIMIZER_SLOT_MARKER, 1)[0] + VARIABLE_SUFFIX
        return (owner, key[len(owner) - len(VARIABLE_SUFFIX) :]) if owner in keys else None
    parts = key.split("/")
    for cut in range(len(parts) - 1, 0, -1):
        owner = "/".join(parts[:cut])
        if owner in keys:
            return owner, "/" + "/".join(parts[cut:])
    return None


def _initial_states(checkpoint: Checkpoint) -> tuple[list[_State], list[str]]:
    reader = checkpoint.reader
    keys = [k for k in reader.variable_keys() if k != OBJECT_GRAPH_KEY]
    passthrough = [OBJECT_GRAPH_KEY] if OBJECT_GRAPH_KEY in reader.variable_keys() else []
    states: dict[str, _State] = {}
    for key in keys:
        info = reader.info(key)
        states[key] = _State(
            _display(key),
            key,
            checkpoint.role(key),
            info.shape,
            info.dtype.name,
            info.shape,
            info.dtype.name,
        )
    model_keys = {k for k, s in states.items() if s.role is not Role.OPTIMIZER}
    for key, state in states.items():
        if state.role is Role.OPTIMIZER:
            found = _split_slot(key, model_keys)
            if found is not None:
                owner, suffix = found
                state.owner = states[owner]
                state.suffix = suffix.removesuffix(VARIABLE_SUFFIX)
    return list(states.values()), passthrough


def _fail(rule: AnyRule, name: str, message: str) -> MapError:
    return MapError(rule.where, f"rule {rule.number}, variable {name!r}: {message}")


def _apply_rule(rule: Rule, state: _State, name_before: str, owner_before: str | None) -> bool:
    """Apply ``rule`` to one variable; returns whether it matched (itself or via its owner)."""
    match = rule.selector.match(name_before)
    via_owner = False
    if match is None and owner_before is not None and state.owner is not None:
        match = rule.selector.match(owner_before)
        via_owner = match is not None
    if match is None:
        return False
    state.handled = True
    op = rule.op
    if isinstance(op, Drop):
        state.alive = False
        state.dropped_by = rule.label
        return True
    if isinstance(op, Rename):
        try:
            rendered = op.template.render(match)
        except ValueError as e:
            raise _fail(rule, name_before, str(e)) from None
        if not rendered:
            raise _fail(rule, name_before, "the rename produces an empty name")
        state.name = rendered + state.suffix if via_owner else rendered
        state.renamed_by.append(rule.label)
        state.produced_by = rule.label
        return True
    if via_owner and state.shape != (state.owner.shape if state.owner else None):
        return True  # a slot of another shape than its variable keeps its own shape
    try:
        shape = result_shape(op, state.shape)
        dtype = result_dtype(op, state.dtype)
    except OpError as e:
        raise _fail(rule, name_before, str(e)) from None
    state.steps.append(Step(rule.label, op, state.shape, shape, state.dtype, dtype))
    state.shape, state.dtype = shape, dtype
    state.produced_by = rule.label
    return True


def _closest_names(selector_text: str, names: list[str]) -> str:
    close = difflib.get_close_matches(selector_text, names, n=3, cutoff=0.4)
    return (
        f"closest names: {', '.join(close)} (perhaps you misspelled it?)"
        if close
        else "no similar names in the checkpoint"
    )


def plan_conversion(
    checkpoint: Checkpoint, mapping: Map, *, strict: bool = False, require_all: bool = False
) -> Plan:
    """The conversion ``mapping`` describes for ``checkpoint``, fully validated."""
    states, passthrough = _initial_states(checkpoint)
    source_names = [s.name for s in states]
    warnings: list[str] = []
    for rule in mapping.rules:
        alive = [s for s in states if s.alive]
        before = {id(s): s.name for s in alive}
        matched = 0
        if isinstance(rule, KeepRule):
            for state in alive:
                names = [before[id(state)]]
                if state.owner is not None and id(state.owner) in before:
                    names.append(before[id(state.owner)])
                if any(sel.match(n) for sel in rule.patterns for n in names):
                    state.handled = True
                    matched += 1
                else:
                    state.alive = False
                    state.dropped_by = f"{rule.label}: not kept"
        elif isinstance(rule, InitRule):
            if any(s.name == rule.name for s in alive):
                raise MapError(
                    rule.where,
                    f"init creates {rule.name!r}, which already exists at this point of the map",
                    hint="drop or rename it first.",
                )
            states.append(
                _State(
                    rule.name,
                    None,
                    Role.MODEL,
                    rule.shape,
                    rule.dtype,
                    rule.shape,
                    rule.dtype,
                    handled=True,
                    init=rule,
                    produced_by=rule.label,
                )
            )
            matched = 1
        else:
            for state in alive:
                owner = state.owner
                owner_before = before.get(id(owner)) if owner is not None else None
                if _apply_rule(rule, state, before[id(state)], owner_before):
                    matched += 1
        if matched == 0:
            text = (
                rule.selector.text
                if isinstance(rule, Rule)
                else ", ".join(p.text for p in rule.patterns)
                if isinstance(rule, KeepRule)
                else ""
            )
            message = f"{rule.label} matches nothing; {_closest_names(text, source_names)}"
            if strict:
                raise MapError(
                    rule.where,
                    message,
                    hint="remove the rule or fix its pattern "
                    "(or run without --strict to only warn).",
                )
            warnings.append(message)
    _check_unique(states, mapping)
    if require_all:
        unhandled = [s.source for s in states if s.source and not s.handled]
        if unhandled:
            shown = ", ".join(_display(k) for k in unhandled[:10])
            more = f" and {len(unhandled) - 10} more" if len(unhandled) > 10 else ""
            raise MapError(
                mapping.path,
                f"--require-all: {len(unhandled)} variable(s) no rule "
                f"renames, keeps or drops: {shown}{more}",
                hint="add a rule for them (keep: [...] or drop: true).",
            )
    _check_object_graph(checkpoint, states, mapping)
    outputs = tuple(
        sorted(
            (
                PlannedVariable(
                    _key_for(checkpoint, s),
                    s.source,
                    s.role,
                    s.shape,
                    s.dtype,
                    s.source_shape,
                    s.source_dtype,
                    tuple(s.steps),
                    tuple(s.renamed_by),
                    s.init,
                )
                for s in states
                if s.alive
            ),
            key=lambda v: v.name,
        )
    )
    dropped = tuple(
        Dropped(s.source, s.dropped_by or "") for s in states if not s.alive and s.source
    )
    return Plan(
        str(checkpoint.location.given),
        mapping,
        outputs,
        dropped,
        tuple(warnings),
        tuple(passthrough),
    )


def _key_for(checkpoint: Checkpoint, state: _State) -> str:
    if checkpoint.is_object_based and state.source is not None:
        return state.name + VARIABLE_SUFFIX
    return state.name


def _check_unique(states: list[_State], mapping: Map) -> None:
    seen: dict[str, _State] = {}
    for state in states:
        if not state.alive:
            continue
        other = seen.get(state.name)
        if other is not None:
            raise MapError(
                mapping.path,
                f"two variables would both be written as {state.name!r}: "
                f"{other.source or 'init'} (from {other.produced_by}) and "
                f"{state.source or 'init'} (from {state.produced_by})",
                hint="make the renames distinct, or drop one of them.",
            )
        seen[state.name] = state


def _check_object_graph(checkpoint: Checkpoint, states: list[_State], mapping: Map) -> None:
    if not checkpoint.is_object_based:
        return
    for state in states:
        if state.source is None:
            continue
        renamed = state.alive and state.name != _display(state.source)
        if renamed or not state.alive:
            what = "renames" if renamed else "drops"
            raise MapError(
                mapping.path,
                f"this object-based (TF2) checkpoint's object graph records "
                f"{_display(state.source)!r}; the map {what} it, and rewriting the object "
                "graph to match is not supported yet",
                hint="value operations (slice, pad, cast, ...) work on TF2 checkpoints; for "
                "renames and drops, convert a name-based checkpoint or wait for --target "
                "conversion.",
            )
