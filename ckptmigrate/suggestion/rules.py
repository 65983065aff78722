"""From pairs to rules: renames (in an order that never collides, grouped by scope), shape
fixes, drops and inits."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .. import dtypes
from ..compare import CheckOptions, Finding, Kind, Report, compare
from ..formats.object_graph import OBJECT_GRAPH_KEY
from ..inventory import Inventory, VariableSpec
from ..mapping.retarget import auto_named
from ..names import Role, variable_path
from .assign import assign_pairs
from .fixes import SlotStarts, fan_in_axis, fill_for, shape_ops
from .model import Pair, Section, SuggestedRule, make_rule
from .scoring import natural_key, output_keys, target_keys, views

if TYPE_CHECKING:
    pass


@dataclass
class _Plan:
    """What the matcher decided, before it becomes rules."""

    renames: dict[str, str] = field(default_factory=dict)  # source -> target name
    fixes: dict[str, tuple[VariableSpec, VariableSpec]] = field(default_factory=dict)
    drops: list[str] = field(default_factory=list)  # model/step variables by name
    inits: list[VariableSpec] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # source -> why it is paired
    # original names several variables share (tf.Variable's default 'Variable'): equal
    # ones don't make a conversion pair two variables, so they don't spare a rename
    shared_originals: frozenset[str] = frozenset()


def compare_names(ckpt: Inventory, target: Inventory) -> Report:
    """``compare(..., rekeyed=True)`` for its pairing alone, as suggest reads it.

    compare() also writes a "did you mean" for every missing target variable, by difflib
    against every unused checkpoint variable of the same role: quadratic (minutes for a
    few thousand renamed variables a side) and never read here. Compared with the roles
    set apart (every checkpoint variable metadata, every target variable a model
    variable) those searches are empty; the findings then get the real variables back.
    Roles play no part in pairing names."""
    blind_ckpt = replace(
        ckpt, variables={k: v._replace(role=Role.METADATA) for k, v in ckpt.variables.items()}
    )
    blind_target = replace(
        target, variables={k: v._replace(role=Role.MODEL) for k, v in target.variables.items()}
    )
    report = compare(blind_ckpt, blind_target, CheckOptions(rekeyed=True))

    def real(f: Finding) -> Finding:
        t = None if f.target is None else target.variables[f.target.name]
        c = None if f.checkpoint is None else ckpt.variables[f.checkpoint.name]
        role = t.role if t is not None else c.role if c is not None else f.role
        return f._replace(role=role, target=t, checkpoint=c, hint=None)

    findings = sorted(
        (real(f) for f in report.findings),
        key=lambda f: (list(Kind).index(f.kind), list(Role).index(f.role), f.name),
    )
    return replace(report, checkpoint=ckpt, target=target, findings=tuple(findings))


def _fixable(source: VariableSpec, target: VariableSpec) -> bool:
    return len(source.shape) == len(target.shape) or source.num_elements == target.num_elements


def decide(ckpt: Inventory, target: Inventory) -> _Plan:
    report = compare_names(ckpt, target)
    plan = _Plan(shared_originals=_shared_originals(ckpt, target))
    pool_sources: list[VariableSpec] = []
    pool_targets: list[VariableSpec] = []
    poolable = (Role.MODEL, Role.STEP)
    # Slots follow their variable's renames and shape fixes; the simulation catches the rest.
    owned = {slot for slots in _slots_of(ckpt).values() for slot in slots}
    # A name pair whose shapes differ while a target variable nothing supplies has exactly
    # the source's shape is doubtful: positional names (Keras' _operations/2) pair a
    # trained head with the hidden layer inserted at its index. Such pairs go to the
    # scored pools, where shape, name and layer position (the head is last on both
    # sides) decide.
    vacant = Counter(
        (f.target.shape, f.target.dtype)
        for f in report.findings
        if f.kind is Kind.MISSING and f.target is not None and f.target.role in poolable
    )
    # A pair by key (tf-keras' positional layer_with_weights-1) whose original names
    # differ while a target variable nothing supplies bears the checkpoint's very original
    # name (head/kernel): a layer inserted before the head took the head's index. The
    # original name wins; the target the key paired goes to the scored pool.
    by_original: dict[str, list[VariableSpec]] = {}
    for f in report.findings:
        if f.kind is Kind.MISSING and f.target is not None and f.target.role in poolable:
            by_original.setdefault(_original(f.target) or "", []).append(f.target)
    namesakes: dict[str, VariableSpec] = {}  # checkpoint name -> its namesake target
    for f in report.findings:
        original = None if f.checkpoint is None else _original(f.checkpoint)
        found = by_original.get(original or "", [])
        if (
            f.kind in (Kind.MATCHED, Kind.SHAPE_MISMATCH)
            and f.checkpoint is not None
            and f.target is not None
            and f.checkpoint.role in poolable
            and original
            and original not in plan.shared_originals
            and original != _original(f.target)
            and len(found) == 1
            and _fixable(f.checkpoint, found[0])
        ):
            namesakes[f.checkpoint.name] = found[0]
    claimed = {t.name for t in namesakes.values()}
    for f in report.findings:
        if f.checkpoint is not None and variable_path(f.checkpoint.name) in owned:
            continue
        if f.checkpoint is not None and f.target is not None and f.checkpoint.name in namesakes:
            namesake = namesakes[f.checkpoint.name]
            _pair(plan, f.checkpoint, namesake, "its original name is the target's")
            plan.pairs.append(
                Pair(variable_path(f.checkpoint.name), variable_path(namesake.name), 1.0)
            )
            pool_targets.append(f.target)
            continue
        if (
            f.kind is Kind.SHAPE_MISMATCH
            and f.checkpoint is not None
            and f.target is not None
            and f.checkpoint.role in poolable
            and vacant[(f.checkpoint.shape, f.checkpoint.dtype)]
        ):
            pool_sources.append(f.checkpoint)
            pool_targets.append(f.target)
            continue
        if f.kind is Kind.UNUSED:
            if f.checkpoint is not None and f.checkpoint.role in poolable:
                pool_sources.append(f.checkpoint)
            continue
        assert f.target is not None
        if f.kind is Kind.MISSING:
            if f.target.role in poolable and f.target.name not in claimed:
                pool_targets.append(f.target)
            continue
        assert f.checkpoint is not None
        if f.checkpoint.role is Role.OPTIMIZER and f.target.role is not Role.OPTIMIZER:
            # Optimizer state (BERT's .../adam_m) never supplies a model variable, however
            # its name lines up; the target variable is scored with the rest.
            if f.target.role in poolable:
                pool_targets.append(f.target)
            continue
        if f.kind is Kind.SHAPE_MISMATCH and not _fixable(f.checkpoint, f.target):
            pool_sources.append(f.checkpoint)
            pool_targets.append(f.target)
            continue
        _pair(plan, f.checkpoint, f.target, f"compare pairs it {report.matching}")
        plan.pairs.append(Pair(variable_path(f.checkpoint.name), variable_path(f.target.name), 1.0))
    _match_pools(plan, ckpt, target, pool_sources, pool_targets)
    return plan


def _original(spec: VariableSpec) -> str | None:
    return spec.original_name.removesuffix(":0") if spec.original_name else None


def _shared_originals(*inventories: Inventory) -> frozenset[str]:
    shared: set[str] = set()
    for inventory in inventories:
        counts = Counter(
            v.original_name.removesuffix(":0")
            for v in inventory.variables.values()
            if v.original_name
        )
        shared |= {name for name, count in counts.items() if count > 1}
    return frozenset(shared)


def _pair(plan: _Plan, source: VariableSpec, target: VariableSpec, reason: str) -> None:
    name = variable_path(source.name)
    if not (output_keys(source) & target_keys(target)) - plan.shared_originals:
        plan.renames[name] = variable_path(target.name)
    if source.shape != target.shape or source.dtype != target.dtype:
        plan.fixes[name] = (source, target)
    plan.reasons[name] = reason


def _match_pools(
    plan: _Plan,
    ckpt: Inventory,
    target: Inventory,
    sources: list[VariableSpec],
    targets: list[VariableSpec],
) -> None:
    for role in (Role.MODEL, Role.STEP):
        s_views = views(ckpt, (s for s in sources if s.role is role))
        t_views = views(target, (t for t in targets if t.role is role))
        s_list = sorted(s_views.values(), key=lambda v: natural_key(v.name))
        t_list = sorted(t_views.values(), key=lambda v: natural_key(v.name))
        paired_s: set[str] = set()
        paired_t: set[str] = set()
        for pair in assign_pairs(s_list, t_list):
            s, t = s_views[pair.source].spec, t_views[pair.target].spec
            reason = f"closest unpaired {role.value} variable (score {pair.score:.2f})"
            _pair(plan, s, t, _auto_named_reason(s, t) or reason)
            plan.pairs.append(pair)
            paired_s.add(pair.source)
            paired_t.add(pair.target)
        plan.drops += [v.name for v in s_list if v.name not in paired_s]
        plan.inits += [v.spec for v in t_list if v.name not in paired_t]


def _auto_named_reason(source: VariableSpec, target: VariableSpec) -> str | None:
    """Why a pair whose layers have different Keras auto-generated names is one (a
    tf-keras ``dense_11`` into a Keras 3 ``dense``): their order and shape."""
    a, b = auto_named(source), auto_named(target)
    if a is None or b is None or a == b or (a[0], a[2]) != (b[0], b[2]):
        return None
    layer = f"{a[0]}_{a[1]}" if a[1] else a[0]
    other = f"{b[0]}_{b[1]}" if b[1] else b[0]
    return (
        f"paired by layer order and shape: the layer names are Keras auto-generated and "
        f"differ ({layer} -> {other})"
    )


def _slots_of(ckpt: Inventory) -> dict[str, list[str]]:
    """Variable display name -> its optimizer slots' display names (plan.py's rule: the
    longest prefix of the slot's name that is another, non-optimizer variable)."""
    owners = {
        variable_path(v.name) for v in ckpt.variables.values() if v.role is not Role.OPTIMIZER
    }
    slots: dict[str, list[str]] = {}
    for v in ckpt.variables.values():
        if v.role is not Role.OPTIMIZER:
            continue
        parts = variable_path(v.name).split("/")
        for cut in range(len(parts) - 1, 0, -1):
            owner = "/".join(parts[:cut])
            if owner in owners:
                slots.setdefault(owner, []).append(variable_path(v.name))
                break
    return slots


