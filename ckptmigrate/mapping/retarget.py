"""Re-key a plan onto a target model: every output is one of the target's own variables.

The map's outputs are paired with the target's variables the way ``check`` pairs names,
except that a pairing by original variable name counts even where TensorFlow's restore
would not make it (the output is written under the target's keys, so it will). Every
target variable must then be supplied with its exact shape and dtype: by the map, by the
target's own initial value (its metadata always; model variables with
``--fill-missing-from-target``), or the conversion is refused with the full list.
"""

from __future__ import annotations

from dataclasses import replace

from ..compare import CheckOptions, Finding, Kind, Report, compare
from ..errors import CkptMigrateError
from ..inventory import Inventory, VariableSpec
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
                ", pass --fill-missing-from-target to keep the target's initial values"
                if has_initial_values
                else ""
            )
            + ", or let `ckptmigrate suggest CKPT --target T` write the map.",
        )


def _problem(finding: Finding) -> str:
    if finding.kind is Kind.UNUSED:  # --strict
        return f"the map's output {variable_path(finding.name)} has no place in the target"
    if finding.kind is Kind.MISSING:
        text = f"nothing supplies {finding.name}"
        return text + (f" ({finding.hint})" if finding.hint else "")
    assert finding.target is not None
    assert finding.checkpoint is not None
    return (
        f"{finding.checkpoint_name} is {list(finding.checkpoint.shape)} "
        f"{finding.checkpoint.dtype} but {finding.name} needs {list(finding.target.shape)} "
        f"{finding.target.dtype}"
    )


def outputs_inventory(the_plan: Plan, base: Inventory) -> Inventory:
    """The plan's outputs as an inventory: names, shapes, dtypes, and the original names of
    the source variables they come from (what pairs them across naming schemes)."""
    variables = {}
    for v in the_plan.outputs:
        original = None
        if v.source is not None and v.origin is None:
            source = base.variables.get(v.source)
            original = source.original_name if source is not None else None
        variables[v.name] = VariableSpec(v.name, v.shape, v.dtype, v.role, original)
    return Inventory(base.kind, base.source, base.scheme, variables, base.notes)


def retarget(
    the_plan: Plan,
    mapped: Inventory,
    target: TargetModel,
    *,
    fill_missing_from_target: bool = False,
    strict: bool = False,
) -> tuple[Plan, Report]:
    """``the_plan`` with its outputs renamed to the target's keys, every target variable
    supplied; raises :class:`TargetMismatchError` listing what doesn't fit."""
    report = compare(mapped, target.inventory, CheckOptions(rekeyed=True))
    outputs_by_name = {v.name: v for v in the_plan.outputs}
    outputs: list[PlannedVariable] = []
    problems: list[Finding] = []
    left_out: list[str] = []
    for finding in report.findings:
        if finding.kind is Kind.UNUSED:
            left_out.append(finding.name)
            continue
        assert finding.target is not None
        spec = finding.target
        if finding.kind is Kind.MATCHED and finding.checkpoint_name is not None:
            outputs.append(replace(outputs_by_name[finding.checkpoint_name], name=spec.name))
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
