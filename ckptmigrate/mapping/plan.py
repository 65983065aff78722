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
from ..formats.object_graph import (
    OBJECT_GRAPH_KEY,
    ObjectGraphEditError,
    rebuild_object_graph,
)
from ..names import OPTIMIZER_SLOT_MARKER, VARIABLE_SUFFIX, Role
from .located import MapError
from .ops import Drop, OpError, Rename, Replace, Split, SplitPart, ValueOp, split_bounds
from .rules import AnyRule, ConcatRule, FromRule, InitRule, KeepRule, Map, Rule


@dataclass(frozen=True, slots=True)
class Step:
    rule: str  # "rule 3 (map.yaml:9:5)"
    op: ValueOp
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...]
    dtype_before: str
    dtype_after: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "operation": self.op.describe(),
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
    origin: str | None = None  # another checkpoint (a `from` rule); None: the source
    parts: tuple[PlannedVariable, ...] = ()  # the inputs of a concat, in order
    concat_axis: int = 0
    from_target: bool = False  # --fill-missing-from-target: the target's own initial value

    @property
    def raw_copy(self) -> bool:
        """Only renamed or kept: copied as stored bytes, never decoded."""
        return self.init is None and not self.steps and not self.parts

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
            "origin": self.origin,
            "concat": [p.to_dict() for p in self.parts] if self.parts else None,
            "from_target": self.from_target,
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
    object_graph: bytes | None = None  # TF2: the rewritten object graph, when it changed
    target: str | None = None  # convert --target: outputs are the target's keys
    left_out: tuple[str, ...] = ()  # map outputs the target does not restore
    # What locating the source found worth a warning (a state file leading elsewhere).
    source_warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:
        counts = [f"{len(self.outputs)} outputs", f"{len(self.dropped)} dropped"]
        if self.left_out:
            counts.append(f"{len(self.left_out)} left out")
        if self.warnings:
            counts.append(f"{len(self.warnings)} warning{'s' if len(self.warnings) > 1 else ''}")
        into = f" for {self.target}" if self.target else ""
        return f"<Plan {self.checkpoint} with {self.map.path}{into}: {', '.join(counts)}>"

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
            "target": self.target,
            "left_out": list(self.left_out),
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
    origin: str | None = None
    parts: list[_State] | None = None
    concat_axis: int = 0
    consumed_by: str | None = None  # split or concatenated into other variables


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


def _fail(rule: AnyRule, name: str, message: str, hint: str | None = None) -> MapError:
    return MapError(rule.where, f"rule {rule.number}, variable {name!r}: {message}", hint=hint)


def _apply_rule(
    rule: Rule,
    state: _State,
    name_before: str,
    owner_before: str | None,
    owner_shape_before: tuple[int, ...] | None = None,
) -> list[_State] | None:
    """Apply ``rule`` to one variable (itself or via its owner); None if it didn't match,
    else the variables it creates (a split's parts)."""
    match = rule.selector.match(name_before, state.role)
    via_owner = False
    if match is None and owner_before is not None and state.owner is not None:
        match = rule.selector.match(owner_before, state.owner.role)
        via_owner = match is not None
    if match is None:
        return None
    state.handled = True
    op = rule.op
    if isinstance(op, Drop):
        state.alive = False
        state.dropped_by = rule.label
        return []
    if isinstance(op, Rename | Replace):
        try:
            if isinstance(op, Replace):
                # A slot matched through its variable follows the variable's new name.
                matched = owner_before if via_owner and owner_before is not None else name_before
                rendered = matched.replace(op.old, op.new)
            else:
                rendered = op.template.render(match)
        except ValueError as e:
            raise _fail(rule, name_before, str(e)) from None
        if not rendered:
            raise _fail(rule, name_before, "the rename produces an empty name")
        state.name = rendered + state.suffix if via_owner else rendered
        state.renamed_by.append(rule.label)
        state.produced_by = rule.label
        return []
    # Compared with the owner's shape before this rule: the owner may already be reshaped.
    if via_owner and state.shape != owner_shape_before:
        return []  # a slot of another shape than its variable keeps its own shape
    if isinstance(op, Split):
        return _split(rule, op, state, name_before, match, via_owner=via_owner)
    # Rename, Drop and Split are the structural operations; every other one is a ValueOp.
    assert isinstance(op, ValueOp), op
    if via_owner:
        slot_op = op.for_slot()
        if slot_op is None:
            return []
        op = slot_op
    _add_step(rule, op, state, name_before)
    return []


