"""``check``: will this checkpoint restore into that model? The pre-restore sanity check."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import open_checkpoint
from .compare import CheckOptions, Kind, Report, ValueDiff, compare
from .errors import CkptMigrateError
from .inventory import Inventory, Scheme
from .progress import Progress
from .targets import load_target
from .targets.checkpoint import inventory_of, load_checkpoint_inventory
from .targets.detect import TargetKind, detect_target

if TYPE_CHECKING:
    import numpy as np

CHECKPOINT_KINDS = ("checkpoint", "saved_model")


class IncompatibleCheckpointError(CkptMigrateError):
    """A restore would fail (or load too little); ``.report`` holds every finding."""

    exit_code = 1

    def __init__(self, report: Report) -> None:
        self.report = report
        problems = [
            f
            for f in report.findings
            if f.kind is not Kind.MATCHED and (f.kind is not Kind.UNUSED or report.options.strict)
        ]
        if report.options.values:  # --values: the question is "identical"
            problems += [
                f for f in report.findings if f.values is not None and not f.values.identical
            ]
        lines = [
            (f"values differ: {f.name}" if f.kind is Kind.MATCHED else f"{f.kind.label}: {f.name}")
            + (f" ({f.tensorflow_error})" if f.tensorflow_error else "")
            for f in problems[:20]
        ]
        more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
        below = (
            f"; the match ratio {report.match_ratio:.2f} is below [[min_match]] "
            f"{report.options.min_match}"
            if report.below_min_match
            else ""
        )
        super().__init__(
            f"not compatible with the target: {report.headline}{below}. " + "; ".join(lines) + more,
            path=report.checkpoint.source,
            hint="[[check_command]] prints the full report.",
        )


def check(
    checkpoint: str | Path,
    target: str | Path | Any,
    *,
    ignore: tuple[str, ...] | list[str] = (),
    strict: bool = False,
    min_match: float | None = None,
    values: bool = False,
    map: Any = None,
    rekeyed: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Compare ``checkpoint`` with what a restore into ``target`` needs.

    Args:
        checkpoint: the checkpoint (a path, prefix, directory or URL).
        target: a path (checkpoint, .meta, SavedModel, Keras file, spec file), a builder
            ``pkg.module:function``, or a live Keras model / tf.Module /
            tf.train.Checkpoint / tf.compat.v1.Graph.
        ignore: regular expressions; target variables whose names match are not required.
        strict: unused checkpoint variables are mismatches too.
        min_match: the fraction of target variables that must match (0 to 1).
        values: (checkpoint targets only) also compare each matched pair's values: equal,
            or their max absolute and RMS difference.
        map: a map file, bundled map name or loaded Map: check the checkpoint as that map
            would convert it (as ``convert(..., target=T)`` writes it, under the target's
            keys, so outputs pair with target variables by key or original name).
        rekeyed: pair that way without a map (the checkpoint will be converted into the
            target's keys, as ``restore`` does when the names differ).
        progress: told when the target is read, then with ``values`` the pairs to
            compare and each one compared.

    Returns:
        The report: every finding, the headline and the verdict (``report.ok``). A
        mismatch is never raised.

    Raises:
        CkptMigrateError: the checkpoint, target or map cannot be read, or the options
            contradict each other.
    """
    if min_match is not None and not 0.0 <= min_match <= 1.0:
        raise CkptMigrateError(f"[[min_match]] must be between 0 and 1, got {min_match}")
    options = CheckOptions(
        ignore=tuple(ignore),
        strict=strict,
        min_match=min_match,
        rekeyed=rekeyed or map is not None,
        values=values,
    )
    ckpt_inventory = (
        load_checkpoint_inventory(checkpoint) if map is None else mapped_inventory(checkpoint, map)
    )
    progress = progress or Progress()
    # A model target may take a while (TensorFlow starts, a builder runs, Keras loads).
    progress.begin("reading the target")
    # A Keras 3 weights file restores into a Keras 3 model through load_weights, by its
    # .weights.h5 paths, whatever the backend.
    keras_weights = map is None and ckpt_inventory.scheme is Scheme.KERAS3
    target_inventory = load_target(target, keras_weights=keras_weights)
    report = compare(ckpt_inventory, target_inventory, options)
    if values:
        if target_inventory.kind not in CHECKPOINT_KINDS:
            raise CkptMigrateError(
                f"[[values]] compares two checkpoints; the target is a {target_inventory.kind}",
                path=target_inventory.source,
                hint="pass a checkpoint as [[target]], or check without [[values]].",
            )
        if map is not None:
            raise CkptMigrateError(
                "[[values]] compares stored values; it cannot be combined with [[map]]",
                hint="convert first, then check the output with [[values]].",
            )
        report = _with_values(report, checkpoint, target_inventory.source, progress)
    return report


