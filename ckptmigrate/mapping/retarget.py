"""Re-key a plan onto a target model: every output is one of the target's own variables.

The map's outputs are paired with the target's variables the way ``check`` pairs names,
except that a pairing by original variable name counts even where TensorFlow's restore
would not make it (the output is written under the target's keys, so it will). Every
target variable must then be supplied with its exact shape and dtype: by the map, by the
target's own initial value (its metadata always; model variables with
``--fill-missing-from-target``), or the conversion is refused with the full list.

A name a map rule wrote (a rename, a split's parts) is what pairs that output: the rule
wins over the original name its source was saved under. Where the two disagree so that the
rule cannot be followed (its name is no variable of the target, or another output claims
the same target variable by its original name), the conversion is refused naming both.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ..compare import CheckOptions, Finding, Kind, Report, compare
from ..errors import CkptMigrateError
from ..inventory import Inventory, Rename, VariableSpec
from ..names import Role, variable_path
from ..targets.model import TargetModel
from .plan import Plan, PlannedVariable


class TargetMismatchError(CkptMigrateError):
    """The map's outputs don't supply the target; ``.report`` has every finding."""

    def __init__(
        self, report: Report, problems: list[Finding], target: str, has_initial_values: bool
    ) -> None:
        self.report = report
        shown = [_problem(f) for f in problems[:15]]
        more = f"; and {len(problems) - 15} more" if len(problems) > 15 else ""
        super().__init__(
            f"the converted checkpoint would not fit the target: {report.headline}. "
            + "; ".join(shown)
            + more,
            path=target,
            hint="add rules to the map (init for new variables, pad/slice for shapes)"
            + (
                ", pass [[fill_missing_from_target]] to keep the target's initial values"
                if has_initial_values
                else ""
            )
            + ", or let [[suggest_command]] write the map.",
        )


_CONVERT_ADVICE = "; `convert --target T`"


def _problem(finding: Finding) -> str:
    if finding.kind is Kind.UNUSED:  # --strict
        return f"the map's output {variable_path(finding.name)} has no place in the target"
    if finding.kind is Kind.MISSING:
        text = f"nothing supplies {finding.name}"
        hint = finding.hint
        if hint and _CONVERT_ADVICE in hint:
            # check's advice is to convert into the target, which is what is running: the
            # pairing by original name was refused, so only a rule can say where it goes.
            hint = hint.split(_CONVERT_ADVICE)[0] + "; a rename rule in the map can place it"
        return text + (f" ({hint})" if hint else "")
    assert finding.target is not None
    assert finding.checkpoint is not None
    return (
        f"{finding.checkpoint_name} is {list(finding.checkpoint.shape)} "
        f"{finding.checkpoint.dtype} but {finding.name} needs {list(finding.target.shape)} "
        f"{finding.target.dtype}"
    )


def outputs_inventory(the_plan: Plan, base: Inventory) -> Inventory:
    """The plan's outputs as an inventory: names, shapes, dtypes, and the original names of
    the source variables they come from (what pairs them across naming schemes). An output
    a rule renamed carries no original name: the rule's name is what pairs it."""
    variables: dict[str, VariableSpec] = {}
    for v in the_plan.outputs:
        original = None
        if v.source is not None and v.origin is None:
            source = base.variables.get(v.source)
            original = source.original_name if source is not None else None
        if v.renamed_by:
            # It pairs by the rule's name only, never by its source's original name.
            rename = Rename(v.renamed_by[-1], variable_path(v.source or v.name), original)
            variables[v.name] = VariableSpec(v.name, v.shape, v.dtype, v.role, renamed=rename)
        else:
            variables[v.name] = VariableSpec(v.name, v.shape, v.dtype, v.role, original)
    return Inventory(base.kind, base.source, base.scheme, variables, base.notes)


class PairingConflictError(CkptMigrateError):
    """A map rule's name and the pairing by original name disagree in a way the rule
    cannot win: the output would silently land elsewhere, or two outputs want one target
    variable."""


def _paired(report: Report) -> dict[str, str]:
    """Output name -> target name, for every output the report pairs with a target."""
    return {
        f.checkpoint_name: f.name
        for f in report.findings
        if f.kind is not Kind.UNUSED and f.checkpoint_name is not None
    }