def _add_step(rule: AnyRule, op: ValueOp, state: _State, name: str) -> None:
    try:
        shape = op.result_shape(state.shape)
        dtype = op.result_dtype(state.dtype)
    except OpError as e:
        raise _fail(rule, name, str(e), e.hint) from None
    state.steps.append(Step(rule.label, op, state.shape, shape, state.dtype, dtype))
    state.shape, state.dtype = shape, dtype
    state.produced_by = rule.label


def _split(
    rule: Rule, op: Split, state: _State, name: str, match: Any, *, via_owner: bool
) -> list[_State]:
    try:
        bounds = split_bounds(op.axis, state.shape, len(op.into), op.sizes)
        names = [t.render(match) + (state.suffix if via_owner else "") for t in op.into]
    except (OpError, ValueError) as e:
        raise _fail(rule, name, str(e)) from None
    parts = []
    for part_name, (start, stop) in zip(names, bounds, strict=True):
        part = _State(
            part_name,
            state.source,
            state.role,
            state.shape,
            state.dtype,
            state.source_shape,
            state.source_dtype,
            steps=list(state.steps),
            renamed_by=[*state.renamed_by, rule.label],
            handled=True,
            origin=state.origin,
            produced_by=rule.label,
            # what the value is computed from, when it isn't read: an init, a concat
            init=state.init,
            parts=state.parts,
            concat_axis=state.concat_axis,
        )
        _add_step(rule, SplitPart(op.axis % len(state.shape), start, stop), part, name)
        parts.append(part)
    state.alive = False
    state.consumed_by = rule.label
    return parts


def _concat(rule: ConcatRule, alive: list[_State]) -> _State:
    by_name = {s.name: s for s in alive}
    missing = [n for n in rule.sources if n not in by_name]
    if missing:
        raise MapError(
            rule.where,
            f"concat: {', '.join(map(repr, missing))} do(es) not exist at this point of the map",
        )
    parts = [by_name[n] for n in rule.sources]
    first = parts[0]
    rank = len(first.shape)
    if not -rank <= rule.axis < rank:
        raise MapError(rule.where, f"concat axis {rule.axis} is out of range for rank {rank}")
    axis = rule.axis % rank
    for part in parts[1:]:
        same_rest = len(part.shape) == rank and all(
            a == b
            for i, (a, b) in enumerate(zip(part.shape, first.shape, strict=True))
            if i != axis
        )
        if not same_rest or part.dtype != first.dtype:
            raise MapError(
                rule.where,
                f"concat: {part.name!r} is {list(part.shape)} "
                f"{part.dtype}, {first.name!r} is {list(first.shape)} {first.dtype}; "
                f"they must agree except on axis {axis}",
            )
    shape = tuple(
        sum(p.shape[axis] for p in parts) if i == axis else d for i, d in enumerate(first.shape)
    )
    for part in parts:
        part.alive = False
        part.consumed_by = rule.label
    return _State(
        rule.into,
        None,
        first.role,
        shape,
        first.dtype,
        shape,
        first.dtype,
        handled=True,
        produced_by=rule.label,
        parts=parts,
        concat_axis=axis,
    )


