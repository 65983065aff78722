"""``restore``: check a checkpoint against a live model, migrate it if needed, restore it.

The pre-restore sanity check as one call in a training script. The order is the point: the
checkpoint is checked (and, when a map is given or the names need rekeying, converted into
a temporary location) *before* the model is touched, so an incompatible checkpoint raises
:class:`IncompatibleCheckpointError` with every finding and leaves every variable as it was.

How each kind of object restores, once the checkpoint fits:

- a Keras 3 model: a TensorFlow checkpoint that fits it as it is is read by
  ``tf.train.Checkpoint`` (Keras 3's ``load_weights`` reads no TensorFlow checkpoint);
  otherwise it is converted into a temporary ``.weights.h5`` (the same migration as
  ``convert --target M --format keras``) and loaded with ``model.load_weights``, as a
  ``.weights.h5``/``.keras`` source is;
- a tf-keras (Keras 2) model: ``model.load_weights(prefix)``;
- a ``tf.train.Checkpoint`` or another trackable (``tf.Module``):
  ``tf.train.Checkpoint(obj).read(prefix)`` (the object itself for a Checkpoint), with
  ``assert_existing_objects_matched()`` when strict;
- a TF1 ``tf.compat.v1.Session`` (or a ``tf.Graph`` with ``session=``): a
  ``tf.compat.v1.train.Saver`` over the graph's global variables, restored into the session.

Which way is decided by the rule :func:`~ckptmigrate.checker.assert_compatible` applies too
(:func:`~ckptmigrate.checker.restore_report`): TensorFlow's own restore when it finds every
value (a ``tf.train.Checkpoint(model=...)`` checkpoint through that root attribute);
otherwise a checkpoint whose names the object's restore would not find (a TF1 checkpoint
into a Keras 3 model, a tf-keras checkpoint into Keras 3) is converted into the object's
keys first, as ``convert --target`` does, and restored from there.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from ._tf import import_tensorflow
from .checker import IncompatibleCheckpointError, check, refuses, restore_report
from .compare import CheckOptions, Kind, Report, compare
from .errors import CkptMigrateError, first_line

KERAS_SUFFIXES = (".weights.h5", ".keras")


class RestoreError(CkptMigrateError):
    """TensorFlow or Keras refused the restore after the check passed."""


class _Flavour(Enum):
    KERAS3 = "a Keras 3 model"
    TF_KERAS = "a tf-keras model"
    TRACKABLE = "a tf.train.Checkpoint or tf.Module"
    TF1 = "a TF1 session"


@dataclass(frozen=True)
class _Into:
    """The object restored into, what ``check`` compares it as, and how it restores."""

    flavour: _Flavour
    obj: Any  # the model, the trackable, or the TF1 session
    checked: Any  # what check()/convert() take as the target (the graph for TF1)


def restore(
    model: Any,
    checkpoint: str | Path,
    *,
    map: Any = None,
    strict: bool = True,
    session: Any = None,
    ignore: tuple[str, ...] | list[str] = (),
    min_match: float | None = None,
    workdir: str | Path | None = None,
) -> Report:
    """Check ``checkpoint`` against ``model``, migrate it if needed, restore it.

    The model comes first, as in TensorFlow's ``saver.restore(session, path)`` and
    ``model.load_weights(path)``; :func:`check` and :func:`assert_compatible` take the
    checkpoint first, as the command line does (``ckptmigrate check CKPT --target T``).

    Args:
        model: a Keras 3 model, a tf-keras model, a ``tf.train.Checkpoint`` (or
            ``tf.Module``), a ``tf.compat.v1.Session``, or a ``tf.Graph`` with ``session=``.
        checkpoint: the checkpoint to restore (a path, prefix, directory or URL).
        map: a map file, bundled map name or loaded Map: the checkpoint is converted with it
            into a temporary directory under ``workdir``, removed afterwards.
        strict: (default) anything the check finds wrong raises before the model is
            touched, and TF2 restores assert every existing object was matched; False
            tolerates variables missing from the checkpoint (they keep their current
            values); a wrong shape or dtype, or a match ratio below ``min_match``, still
            raises.
        session: the session of a ``tf.Graph`` target.
        ignore: regular expressions of names to leave out of the check.
        min_match: the fraction of the object's variables that must match.
        workdir: where to convert (default: the system's temporary directory; on the
            checkpoint's filesystem unchanged shards are hard-linked, not copied).

    Returns:
        The report: of ``checkpoint`` against the object, or with a map, of the converted
        checkpoint against it.

    Raises:
        IncompatibleCheckpointError: the check failed; no variable was touched.
        RestoreError: TensorFlow refused the restore after a passing check.
        CkptMigrateError: the checkpoint, object or map is unusable.
    """
    into = _into(model, session)
    options = CheckOptions(ignore=tuple(ignore), min_match=min_match)
    if _is_keras_file(checkpoint):
        return _restore_keras_file(into, Path(checkpoint), map, strict, options)
    report: Report | None = None
    if map is None:
        # The rule assert_compatible applies too: TensorFlow's own restore when it finds
        # every value, else converted into the object's keys below.
        report, as_is = restore_report(
            checkpoint,
            into.checked,
            ignore=options.ignore,
            min_match=min_match,
            tolerate_missing=not strict,
        )
        _refuse(report, strict)
        if as_is:
            scope = report.alignment.scope if report.alignment is not None else None
            _restore_from(into, _prefix_of(checkpoint), strict, skip=_missing(report), scope=scope)
            return report
    with _workspace(workdir) as tmp:
        migrated, skip, converted = _migrate(
            into, checkpoint, map, tmp, strict=strict, options=options
        )
        _refuse(converted, strict)
        _restore_from(into, migrated, strict, skip=skip)
    # Without a map the conversion is ours, not the user's: report their checkpoint.
    return converted if report is None else report


# -- what we restore into ---------------------------------------------------------------


def _into(obj: Any, session: Any) -> _Into:
    if isinstance(obj, str | Path):
        raise CkptMigrateError(
            f"restore takes the model first, then the checkpoint; it was given the path "
            f"{str(obj)!r} where the model goes",
            hint="restore(model, checkpoint), as saver.restore(session, path) and "
            "model.load_weights(path) take them (check(checkpoint, target) is the other way "
            "round, as the command line).",
        )
    if _is_keras3(obj):  # on any backend: JAX, PyTorch and NumPy need no TensorFlow
        return _Into(_Flavour.KERAS3, obj, obj)
    tf = import_tensorflow()
    v1 = tf.compat.v1
    if isinstance(obj, v1.Session):
        return _Into(_Flavour.TF1, obj, obj.graph)
    if isinstance(obj, tf.Graph):
        if session is None or session.graph is not obj:
            raise CkptMigrateError(
                "a TF1 graph's values live in a session: pass the session it runs in",
                hint="restore(session, ckpt), or restore(graph, ckpt, session=session).",
            )
        return _Into(_Flavour.TF1, session, obj)
    if _is_tf_keras(obj):
        return _Into(_Flavour.TF_KERAS, obj, obj)
    if isinstance(obj, tf.train.Checkpoint | tf.Module):
        return _Into(_Flavour.TRACKABLE, obj, obj)
    raise CkptMigrateError(
        f"cannot restore into a {type(obj).__module__}.{type(obj).__qualname__}",
        hint="pass a Keras model, a tf.train.Checkpoint, a tf.Module or a tf.compat.v1.Session.",
    )


def _is_keras3(obj: Any) -> bool:
    from .targets.live import is_keras3_model

    return is_keras3_model(obj)


def _is_tf_keras(obj: Any) -> bool:
    # tf-keras (and standalone Keras 2) models: their classes live in these packages.
    packages = ("tf_keras.", "keras.", "tensorflow.python.keras.")
    return hasattr(obj, "load_weights") and any(
        cls.__module__.startswith(packages) for cls in type(obj).__mro__
    )


# -- deciding -------------------------------------------------------------------------


def _refuse(report: Report, strict: bool) -> None:
    """Raise before touching the model. Non-strict restores tolerate missing variables only:
    a wrong shape or dtype cannot be restored at all."""
    if refuses(report, tolerate_missing=not strict):
        raise IncompatibleCheckpointError(report)


def _missing(report: Report) -> frozenset[str]:
    return frozenset(f.name for f in report.findings if f.kind is Kind.MISSING)


def _is_keras_file(checkpoint: str | Path) -> bool:
    path = Path(checkpoint)
    return path.is_file() and path.name.lower().endswith(KERAS_SUFFIXES)


def _prefix_of(checkpoint: str | Path) -> str:
    from .checkpoint import open_checkpoint

    with open_checkpoint(checkpoint) as ckpt:  # directory, state file, .index: the prefix
        return str(ckpt.prefix)


# -- migrating ------------------------------------------------------------------------


@contextlib.contextmanager
def _workspace(workdir: str | Path | None) -> Iterator[Path]:
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ckptmigrate-restore-", dir=workdir) as tmp:
        yield Path(tmp)


def _migrate(
    into: _Into,
    checkpoint: str | Path,
    mapping: Any,
    tmp: Path,
    *,
    strict: bool,
    options: CheckOptions,
) -> tuple[Path, frozenset[str], Report]:
    """Convert into the object's own keys under ``tmp``: (what to restore, names to leave
    alone, the report of the converted checkpoint against the object)."""
    from .conversion import convert
    from .mapping.retarget import TargetMismatchError

    keras = into.flavour is _Flavour.KERAS3
    try:
        result = convert(
            checkpoint,
            mapping,
            tmp / ("restore.weights.h5" if keras else "checkpoint"),
            target=into.checked,
            # The object restores as the root itself: tf.train.Checkpoint(obj), load_weights.
            root=None,
            # Missing variables (non-strict) are written with the object's current values
            # (TF2: the template saved from it) and, for TF1, skipped by the Saver.
            fill_missing_from_target=not strict,
            format="keras" if keras else "checkpoint",
        )
    except TargetMismatchError as e:
        raise IncompatibleCheckpointError(e.report) from e
    filled = frozenset(v.name for v in result.plan.outputs if v.from_target)
    migrated = Path(str(result.prefix))  # written under tmp: always a local path
    if keras:
        report = _keras_report(migrated, into.obj, options)
    else:
        report = check(migrated, into.checked, ignore=options.ignore)
        report = replace(report, options=options)
    note = "converted into the object's own keys in a temporary location before restoring"
    return migrated, filled, replace(report, notes=(*report.notes, note))


def _keras_report(weights: Path, model: Any, options: CheckOptions) -> Report:
    """A ``.weights.h5``/``.keras`` file against a Keras 3 model, compared as Keras loads it."""
    from .targets.checkpoint import load_checkpoint_inventory
    from .targets.keras_model import keras_weights_inventory

    return compare(
        load_checkpoint_inventory(weights), keras_weights_inventory(model, "model"), options
    )


def _restore_keras_file(
    into: _Into, path: Path, mapping: Any, strict: bool, options: CheckOptions
) -> Report:
    if into.flavour is not _Flavour.KERAS3 or mapping is not None:
        raise CkptMigrateError(
            "a Keras weights file restores, as it is, into a Keras 3 model only",
            path=path,
            hint="maps apply to TensorFlow checkpoints; pass a Keras 3 model without map=.",
        )
    report = _keras_report(path, into.obj, options)
    if not report.ok:  # Keras loads layer by layer: a partial load is no load
        raise IncompatibleCheckpointError(report)
    _restore_from(into, path, strict, skip=frozenset())
    return report


# -- restoring ------------------------------------------------------------------------


def _restore_from(
    into: _Into,
    prefix: str | Path,
    strict: bool,
    *,
    skip: frozenset[str],
    scope: str | None = None,
) -> None:
    """Restore the way the object restores; TensorFlow's own errors become RestoreError.

    A Keras 3 model loads a ``.weights.h5`` with ``load_weights``; handed a TensorFlow
    checkpoint as it is (``scope``: through the root attribute it was saved under), it is
    read by ``tf.train.Checkpoint``, the restore the check answered for."""
    as_checkpoint = scope is not None or not str(prefix).lower().endswith(KERAS_SUFFIXES)
    if into.flavour is _Flavour.KERAS3 and not as_checkpoint:  # any backend, no TensorFlow
        try:
            into.obj.load_weights(str(prefix))
        except Exception as e:  # Keras raises ValueError and others; the message matters
            raise RestoreError(
                f"{into.flavour.value} did not restore it: {first_line(e)}",
                path=prefix,
                hint="this is a bug if the check passed: please report it with the traceback.",
            ) from e
        return
    tf = import_tensorflow()
    try:
        if into.flavour is _Flavour.TF1:
            _restore_tf1(tf, into.obj, prefix, skip)
        else:
            if scope is not None:
                status = tf.train.Checkpoint(**{scope: into.obj}).read(str(prefix))
            elif into.flavour is _Flavour.TF_KERAS:
                status = into.obj.load_weights(str(prefix))
            else:
                status = _checkpoint_root(tf, into.obj).read(str(prefix))
            if strict:
                status.assert_existing_objects_matched()
            status.expect_partial()  # unused values (optimizer slots) are expected
    except CkptMigrateError:
        raise
    except Exception as e:  # TF raises many types; the message is what matters
        raise RestoreError(
            f"{into.flavour.value} did not restore it: {first_line(e)}",
            path=prefix,
            hint="this is a bug if the check passed: please report it with the traceback.",
        ) from e


def _checkpoint_root(tf: Any, obj: Any) -> Any:
    # read(), not restore(): restore() creates a save counter the checkpoint may lack,
    # which assert_existing_objects_matched() would then report as unmatched.
    return obj if isinstance(obj, tf.train.Checkpoint) else tf.train.Checkpoint(obj)


def _restore_tf1(tf: Any, session: Any, prefix: str | Path, skip: frozenset[str]) -> None:
    v1 = tf.compat.v1
    with session.graph.as_default():
        variables = [v for v in v1.global_variables() if _full_name(v) not in skip]
        if not variables:
            return
        # A list, not a dict: the Saver groups a partitioned variable's slices itself.
        saver = v1.train.Saver(var_list=variables if skip else None)
        saver.restore(session, str(prefix))


def _full_name(variable: Any) -> str:
    info = getattr(variable, "_save_slice_info", None)
    return str(variable.op.name if info is None else info.full_name)