def _target_label(target: Inventory, key: str) -> str:
    """A target variable as a message names it: its key, and its variable's own name where
    that differs (a Keras weights file's ``layers/dense_1/vars/0`` is ``d1/kernel``)."""
    spec = target.variables[key]
    path = variable_path(key)
    original = (spec.original_name or "").removesuffix(":0")
    return f"{path} ({original})" if original and original != path else path


def refuse_pairing_conflicts(mapped: Inventory, target: Inventory) -> None:
    """Raise :class:`PairingConflictError` where a map rule's name and the original-name
    pairing disagree so that the rule cannot win: a renamed output whose name is no
    variable of the target (by its original name it would fill one), or a target variable
    a rule's name claims while another output pairs with it by its original name."""
    renamed: dict[str, VariableSpec] = {
        name: spec for name, spec in mapped.variables.items() if spec.renamed is not None
    }
    if not any(spec.renamed and spec.renamed.source_original for spec in renamed.values()):
        return  # no original name to disagree with (TF1 names, inits, concats)
    options = CheckOptions(rekeyed=True)
    # What the map's rules claim, and what pairing by original names alone would do.
    claimed = _paired(compare(replace(mapped, variables=renamed), target, options))
    claimant = {t: o for o, t in claimed.items()}
    inferred_variables = {
        name: spec._replace(original_name=spec.renamed.source_original, renamed=None)
        if spec.renamed is not None
        else spec
        for name, spec in mapped.variables.items()
    }
    inferred = _paired(compare(replace(mapped, variables=inferred_variables), target, options))
    conflicts = []
    for output, target_key in sorted(inferred.items()):
        target_name = _target_label(target, target_key)
        spec = mapped.variables[output]
        rename = spec.renamed
        if rename is not None and rename.source_original and output not in claimed:
            conflicts.append(
                f"{rename.rule} renames {rename.source} to {variable_path(output)}, which is "
                f"no variable of the target, while its original name {rename.source_original} "
                f"pairs it with the target's {target_name}"
            )
            continue
        owner = claimant.get(target_key)
        if owner is not None and owner != output and output not in renamed:
            rule = mapped.variables[owner].renamed
            assert rule is not None
            by = (
                f"whose original name {spec.original_name} pairs it there"
                if spec.original_name
                else "which pairs with it by name"
            )
            conflicts.append(
                f"the target's {target_name} is claimed by {rule.rule}, which renames "
                f"{rule.source} to {variable_path(owner)}, and by {variable_path(output)}, {by}"
            )
    if conflicts:
        shown = "; ".join(conflicts[:10]) + (
            f"; and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
        )
        raise PairingConflictError(
            f"the map's renames contradict the pairing by original variable names: {shown}",
            path=target.source,
            hint="a rule's name is followed over an original name: rename each of these "
            "outputs to the target variable it is meant for (its name or original name, "
            "as [[check_map_command]] lists them), or drop the ones "
            "the target should not receive.",
        )


_AUTO_LAYER = re.compile(r"([a-z][a-z0-9]*(?:_[a-z][a-z0-9]*)*)(?:_(\d+))?")


def auto_named(spec: VariableSpec) -> tuple[str, int, str] | None:
    """(layer class, its number, weight) of a variable under a Keras auto-generated layer
    name (``dense_11/kernel:0``, ``sequential/dense/kernel``: the class in snake case,
    ``_N`` from the second layer of a class in a process on); None otherwise."""
    parts = (spec.original_name or "").removesuffix(":0").split("/")
    if len(parts) < 2:
        return None
    found = _AUTO_LAYER.fullmatch(parts[-2])
    if found is None:
        return None
    return found.group(1), int(found.group(2) or 0), parts[-1]