def _from(rule: FromRule, alive: list[_State]) -> list[_State]:
    from ..checkpoint import open_checkpoint

    with open_checkpoint(rule.checkpoint) as other:
        keys = [k for k in other.reader.variable_keys() if k != OBJECT_GRAPH_KEY]
        taken = {s.name for s in alive}
        states = []
        for key in keys:
            name = _display(key)
            if not rule.selector.match(name):
                continue
            if name in taken:
                raise MapError(
                    rule.where,
                    f"from: {name!r} from {rule.checkpoint} already "
                    "exists at this point of the map",
                    hint="drop or rename the existing one first.",
                )
            info = other.reader.info(key)
            states.append(
                _State(
                    name,
                    key,
                    other.role(key),
                    info.shape,
                    info.dtype.name,
                    info.shape,
                    info.dtype.name,
                    handled=True,
                    origin=str(other.prefix),
                    produced_by=rule.label,
                )
            )
    return states


def _closest_names(selector_text: str, names: list[str]) -> str:
    close = difflib.get_close_matches(selector_text, names, n=3, cutoff=0.4)
    return (
        f"closest names: {', '.join(close)} (perhaps you misspelled it?)"
        if close
        else "no similar names in the checkpoint"
    )


def plan_conversion(
    checkpoint: Checkpoint,
    mapping: Map,
    *,
    strict: bool = False,
    require_all: bool = False,
    keep_object_graph: bool = True,
) -> Plan:
    """The conversion ``mapping`` describes for ``checkpoint``, fully validated.

    Args:
        checkpoint: the open source checkpoint (only names, shapes and dtypes are read).
        mapping: the validated map.
        strict: a rule that matches nothing is an error, not a warning.
        require_all: every checkpoint variable must be renamed, kept or dropped by a rule.
        keep_object_graph: the output carries the source's object graph, so renames must
            fit it; false when it is checked against, or written with, a target's.

    Returns:
        Every output variable with its source and steps, what is dropped, and warnings.

    Raises:
        MapError: the map does not fit the checkpoint (naming the rule and the variable).
    """
    states, passthrough = _initial_states(checkpoint)
    source_names = [s.name for s in states]
    warnings: list[str] = []
    for rule in mapping.rules:
        if _run_rule(rule, states) == 0 and not _is_optional(rule):
            message = (
                f"{rule.label} matches nothing; {_closest_names(_selected(rule), source_names)}"
            )
            if strict:
                raise MapError(
                    rule.where,
                    message,
                    hint="remove the rule or fix its pattern "
                    "(or run without [[strict]] to only warn).",
                )
            warnings.append(message)
    _check_unique(states, mapping)
    if require_all:
        _check_all_handled(states, mapping)
    outputs = tuple(
        sorted((_planned(checkpoint, s) for s in states if s.alive), key=lambda v: v.name)
    )
    dropped = tuple(
        Dropped(s.source, s.dropped_by or "")
        for s in states
        if not s.alive and s.source and s.consumed_by is None and s.origin is None
    )
    graph = _object_graph(checkpoint, outputs, mapping) if keep_object_graph else None
    return Plan(
        str(checkpoint.location.given),
        mapping,
        outputs,
        dropped,
        tuple(warnings),
        tuple(passthrough) if keep_object_graph and graph is None else (),
        graph,
        source_warnings=checkpoint.location.warnings,
    )


def _run_rule(rule: AnyRule, states: list[_State]) -> int:
    """Apply ``rule`` to the variables alive at its point of the map (adding any it
    creates to ``states``); returns how many it matched."""
    alive = [s for s in states if s.alive]
    match rule:
        case KeepRule():
            return _keep(rule, alive)
        case InitRule():
            states.append(_init(rule, alive))
            return 1
        case ConcatRule():
            if rule.optional and not {s.name for s in alive}.intersection(rule.sources):
                return 0  # e.g. the GRU half of a map applied to an LSTM checkpoint
            states.append(_concat(rule, alive))
            return 1
        case FromRule():
            brought = _from(rule, alive)
            states.extend(brought)
            return len(brought)
        case Rule():
            return _apply_everywhere(rule, alive, states)


