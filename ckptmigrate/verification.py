"""``convert --verify``: restore the output into the target with TensorFlow itself, in a
fresh process, and compare every restored value with what the plan says it should be.

The child builds the target as the user would (a builder, a ``.keras`` file, a ``.meta``
graph), restores the output the way its kind restores (``tf.compat.v1.train.Saver``,
``tf.train.Checkpoint(...).restore`` with every object matched, Keras ``load_weights``),
then has TensorFlow or Keras save what it restored. The parent reads that back and
compares value by value, so a wrong key, a wrong object-graph edge or a wrong byte all show.
A live object (Python API) cannot cross a process boundary: it is verified in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import (
    API_SPELLING,
    CkptMigrateError,
    InterruptedAfterWriting,
    first_line,
    spell_options,
)
from .isolated import python_command
from .output_format import OutputFormat
from .progress import Progress

CHECKPOINT = OutputFormat.CHECKPOINT
KERAS = OutputFormat.KERAS


class VerificationError(CkptMigrateError):
    """The output was written, but verifying it could not even start."""


@dataclass(frozen=True)
class Verification:
    """What the restore into the target showed."""

    ok: bool
    compared: int  # values compared with the plan's expectation
    mismatched: tuple[str, ...] = ()  # keys whose restored value differs
    not_restored: tuple[str, ...] = ()  # keys the target did not restore
    error: str | None = None  # the restore itself failed
    how: str = ""  # what restored it
    details: dict[str, str] = field(default_factory=dict)  # key -> how it differs

    @property
    def verdict(self) -> str:
        """One line: ok, or what failed (options spelled as the Python API's keywords)."""
        return self.render(API_SPELLING)

    def render(self, spelling: Mapping[str, str]) -> str:
        """The verdict with options spelled as ``spelling`` says (the CLI's flags)."""
        if self.error is not None:
            return spell_options(f"verify FAILED: the restore failed: {self.error}", spelling)
        if not self.ok:
            bad = [*self.mismatched, *self.not_restored]
            shown = "; ".join(f"{k} ({self.details.get(k, 'not restored')})" for k in bad[:10])
            return (
                f"verify FAILED: {len(bad)} of {self.compared} values differ from the "
                f"plan after {self.how}: {shown}"
            )
        values = "the value is" if self.compared == 1 else f"all {self.compared} values are"
        return f"verify ok: {self.how}; {values} as planned"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "compared": self.compared,
            "mismatched": list(self.mismatched),
            "not_restored": list(self.not_restored),
            "error": self.error,
            "how": self.how,
        }


@dataclass(frozen=True)
class RestoreRequest:
    """Everything the child needs, as JSON: where the target and the output are."""

    target: str  # a path or builder spec, as the user gave it
    output: str  # the written checkpoint prefix (or Keras file)
    root: str | None
    format: str
    dump: str  # where the child saves what it restored

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def verify(
    output: Path,
    target: Any,
    rebuild: str | None,
    root: str | None,
    expected: Mapping[str, Callable[[], Any]],
    *,
    format: OutputFormat = CHECKPOINT,
    progress: Progress | None = None,
) -> Verification:
    """Restore ``output`` into ``target`` and compare every key of ``expected`` (a
    function producing the planned value, called one at a time to bound memory)."""
    try:
        return _verify(
            output, target, rebuild, root, expected, format=format, progress=progress or Progress()
        )
    except KeyboardInterrupt:  # the output is complete: say so, not "nothing was written"
        raise InterruptedAfterWriting(output, "its verification") from None