def pair_auto_named(report: Report) -> tuple[dict[str, str], str | None]:
    """Unpaired outputs paired with unpaired target model variables by layer order and
    shape, when both sides' layer names are Keras auto-generated (a tf-keras
    ``save_weights`` of ``dense_11``, ``dense_12`` into a Keras 3 model of ``dense``,
    ``dense_1``): output name -> target key, and a note saying so. Only all or nothing:
    the two sides, each in layer order (the numbers Keras gave, in creation order), must
    agree variable for variable in layer class, weight, shape and dtype."""
    missing = [
        f.target
        for f in report.findings
        if f.kind is Kind.MISSING and f.target is not None and f.target.role is Role.MODEL
    ]
    unused = [
        f.checkpoint
        for f in report.findings
        if f.kind is Kind.UNUSED
        and f.checkpoint is not None
        and f.checkpoint.role is Role.MODEL
        and f.checkpoint.renamed is None
    ]
    if not missing or len(missing) != len(unused):
        return {}, None
    sides: list[list[tuple[tuple[str, int, str], VariableSpec]]] = []
    for specs in (unused, missing):
        named = []
        for v in specs:
            found = auto_named(v)
            if found is None:
                return {}, None
            named.append((found, v))
        sides.append(sorted(named, key=lambda e: (e[0][1], e[0][0], e[0][2])))
    pairs: dict[str, str] = {}
    for (a, out), (b, tgt) in zip(*sides, strict=True):
        if (a[0], a[2], out.shape, out.dtype) != (b[0], b[2], tgt.shape, tgt.dtype):
            return {}, None
        pairs[out.name] = tgt.name
    layers = sorted({(a[1], a[0]) for a, _ in sides[0]})
    theirs = sorted({(b[1], b[0]) for b, _ in sides[1]})

    def names(layer_list: list[tuple[int, str]]) -> str:
        return ", ".join(f"{c}_{n}" if n else c for n, c in layer_list)

    note = (
        f"paired {len(pairs)} variables by layer order and shape: the checkpoint's layers "
        f"({names(layers)}) and the target's ({names(theirs)}) have Keras auto-generated "
        "names that differ, and agree layer for layer in class, weights and shapes"
    )
    return pairs, note


def retarget(
    the_plan: Plan,
    mapped: Inventory,
    target: TargetModel,
    *,
    fill_missing_from_target: bool = False,
    strict: bool = False,
) -> tuple[Plan, Report]:
    """``the_plan`` with its outputs renamed to the target's keys, every target variable
    supplied; raises :class:`TargetMismatchError` listing what doesn't fit, or
    :class:`PairingConflictError` where a map rule's name and an original name disagree."""
    refuse_pairing_conflicts(mapped, target.inventory)
    report = compare(mapped, target.inventory, CheckOptions(rekeyed=True))
    by_order, order_note = pair_auto_named(report)
    by_target = {t: o for o, t in by_order.items()}
    outputs_by_name = {v.name: v for v in the_plan.outputs}
    outputs: list[PlannedVariable] = []
    problems: list[Finding] = []
    left_out: list[str] = []
    for finding in report.findings:
        if finding.kind is Kind.UNUSED:
            if finding.name not in by_order:
                left_out.append(finding.name)
            continue
        assert finding.target is not None
        spec = finding.target
        if finding.kind is Kind.MATCHED and finding.checkpoint_name is not None:
            outputs.append(replace(outputs_by_name[finding.checkpoint_name], name=spec.name))
            continue
        if spec.name in by_target:
            outputs.append(replace(outputs_by_name[by_target[spec.name]], name=spec.name))
            continue
        fill = finding.kind is Kind.MISSING and (
            fill_missing_from_target or spec.role is Role.METADATA
        )
        origin = target.template_origin
        if fill and origin is not None and target.has_initial_value(spec.name):
            outputs.append(_from_target(spec, origin))
            continue
        problems.append(finding)
    if strict:
        problems += [f for f in report.findings if f.kind is Kind.UNUSED]
    if problems:
        raise TargetMismatchError(
            report, problems, target.inventory.source, target.template_origin is not None
        )
    warnings = list(the_plan.warnings)
    if order_note is not None:
        warnings.append(order_note)
    if left_out:
        shown = ", ".join(variable_path(n) for n in left_out[:10]) + (
            " ..." if len(left_out) > 10 else ""
        )
        warnings.append(
            f"{len(left_out)} output(s) of the map have no place in the target and are "
            f"left out: {shown} (drop them in the map, or --strict to refuse)"
        )
    retargeted = replace(
        the_plan,
        outputs=tuple(sorted(outputs, key=lambda v: v.name)),
        warnings=tuple(warnings),
        passthrough=(),
        object_graph=target.object_graph,
        target=target.inventory.source,
        left_out=tuple(left_out),
    )
    return retargeted, report


def _from_target(spec: VariableSpec, origin: str) -> PlannedVariable:
    return PlannedVariable(
        spec.name,
        spec.name,
        spec.role,
        spec.shape,
        spec.dtype,
        spec.shape,
        spec.dtype,
        origin=origin,
        from_target=True,
    )