def _apply_everywhere(rule: Rule, alive: list[_State], states: list[_State]) -> int:
    """A selector rule on every variable alive, each seen under its name before the rule
    (and its owner's, for a slot following its variable)."""
    before = {id(s): s.name for s in alive}
    shapes_before = {id(s): s.shape for s in alive}
    matched = 0
    for state in alive:
        owner = state.owner
        owner_before = before.get(id(owner)) if owner is not None else None
        owner_shape = shapes_before.get(id(owner)) if owner is not None else None
        created = _apply_rule(rule, state, before[id(state)], owner_before, owner_shape)
        if created is not None:
            matched += 1
            states.extend(created)
    return matched


def _keep(rule: KeepRule, alive: list[_State]) -> int:
    """Everything alive that no pattern keeps (by its name or its owner's) is dropped."""
    before = {id(s): s.name for s in alive}
    matched = 0
    for state in alive:
        names = [(before[id(state)], state.role)]
        if state.owner is not None and id(state.owner) in before:
            names.append((before[id(state.owner)], state.owner.role))
        if any(sel.match(n, role) for sel in rule.patterns for n, role in names):
            state.handled = True
            matched += 1
        else:
            state.alive = False
            state.dropped_by = f"{rule.label}: not kept"
    return matched


def _init(rule: InitRule, alive: list[_State]) -> _State:
    if any(s.name == rule.name for s in alive):
        raise MapError(
            rule.where,
            f"init creates {rule.name!r}, which already exists at this point of the map",
            hint="drop or rename it first.",
        )
    return _State(
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


def _is_optional(rule: AnyRule) -> bool:
    return isinstance(rule, Rule | KeepRule | ConcatRule) and rule.optional


def _selected(rule: AnyRule) -> str:
    """What a rule selects, as written (for "did you mean")."""
    match rule:
        case Rule() | FromRule():
            return rule.selector.text
        case KeepRule():
            return ", ".join(p.text for p in rule.patterns)
        case _:
            return ""


def _check_all_handled(states: list[_State], mapping: Map) -> None:
    unhandled = [s.source for s in states if s.source and not s.handled]
    if unhandled:
        shown = ", ".join(_display(k) for k in unhandled[:10])
        more = f" and {len(unhandled) - 10} more" if len(unhandled) > 10 else ""
        raise MapError(
            mapping.path,
            f"[[require_all]]: {len(unhandled)} variable(s) no rule "
            f"renames, keeps or drops: {shown}{more}",
            hint="add a rule for them (keep: [...] or drop: true).",
        )


def _planned(checkpoint: Checkpoint, s: _State) -> PlannedVariable:
    return PlannedVariable(
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
        s.origin,
        tuple(_planned(checkpoint, p) for p in s.parts or ()),
        s.concat_axis,
    )


def _key_for(checkpoint: Checkpoint, state: _State) -> str:
    if checkpoint.is_object_based and state.source is not None and state.origin is None:
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


def _object_graph(
    checkpoint: Checkpoint, outputs: tuple[PlannedVariable, ...], mapping: Map
) -> bytes | None:
    """TF2: the object graph rewritten for the outputs (None when nothing moved)."""
    if not checkpoint.is_object_based or checkpoint.object_graph_bytes is None:
        return None
    sources = {
        v.name: v.source if v.origin is None and v.init is None and not v.parts else None
        for v in outputs
    }
    originals = set(checkpoint.reader.variable_keys()) - {OBJECT_GRAPH_KEY}
    if all(new == old for new, old in sources.items()) and set(sources) == originals:
        return None
    try:
        return rebuild_object_graph(checkpoint.object_graph_bytes, sources)
    except ObjectGraphEditError as e:
        raise MapError(
            mapping.path,
            f"this object-based (TF2) checkpoint restores through its object graph, and the "
            f"map asks for a change it cannot express: {e}",
            hint="map onto object paths the checkpoint already has (inspect lists them), or "
            "convert into the target model ([[target]]) to write its own graph.",
        ) from None