def _verify(
    output: Path,
    target: Any,
    rebuild: str | None,
    root: str | None,
    expected: Mapping[str, Callable[[], Any]],
    *,
    format: str,
    progress: Progress,
) -> Verification:
    # TensorFlow (or Keras) restores in one call: no totals until the values are compared.
    restorer = "Keras loads" if format == KERAS else "TensorFlow restores"
    progress.begin(f"verifying: {restorer} the output")
    with tempfile.TemporaryDirectory(prefix="ckptmigrate-verify-") as tmp:
        dump = str(Path(tmp) / ("restored.weights.h5" if format == KERAS else "restored"))
        request = RestoreRequest(rebuild or "", str(output), root, format, dump)
        if rebuild is None and target is not None:
            how, error = _in_process(target, request)
        else:
            how, error = _in_child(request)
        if error is not None:
            return Verification(False, 0, error=error, how=how)
        return _compare(Path(dump), expected, how, format, progress)


def _in_process(target: Any, request: RestoreRequest) -> tuple[str, str | None]:
    try:
        return restore_and_save(_fresh_copy(target), request), None
    except CkptMigrateError as e:
        return "a restore in this process", e.message
    except Exception as e:  # the restore failing is the verdict, not a crash
        return "a restore in this process", first_line(e)


def _fresh_copy(target: Any) -> Any:
    """A Keras model's twin, so verifying doesn't overwrite the caller's own weights (other
    objects can't be copied: the restore goes into them)."""
    from ._tf import import_keras

    keras = import_keras()
    if isinstance(target, keras.Model):
        try:
            twin = keras.models.clone_model(target)
        except Exception:  # subclassed models without get_config: restore into the original
            return target
        if not twin.built:
            return target
        return twin
    return target