def rename_rules(plan: _Plan, ckpt: Inventory, doubts: dict[str, str]) -> list[SuggestedRule]:
    """Renames in an order where no rename lands on a name still held by another source,
    with a whole scope renamed by one rule where it can be."""
    pending = dict(plan.renames)
    slot_names = {s for slots in _slots_of(ckpt).values() for s in slots}
    names = [variable_path(k) for k in ckpt.variables if k != OBJECT_GRAPH_KEY]
    plain = [n for n in names if n not in slot_names]
    rules: list[SuggestedRule] = []
    for numbered in (True, False):
        for (pattern, template, label), members in _scope_groups(pending, plain, numbered).items():
            doubt = "; ".join(doubts[m] for m in members if m in doubts) or None
            body = {
                "match": pattern,
                "rename": template,
                "note": f"{len(members)} variables move from {label}",
            }
            rules.append(make_rule(Section.RENAME, body, doubt))
            for m in members:
                del pending[m]
    while pending:
        held = set(pending)
        ready = [s for s, d in pending.items() if d not in held or d == s]
        if not ready:  # a cycle (a <-> b): park one under a temporary name first
            first = min(pending, key=natural_key)
            parked = first + "__ckptmigrate_tmp"
            rules.append(
                make_rule(
                    Section.RENAME, {"name": first, "rename": parked, "note": "frees the name"}
                )
            )
            pending[parked] = pending.pop(first)
            continue
        for source in sorted(ready, key=natural_key):
            body = {"name": source, "rename": pending.pop(source)}
            body["note"] = plan.reasons.get(source, "renamed")
            rules.append(make_rule(Section.RENAME, body, doubts.get(source)))
    return rules