def mapped_inventory(checkpoint: str | Path, mapping: Any) -> Inventory:
    """The checkpoint as the map would convert it: names, shapes, dtypes of the outputs."""
    from .checkpoint import open_checkpoint
    from .mapping.plan import plan_conversion
    from .mapping.retarget import outputs_inventory
    from .mapping.rules import Map
    from .mapping.schema import load_map

    the_map = mapping if isinstance(mapping, Map) else load_map(mapping)
    with open_checkpoint(checkpoint) as ckpt:
        base = inventory_of(ckpt)
        the_plan = plan_conversion(ckpt, the_map, keep_object_graph=False)
    mapped = outputs_inventory(the_plan, base)
    notes = (
        *base.notes,
        f"checked as `convert --map {the_map.path} --target T` writes it (under the target's "
        "keys: outputs pair by key or original name)",
        *(f"map warning: {w}" for w in the_plan.warnings),
    )
    return replace(mapped, notes=notes)


def assert_compatible(
    checkpoint: str | Path,
    target: str | Path | Any,
    *,
    ignore: tuple[str, ...] | list[str] = (),
    strict: bool = False,
    min_match: float | None = None,
    values: bool = False,
    map: Any = None,
    rekeyed: bool = False,
) -> Report:
    """Raise unless the restore this answers for would succeed: a pre-restore sanity check.

    It answers for the call you would make next. For a live object (a Keras model,
    ``tf.Module``, ``tf.train.Checkpoint``, TF1 graph), that is
    ``ckptmigrate.restore(obj, checkpoint, map=map)`` with the same ``ignore`` and
    ``min_match``: the same rule decides both (:func:`restore_report`), so this raises
    exactly when ``restore`` would refuse. For a path or builder target it is
    :func:`check`'s verdict: TensorFlow's own restore into that model, as the verdict
    contract says.

    Args:
        checkpoint, target, ignore, strict, min_match, values, map, rekeyed: as for
            :func:`check`.

    Returns:
        The report (ok).

    Raises:
        IncompatibleCheckpointError: the restore would not succeed; ``error.report`` holds
            every finding.
        CkptMigrateError: the checkpoint, target or map cannot be read.
    """
    if map is None and not rekeyed and not values and detect_target(target).kind is TargetKind.LIVE:
        # A live object: the question restore(obj, CKPT) answers, by the same rule.
        report, _ = restore_report(checkpoint, target, ignore=ignore, min_match=min_match)
        if strict and report.ok:  # unused entries fail too
            report = replace(report, options=replace(report.options, strict=True))
    else:
        report = check(
            checkpoint,
            target,
            ignore=ignore,
            strict=strict,
            min_match=min_match,
            values=values,
            map=map,
            rekeyed=rekeyed,
        )
    if not report.ok:
        raise IncompatibleCheckpointError(report)
    return report


