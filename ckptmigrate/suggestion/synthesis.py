"""``suggest`` itself: start from a bundled map where one pairs more, decide the pairs, write
the rules, simulate the map against the target and close what is left; ``write_map``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..compare import CheckOptions, Finding, Kind, Report, compare
from ..errors import OutputError
from ..fs import staged_file
from ..inventory import Inventory, Scheme, VariableSpec
from ..names import Role, variable_path
from ..output_format import OutputFormat
from ..progress import Progress
from .fixes import SlotStarts
from .model import Section, SuggestedRule, Suggestion, make_rule
from .rules import compare_names, decide, drop_rules, fix_rules, init_rule, rename_rules
from .scoring import natural_key
from .yaml_out import yaml_rules

if TYPE_CHECKING:
    pass


def _predict(
    checkpoint: str | Path,
    target: Inventory,
    rules: Sequence[SuggestedRule],
    *,
    hints: bool = True,
) -> Report:
    """The target compared with the checkpoint as the rules would convert it (``hints``
    False: for the pairing alone, see ``compare_names``)."""
    from ..checker import mapped_inventory
    from ..mapping.schema import parse_map

    text = yaml_rules(list(rules))
    the_map = parse_map(text, "<suggested map>", Path.cwd())
    # The target's metadata (save_counter) comes with the target: convert fills it in.
    restored = {k: v for k, v in target.variables.items() if v.role is not Role.METADATA}
    mapped = mapped_inventory(checkpoint, the_map)
    if not hints:
        return compare_names(mapped, replace(target, variables=restored))
    return compare(mapped, replace(target, variables=restored), CheckOptions(rekeyed=True))


def _simulated(checkpoint: str | Path, target: Inventory, rules: Sequence[SuggestedRule]) -> Report:
    """What is still unpaired after ``rules``, for the leftover rules to close.

    The rules name every variable they pair with its target's name, but the comparison
    takes whichever naming strategy pairs the most variables, slots counted alike: an
    Ftrl (two slots a variable) built inside ``variable_scope('tower')`` names its slots
    ``tower/tower/dnn/.../Ftrl``, and with the rules' ``tower/dnn/...`` the strategy that
    strips the target's first scope pairs 16 slots against 9 variables paired by their
    very names. Closing that report would drop and re-create every variable. Slots follow
    their variables, so where pairing names exactly pairs more variables that aren't
    slots, that pairing is the one the leftovers close (moving the slots after them)."""
    report = _predict(checkpoint, target, rules, hints=False)
    exact = _by_exact_name(report)
    return exact if _paired_variables(exact) > _paired_variables(report) else report


def _by_exact_name(report: Report) -> Report:
    ckpt, target = report.checkpoint.variables, report.target.variables
    findings = []
    for name, t in target.items():
        c = ckpt.get(name)
        kind = Kind.MISSING
        if c is not None:
            kind = Kind.MATCHED
            if c.shape != t.shape:
                kind = Kind.SHAPE_MISMATCH
            elif c.dtype != t.dtype:
                kind = Kind.DTYPE_MISMATCH
        findings.append(Finding(kind, name, t.role, None if c is None else c.name, t, c))
    for name, c in ckpt.items():
        if name not in target:
            findings.append(Finding(Kind.UNUSED, name, c.role, name, None, c))
    return replace(
        report, matching="by exact name", findings=tuple(findings), notes=(), alignment=None
    )


def _paired_variables(report: Report) -> int:
    return sum(
        1
        for f in report.findings
        if f.checkpoint is not None and f.target is not None and f.role is not Role.OPTIMIZER
    )


def _moved_slots(report: Report) -> dict[str, str]:
    """Unused optimizer slot -> the missing target slot that is it under a longer or
    shorter scope (TF1 names a slot after the optimizer's name scope too: an optimizer
    built inside ``variable_scope('tower')`` keeps ``tower/dnn/kernel``'s accumulator as
    ``tower/tower/dnn/kernel/Adagrad``): same shape and dtype, one name ending with the
    other at a scope boundary, and no other candidate on either side."""
    unused = [
        f.checkpoint
        for f in report.findings
        if f.kind is Kind.UNUSED and f.checkpoint is not None and f.role is Role.OPTIMIZER
    ]
    missing = [
        f.target
        for f in report.findings
        if f.kind is Kind.MISSING and f.target is not None and f.target.role is Role.OPTIMIZER
    ]

    def nested(a: str, b: str) -> bool:
        return a.endswith("/" + b) or b.endswith("/" + a)

    found: dict[str, list[str]] = {}
    for u in unused:
        for t in missing:
            a, b = variable_path(u.name), variable_path(t.name)
            if (u.shape, u.dtype) == (t.shape, t.dtype) and nested(a, b):
                found.setdefault(a, []).append(b)
    taken = Counter(b for bs in found.values() for b in bs)
    return {a: bs[0] for a, bs in found.items() if len(bs) == 1 and taken[bs[0]] == 1}


def _leftover_rules(report: Report, starts: SlotStarts) -> list[SuggestedRule]:
    moved = _moved_slots(report)
    rules = []
    for source, destination in sorted(moved.items()):
        note = "the same slot under the target optimizer's scope"
        rules.append(
            make_rule(Section.RENAME, {"name": source, "rename": destination, "note": note})
        )
    arrived = set(moved.values())
    for f in report.findings:
        if f.kind is Kind.UNUSED and f.checkpoint is not None:
            if variable_path(f.checkpoint.name) in moved:
                continue
            name = variable_path(f.checkpoint.name)
            body = {"name": name, "drop": True, "note": "the target does not restore it"}
            rules.append(make_rule(Section.DROP, body))
        elif (
            f.kind is Kind.MISSING
            and f.target is not None
            and f.target.role is not Role.METADATA
            and variable_path(f.target.name) not in arrived
        ):
            rule = init_rule(f.target, "the checkpoint has no value for it", starts)
            if rule is not None:
                rules.append(rule)
    return rules


def _ordered(rules: Iterable[SuggestedRule]) -> tuple[SuggestedRule, ...]:
    return tuple(sorted(rules, key=lambda r: r.section.value))  # stable within a section


def suggest(
    checkpoint: str | Path,
    target: str | Path | Any,
    *,
    root: str | None = "model",
    format: str = "checkpoint",
    preserve_function: bool = True,
    progress: Progress | None = None,
) -> Suggestion:
    """The map that would make ``checkpoint`` fit ``target``.

    Args:
        checkpoint: the checkpoint to migrate.
        target: anything :func:`ckptmigrate.check` takes.
        root, format: as for :func:`ckptmigrate.convert` with this target: new variables
            get the keys that conversion writes.
        preserve_function: grow a layer without changing what the model computes: a
            weight matrix's new input rows (fed by the new units of a widened layer
            before it) start at zero, the new units' own weights random, their biases
            zero. False: new rows random too (the map's pads then use glorot_uniform).
        progress: told each step as it starts (reading the target, pairing, checking the
            map: steps without totals).

    Returns:
        The suggestion: its rules (uncertain ones marked), notes, and ``to_yaml()``.

    Raises:
        CkptMigrateError: the checkpoint or target cannot be read.
    """
    from ..targets.checkpoint import load_checkpoint_inventory
    from ..targets.model import open_conversion_target

    progress = progress or Progress()
    progress.begin("suggest: reading the checkpoint and the target")
    ckpt = load_checkpoint_inventory(checkpoint)
    with open_conversion_target(
        target,
        root=root,
        format=OutputFormat.parse(format),
        keras_elsewhere=True,
        keras_weights=ckpt.scheme is Scheme.KERAS3,
    ) as target_model:
        starts = SlotStarts(target_model.inventory, target_model.initial_value)
        return _suggest(
            checkpoint, ckpt, target_model.inventory, starts, preserve_function, progress=progress
        )


def _suggest(
    checkpoint: str | Path,
    ckpt: Inventory,
    target_inventory: Inventory,
    starts: SlotStarts,
    preserve_function: bool = True,
    *,
    progress: Progress | None = None,
) -> Suggestion:
    progress = progress or Progress()
    progress.begin(
        f"suggest: pairing {len(ckpt.variables):,} checkpoint variables with "
        f"{len(target_inventory.variables):,} target variables"
    )
    start = _bundled_start(checkpoint, ckpt, target_inventory)
    base: list[SuggestedRule] = []
    notes: list[str] = []
    if start is not None:
        ckpt, base, note = start
        notes.append(note)
    plan = decide(ckpt, target_inventory)
    doubts = {p.source: p.uncertain for p in plan.pairs if p.uncertain}
    rules = [
        *base,
        *rename_rules(plan, ckpt, doubts),
        *fix_rules(
            plan, ckpt, target_inventory, doubts, starts, preserve_function=preserve_function
        ),
        *drop_rules(plan, ckpt, target_inventory),
    ]
    # Metadata (a tf.train.Checkpoint's save_counter) comes with the target's own value.
    inits = [s for s in plan.inits if s.role is not Role.METADATA]
    for spec in sorted(inits, key=lambda s: natural_key(s.name)):
        rule = init_rule(spec, "the checkpoint has nothing that fits it", starts)
        if rule is not None:
            rules.append(rule)
    rules = list(_ordered(rules))
    progress.begin("suggest: checking what the map achieves")
    first = _simulated(checkpoint, target_inventory, rules)
    leftovers = _leftover_rules(first, starts)
    if leftovers:
        rules = list(_ordered([*rules, *leftovers]))
    predicted = _predict(checkpoint, target_inventory, rules)
    rules = _flag_discarded_fits(rules, ckpt)
    target_name = target_inventory.source
    return Suggestion(
        str(checkpoint),
        target_name,
        tuple(rules),
        tuple(plan.pairs),
        predicted,
        (*notes, *predicted.notes),
    )


def _flag_discarded_fits(rules: list[SuggestedRule], ckpt: Inventory) -> list[SuggestedRule]:
    """A trained model variable dropped while a new one of its very shape and dtype starts
    fresh is the likeliest missed pairing: both rules are marked for the reviewer."""
    specs = {variable_path(k): v for k, v in ckpt.variables.items()}
    dropped = {
        r.body["name"]: specs[r.body["name"]]
        for r in rules
        if "drop" in r.body and "name" in r.body and r.body["name"] in specs
    }
    dropped = {n: v for n, v in dropped.items() if v.role is Role.MODEL}
    inits = [r for r in rules if "init" in r.body]
    fits = {id(r): [n for n, v in dropped.items() if _init_fits(r.body["init"], v)] for r in inits}
    suspects = {n for names in fits.values() for n in names}
    out = []
    for rule in rules:
        why = None
        if fits.get(id(rule)):
            shown = ", ".join(repr(n) for n in fits[id(rule)][:3])
            why = f"this starts fresh while {shown} (same shape and dtype) is dropped: rename it?"
        elif "drop" in rule.body and rule.body.get("name") in suspects:
            why = "a trained value dropped while a target variable of its shape starts fresh"
        out.append(replace(rule, uncertain=rule.uncertain or why) if why else rule)
    return out


def _init_fits(init: dict[str, Any], spec: VariableSpec) -> bool:
    return tuple(init["shape"]) == spec.shape and init["dtype"] == spec.dtype


def _bundled_start(
    checkpoint: str | Path, ckpt: Inventory, target: Inventory
) -> tuple[Inventory, list[SuggestedRule], str] | None:
    """A bundled map to start from: the one after which the most target variables pair,
    if any pairs more than the checkpoint as it is. Layout changes no rename can express
    (a TF1 RNN cell's fused kernel and gate order) are known to those maps."""
    import yaml

    from ..checker import mapped_inventory
    from ..errors import CkptMigrateError
    from ..mapping.schema import BUNDLED_DIR, bundled_maps, load_map

    best_count = compare_names(ckpt, target).count(Kind.MATCHED)
    best: tuple[str, Inventory] | None = None
    for name, _ in bundled_maps():
        try:
            bundled = load_map(name)
        except CkptMigrateError:
            continue
        if bundled.params:
            # Its rules need values only the user knows (bert-to-model-garden's attention
            # heads), and the suggestion copies rules, not parameters: its map would not
            # even parse. Such a map is the user's to choose, with --set.
            continue
        try:
            mapped = mapped_inventory(checkpoint, bundled)
        except CkptMigrateError:
            continue  # the map does not apply to this checkpoint
        count = compare_names(mapped, target).count(Kind.MATCHED)
        if count > best_count:
            best_count, best = count, (name, mapped)
    if best is None:
        return None
    name, mapped = best
    document = yaml.safe_load((BUNDLED_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    rules = [make_rule(Section.BASE, dict(body)) for body in document["rules"]]
    note = (
        f"starts from the bundled map {name} (its rules come first): with it "
        f"{best_count} target variables pair; see mappings/{name}.yaml for what it assumes"
    )
    return mapped, rules, note


def write_map(suggestion: Suggestion, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the suggested map atomically.

    Args:
        suggestion: what :func:`suggest` returned.
        path: the map file to write.
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        OutputError: the path is a directory, exists (without ``overwrite``), its directory
            is missing, or it cannot be written.
    """
    out = Path(path)
    if out.is_dir():
        raise OutputError("is a directory; give a file name for the map", path=out)
    if not out.parent.is_dir():
        raise OutputError("the directory for the map does not exist", path=out)
    with staged_file(out, overwrite=overwrite) as staged:
        staged.write_text(suggestion.to_yaml(), encoding="utf-8")
    return out