_DIGITS = re.compile(r"\d+")


def _braced(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _numbered(old: str, new: str) -> tuple[str, str] | None:
    """``old`` as a regex with its numbers captured, ``new`` as a rename template taking
    each number it shares with ``old`` from there (``layer_3/attention`` ->
    ``layer_(\\d+)/attention``, ``block_3`` -> ``block_{1}``); None without numbers."""
    numbers = _DIGITS.findall(old)
    if not numbers:
        return None
    texts = _DIGITS.split(old)
    pattern = "".join(
        re.escape(t) + (r"(\d+)" if k < len(numbers) else "") for k, t in enumerate(texts)
    )
    group: dict[str, int] = {}
    for k, n in enumerate(numbers):
        group.setdefault(n, k + 1)
    parts, at = [], 0
    for found in _DIGITS.finditer(new):
        parts.append(_braced(new[at : found.start()]))
        n = found.group()
        parts.append(f"{{{group[n]}}}" if n in group else n)
        at = found.end()
    parts.append(_braced(new[at:]))
    return pattern, "".join(parts)


def _scope_counts(names: list[str], numbered: bool) -> Counter[str]:
    """Scope (numbers as ``#`` when ``numbered``) -> how many names lie under it."""
    counts: Counter[str] = Counter()
    for name in names:
        parts = name.split("/")
        counts[""] += 1
        for cut in range(1, len(parts)):
            scope = "/".join(parts[:cut])
            counts[_DIGITS.sub("#", scope) if numbered else scope] += 1
    return counts


def _scope_groups(
    renames: dict[str, str], names: list[str], numbered: bool
) -> dict[tuple[str, str, str], list[str]]:
    """(match pattern, rename template, what moves where) -> sources, where every
    variable under the old scope moves to the new one keeping the rest of its path, and
    nothing else there stays behind. ``numbered``: scopes that differ only in their
    numbers are one group (``bert/encoder/layer_(\\d+)/...`` -> ``transformer/layer_{1}/...``),
    one rule for every layer of a deep model instead of one per variable."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    scopes: dict[tuple[str, str, str], str] = {}
    for source, dest in renames.items():
        a, b = source.split("/"), dest.split("/")
        common = 0
        while common < min(len(a), len(b)) and a[-1 - common] == b[-1 - common]:
            common += 1
        if common == 0 or common == len(a) == len(b):
            continue
        old, new = "/".join(a[: len(a) - common]), "/".join(b[: len(b) - common])
        if numbered:
            found = _numbered(old, new)
            if found is None:
                continue
            pattern, template = found
            label = f"{_DIGITS.sub('N', old)}/ to {_DIGITS.sub('N', new)}/ (N: each number)"
            rest = f"{{{len(_DIGITS.findall(old)) + 1}}}"
            key = (pattern + "/(.*)", template + "/" + rest, label)
            scope = _DIGITS.sub("#", old)
        else:
            pattern = ("" if not old else re.escape(old) + "/") + "(.*)"
            template = ("" if not new else _braced(new) + "/") + "{1}"
            key = (pattern, template, f"{old or 'the top'}/ to {new or 'the top'}/")
            scope = old
        groups.setdefault(key, []).append(source)
        scopes[key] = scope
    counts = _scope_counts(names, numbered)
    held = set(renames)
    out = {}
    for key, members in groups.items():
        lands_on_source = any(renames[m] in held and renames[m] not in members for m in members)
        least = 3 if numbered else 2  # a pattern in the numbers: seen three times
        if len(members) >= least and counts[scopes[key]] == len(members) and not lands_on_source:
            out[key] = sorted(members, key=natural_key)
    return out


def fix_rules(
    plan: _Plan,
    ckpt: Inventory,
    target: Inventory,
    doubts: dict[str, str],
    starts: SlotStarts,
    *,
    preserve_function: bool = True,
) -> list[SuggestedRule]:
    """Casts, slices, pads, transposes and reshapes on the new names; the same fix for
    every layer of a deep model is one ``match`` rule (numbers captured) where that
    pattern selects exactly those variables. ``preserve_function``: a weight matrix's new
    input rows start at zero (``fixes.shape_ops``)."""
    slots = _slots_of(ckpt)
    wanted = set().union(*(target_keys(t) for t in target.variables.values()))
    units: list[tuple[str, list[SuggestedRule], bool]] = []  # name, rules, groupable
    for source in sorted(plan.fixes, key=lambda s: natural_key(plan.renames.get(s) or s)):
        src, tgt = plan.fixes[source]
        name = plan.renames.get(source, source)
        rules: list[SuggestedRule] = []
        if src.dtype != tgt.dtype:
            narrowing = dtypes.BY_NAME[src.dtype].itemsize or 0
            cast: Any = tgt.dtype
            if narrowing > (dtypes.BY_NAME[tgt.dtype].itemsize or 0):
                cast = {"dtype": tgt.dtype, "allow_precision_loss": True}
            rules.append(make_rule(Section.SHAPE, {"name": name, "cast": cast}))
        fan_in = _fan_in(src, tgt) if preserve_function else None
        ops, doubt = shape_ops(src.shape, tgt.shape, fill_for(name, tgt.shape, tgt.dtype), fan_in)
        # Slots the target keeps get their own rules, first: pads need a slot's fill (an
        # accumulator must not get random cells), and plan.py lets a rule on the variable
        # reach a slot only while their shapes agree, which its own order can break. The
        # operations reach the target shape, so a second application changes nothing.
        groupable = True
        for slot in sorted(slots.get(source, []), key=natural_key):
            slot_name = name + slot[len(source) :]
            if slot_name in wanted:
                slot_ops, _ = shape_ops(src.shape, tgt.shape, starts.pad_fill(slot_name))
                for op in slot_ops:
                    rules.append(make_rule(Section.SHAPE, {"name": slot_name, **op}))
                    groupable = False
        why = doubt or doubts.get(source)
        for op in ops:
            rules.append(make_rule(Section.SHAPE, {"name": name, **op}, why))
        units.append((name, rules, groupable and not doubts.get(source)))
    return _grouped_fixes(units, _names_after_renames(plan, ckpt))


def _fan_in(source: VariableSpec, target: VariableSpec) -> int | None:
    """The fan-in axis of a paired weight matrix, by whichever of its names says what it is:
    a Keras 3 .weights.h5 path (``layers/dense_1/vars/0``) does not, its original name
    (``dense_1/kernel``) or the checkpoint's does."""
    for name in (target.name, target.original_name, source.name, source.original_name):
        axis = fan_in_axis(variable_path(name or ""), target.shape, target.dtype)
        if axis is not None:
            return axis
    return None


def _names_after_renames(plan: _Plan, ckpt: Inventory) -> list[str]:
    slot_owner = {s: v for v, slots in _slots_of(ckpt).items() for s in slots}
    out = []
    for key in ckpt.variables:
        if key == OBJECT_GRAPH_KEY:
            continue
        name = variable_path(key)
        owner = slot_owner.get(name)
        if owner is not None and owner in plan.renames:
            out.append(plan.renames[owner] + name[len(owner) :])
        else:
            out.append(plan.renames.get(name, name))
    return out


def _grouped_fixes(
    units: list[tuple[str, list[SuggestedRule], bool]], alive: list[str]
) -> list[SuggestedRule]:
    """Each unit's rules, where units whose names differ only in their numbers and whose
    rules are the same become one set of ``match`` rules, if that pattern selects nothing
    else alive at that point."""
    counts = Counter(_DIGITS.sub("#", n) for n in alive)

    def key(unit: tuple[str, list[SuggestedRule], bool]) -> tuple[Any, ...] | None:
        name, rules, groupable = unit
        if not groupable or not _DIGITS.search(name):
            return None
        ops = tuple(
            (repr({k: v for k, v in r.body.items() if k != "name"}), r.uncertain) for r in rules
        )
        return (_DIGITS.sub("#", name), ops)

    members: dict[tuple[Any, ...], list[str]] = {}
    for unit in units:
        k = key(unit)
        if k is not None:
            members.setdefault(k, []).append(unit[0])
    out: list[SuggestedRule] = []
    done: set[tuple[Any, ...]] = set()
    for unit in units:
        k = key(unit)
        if k is None or len(members[k]) < 3 or counts[k[0]] != len(members[k]):
            out += unit[1]
            continue
        if k in done:
            continue
        done.add(k)
        pattern = "".join(
            re.escape(t) + (r"(\d+)" if i < len(_DIGITS.findall(unit[0])) else "")
            for i, t in enumerate(_DIGITS.split(unit[0]))
        )
        for rule in unit[1]:
            body = {"match": pattern, **{a: b for a, b in rule.body.items() if a != "name"}}
            body.setdefault("note", f"{len(members[k])} variables, one per number")
            out.append(make_rule(rule.section, body, rule.uncertain))
    return out


def drop_rules(plan: _Plan, ckpt: Inventory, target: Inventory) -> list[SuggestedRule]:
    present = {v.role for k, v in ckpt.variables.items() if k != OBJECT_GRAPH_KEY}
    needed = {v.role for k, v in target.variables.items() if k != OBJECT_GRAPH_KEY}
    roles = [r for r in (Role.OPTIMIZER, Role.STEP, Role.METADATA) if r in present - needed]
    rules = []
    if roles:
        labels = ", ".join(r.label + "s" for r in roles)
        body = {
            "role": [r.value for r in roles],
            "drop": True,
            "note": f"the target restores no {labels}",
        }
        rules.append(make_rule(Section.DROP, body))
    destinations = set(plan.renames.values())
    by_role = {variable_path(k): v.role for k, v in ckpt.variables.items()}
    for name in sorted(plan.drops, key=natural_key):
        if by_role.get(name) in roles:
            continue  # the role rule drops it
        # Dropped before the renames when a rename takes its name, after them otherwise.
        section = Section.FREE if name in destinations else Section.DROP
        note = "no target variable fits it"
        if section is Section.FREE:
            note += "; dropped first because a rename takes its name"
        rules.append(make_rule(section, {"name": name, "drop": True, "note": note}))
    return rules


def init_rule(spec: VariableSpec, note: str, starts: SlotStarts) -> SuggestedRule | None:
    dtype = dtypes.BY_NAME.get(spec.dtype)
    if dtype is None or dtype.itemsize is None:
        return None  # strings, variants: nothing a map can create
    name = variable_path(spec.name)
    fill: dict[str, Any] = {"fill": "zeros"}
    if spec.role is Role.MODEL:
        fill = fill_for(name, spec.shape, spec.dtype)
    uncertain = None
    if spec.role is Role.OPTIMIZER and spec.dtype.startswith(("float", "bfloat", "half")):
        start, why = starts.fill(spec.name)
        if start is None:
            uncertain = why
        else:
            fill = start
            note = f"{note}; it starts {why}"
    init = {"name": name, "shape": list(spec.shape), "dtype": spec.dtype, **fill}
    body: dict[str, Any] = {"init": init, "note": note}
    return make_rule(Section.INIT, body, uncertain)