def refuses(report: Report, tolerate_missing: bool = False) -> bool:
    """Whether a restore refuses on this report: anything wrong, or with
    ``tolerate_missing`` (a non-strict restore) a wrong shape or dtype or too few matches;
    variables missing from the checkpoint then keep their values."""
    if report.ok:
        return False
    unfixable = report.count(Kind.SHAPE_MISMATCH) + report.count(Kind.DTYPE_MISMATCH)
    return not tolerate_missing or bool(unfixable) or report.below_min_match


def restore_report(
    checkpoint: str | Path,
    target: Any,
    *,
    ignore: tuple[str, ...] | list[str] = (),
    min_match: float | None = None,
    tolerate_missing: bool = False,
) -> tuple[Report, bool]:
    """The one rule :func:`assert_compatible` and ``restore`` share for a live object.

    The checkpoint fits when TensorFlow's own restore into the object would succeed (same
    naming scheme, by key or object path, through a root attribute when the checkpoint was
    saved as ``tf.train.Checkpoint(model=...)``): ``restore`` then restores it that way.
    Otherwise it fits when it converts into the object's keys (pairing by key or original
    name, as ``convert(..., target=obj)`` does): ``restore`` then converts first.

    Args:
        checkpoint: the checkpoint.
        target: the live object (or what a restore into it is checked against).
        ignore, min_match: as for :func:`check`.
        tolerate_missing: a non-strict restore: missing variables keep their values.

    Returns:
        (the report that decides, whether TensorFlow restores the checkpoint as it is).

    Raises:
        CkptMigrateError: the checkpoint or target cannot be read.
    """
    direct = check(checkpoint, target, ignore=ignore, min_match=min_match)
    as_is = direct.checkpoint.scheme == direct.target.scheme and (
        direct.alignment is None or direct.alignment.side == "checkpoint"
    )
    if as_is and not refuses(direct, tolerate_missing):
        return direct, True
    rekeyed = check(checkpoint, target, ignore=ignore, min_match=min_match, rekeyed=True)
    if not refuses(rekeyed, tolerate_missing):
        return rekeyed, False
    # Neither way: the report that gets further says why.
    if as_is and direct.count(Kind.MATCHED) >= rekeyed.count(Kind.MATCHED):
        return direct, True
    return rekeyed, False


def _with_values(report: Report, checkpoint: str | Path, target: str, progress: Progress) -> Report:
    pairs = {
        f.name: (f.checkpoint_name, f.target.name)
        for f in report.findings
        if f.kind is Kind.MATCHED and f.checkpoint_name and f.target
    }
    findings = []
    with open_checkpoint(checkpoint) as ckpt, open_checkpoint(target) as other:
        sizes = {name: other.reader.info(key).nbytes for name, (_, key) in pairs.items()}
        progress.begin("comparing values", len(pairs), sum(sizes.values()), "pairs")
        for finding in report.findings:
            if finding.name not in pairs or finding.kind is not Kind.MATCHED:
                findings.append(finding)
                continue
            ckpt_key, target_key = pairs[finding.name]
            a = ckpt.reader.read(ckpt_key)  # one pair in memory at a time
            b = other.reader.read(target_key)
            findings.append(finding._replace(values=value_diff(a, b)))
            progress.advance(sizes[finding.name])
    return replace(report, findings=tuple(findings))


def value_diff(a: np.ndarray, b: np.ndarray) -> ValueDiff:
    import numpy as np

    if object in (a.dtype, b.dtype):
        same = [bytes(x) for x in a.reshape(-1)] == [bytes(x) for x in b.reshape(-1)]
        return ValueDiff(same)
    if a.tobytes() == b.tobytes():
        return ValueDiff(True, 0.0, 0.0)
    if a.dtype.kind == "b":
        a, b = a.astype(np.int8), b.astype(np.int8)
    diff = np.abs(
        a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
        - b.astype(np.complex128 if b.dtype.kind == "c" else np.float64)
    )
    if diff.size == 0:
        return ValueDiff(True, 0.0, 0.0)
    max_abs = float(np.max(diff))
    rms = float(np.sqrt(np.mean(np.square(diff))))
    return ValueDiff(False, max_abs, rms)