def _in_child(request: RestoreRequest) -> tuple[str, str | None]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    process = subprocess.run(
        python_command("ckptmigrate.verification", request.to_json()),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        tail = (process.stderr.strip().splitlines() or ["(no output)"])[-1]
        return "a restore in a subprocess", tail
    answer = json.loads(lines[-1])
    if answer.get("trouble"):
        raise VerificationError(
            f"the output {request.output} was written, but the target could not be built "
            f"again to verify it: {answer['trouble']}",
            path=request.target,
            hint="check that the target loads on its own (a builder's imports, a .keras "
            "file's custom objects), or convert without [[verify]].",
        )
    return str(answer["how"]), answer.get("error")


def _compare(
    dump: Path,
    expected: Mapping[str, Callable[[], Any]],
    how: str,
    format: str,
    progress: Progress,
) -> Verification:
    restored = _restored_reader(dump, format)
    try:
        return compare_values(restored, expected, how, progress)
    finally:
        restored(None)


def compare_values(
    restored: Callable[[str], Any],
    expected: Mapping[str, Callable[[], Any]],
    how: str,
    progress: Progress | None = None,
) -> Verification:
    """Compare what ``restored(key)`` gives (None: not there) with each planned value
    (``expected[key]()``, computed one at a time to bound memory), bit for bit."""
    progress = progress or Progress()
    mismatched: list[str] = []
    missing: list[str] = []
    details: dict[str, str] = {}
    progress.begin("verifying: comparing values", len(expected), unit="values")
    for key, planned in expected.items():
        value = restored(key)
        if value is None:
            missing.append(key)
        else:
            difference = _difference(value, planned())
            if difference is not None:
                mismatched.append(key)
                details[key] = difference
        progress.advance()
    ok = not mismatched and not missing
    return Verification(ok, len(expected), tuple(mismatched), tuple(missing), None, how, details)


class _ReadBack(Protocol):
    def variable_keys(self) -> list[str]: ...
    def read(self, key: str) -> Any: ...
    def close(self) -> None: ...


def compare_read_back(
    reader: _ReadBack,
    expected: Mapping[str, Callable[[], Any]],
    how: str,
    progress: Progress | None = None,
) -> Verification:
    """:func:`compare_values` over what one of this package's readers reads back from an
    output (where the format's reference reader is not installed); the reader is closed."""
    try:
        keys = set(reader.variable_keys())
        return compare_values(
            lambda key: reader.read(key) if key in keys else None, expected, how, progress
        )
    finally:
        reader.close()


def _restored_reader(dump: Path, format: str) -> Callable[[str | None], Any]:
    """key -> restored value (None when absent); called with None to close."""
    if format == KERAS:
        import h5py

        from .formats.keras_weights import read_dataset

        handle = h5py.File(dump, "r")

        def read_h5(key: str | None) -> Any:
            if key is None:
                handle.close()
                return None
            return read_dataset(handle[key]) if key in handle else None

        return read_h5
    from .checkpoint import open_checkpoint

    checkpoint = open_checkpoint(dump)
    keys = set(checkpoint.reader.variable_keys())

    def read(key: str | None) -> Any:
        if key is None:
            checkpoint.close()
            return None
        return checkpoint.reader.read(key) if key in keys else None

    return read


def _difference(restored: Any, planned: Any) -> str | None:
    import numpy as np

    a, b = np.asarray(restored), np.asarray(planned)
    if a.shape != b.shape:
        return f"shape {list(a.shape)}, planned {list(b.shape)}"
    if object in (a.dtype, b.dtype):
        same = [bytes(x) for x in a.reshape(-1)] == [bytes(x) for x in b.reshape(-1)]
        return None if same else "strings differ"
    if a.dtype != b.dtype:
        return f"dtype {a.dtype}, planned {b.dtype}"
    if a.tobytes() == b.tobytes():
        return None
    # Complex values are compared as complex: their imaginary parts count too.
    wide = np.complex128 if np.iscomplexobj(a) or np.iscomplexobj(b) else np.float64
    diff = np.abs(a.astype(wide) - b.astype(wide))
    return f"max abs difference {float(np.nanmax(diff)) if diff.size else 0.0:.3g}"


# -- the child -------------------------------------------------------------------------


def restore_and_save(target: Any, request: RestoreRequest) -> str:
    """Restore ``request.output`` into ``target`` as its kind restores, then save what was
    restored to ``request.dump`` with TensorFlow/Keras. Returns how it restored."""
    from ._tf import import_tensorflow
    from .targets.model import saver_root

    if target is not None and request.format == KERAS:  # any backend, no TensorFlow
        target.load_weights(request.output)
        target.save_weights(request.dump)
        return "loaded with Keras model.load_weights into the target model"
    tf = import_tensorflow()
    if target is None:
        return _read_back(tf, request)
    if isinstance(target, tf.Graph):
        v1 = tf.compat.v1
        with target.as_default(), v1.Session(graph=target) as session:
            saver = v1.train.Saver()
            saver.restore(session, request.output)
            saver.save(session, request.dump, write_meta_graph=False)
        return "restored with tf.compat.v1.train.Saver into the target graph"
    root = saver_root(target, request.root)
    root.restore(request.output).assert_existing_objects_matched()
    root.write(request.dump)
    spelled = (
        f"tf.train.Checkpoint({request.root}=model)" if request.root else "tf.train.Checkpoint"
    )
    return f"restored with {spelled}.restore(...).assert_existing_objects_matched()"


def _read_back(tf: Any, request: RestoreRequest) -> str:
    """No model to restore into: TensorFlow reads every value and saves it again."""
    reader = tf.train.load_checkpoint(request.output)
    names = sorted(reader.get_variable_to_shape_map())
    tf.raw_ops.SaveV2(
        prefix=request.dump,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(reader.get_tensor(n)) for n in names],
    )
    return "read back with tf.train.load_checkpoint (no model to restore into)"


def _child(argument: str) -> int:
    from .targets.model import instantiate

    request = RestoreRequest(**json.loads(argument))
    how = "a restore in a subprocess"
    try:
        live = instantiate(request.target) if request.target else None
    except CkptMigrateError as e:  # not the output's fault: the target can't be rebuilt
        print(json.dumps({"how": how, "trouble": e.message}))
        return 0
    try:
        how = restore_and_save(live, request)
    except CkptMigrateError as e:
        print(json.dumps({"how": how, "error": e.message}))
        return 0
    except Exception as e:  # the restore failing is the verdict, not a crash
        print(json.dumps({"how": how, "error": first_line(e)}))
        return 0
    print(json.dumps({"how": how}))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
