"""ckptmigrate: make TensorFlow checkpoints fit the model you want to restore them into.

A tour of the API (each name has its own documentation; `dir(ckptmigrate)` lists them):

- **Read a checkpoint.** `open_checkpoint(path)` gives a `Checkpoint`, read like
  TensorFlow's `tf.train.load_checkpoint`: `keys()`, `shapes()`, `dtypes()`,
  `read(name)` (a numpy array, CRC-checked) and `name in checkpoint`.
  `inspect_checkpoint(path)` gives an `InspectReport`: every variable's name, shape,
  dtype, size and `Role`, without reading values.
- **Will it restore?** `check(checkpoint, target)` compares a checkpoint with a model
  (another checkpoint, a `.meta`, a Keras file, a builder, a live model) and returns a
  `Report` (`.ok`, `.headline`, `.findings`); it never raises on a mismatch.
  `assert_compatible(checkpoint, target)` raises `IncompatibleCheckpointError` instead;
  `restore(model, checkpoint, map=...)` checks, migrates if it must, and restores.
- **Migrate.** `load_map(file_or_bundled_name)` validates a YAML map;
  `plan(checkpoint, map)` says what a conversion would do, and
  `convert(checkpoint, map, output, target=...)` does it; `suggest(checkpoint, target)`
  writes the map for you (`.to_yaml()`); `rewrite_checkpoint(checkpoint, output)` copies
  one as it is.
- **Lower level.** `BundleReader` and `BundleWriter` read and write TensorFlow's
  checkpoint format tensor by tensor.
- **Errors.** Everything a user can cause raises a `CkptMigrateError` subclass whose
  `str()` is one paragraph: what happened, where, and a hint.

Importing this package imports neither TensorFlow nor numpy; only the paths that need
them do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = [
    "BundleReader",
    "BundleWriter",
    "Checkpoint",
    "CheckpointNotFoundError",
    "ChecksumMismatchError",
    "CkptMigrateError",
    "CorruptCheckpointError",
    "IncompatibleCheckpointError",
    "InspectReport",
    "MapError",
    "OutputError",
    "Report",
    "RestoreError",
    "Role",
    "TargetMismatchError",
    "UnsupportedCheckpointError",
    "VerificationError",
    "__version__",
    "assert_compatible",
    "check",
    "convert",
    "inspect_checkpoint",
    "load_map",
    "open_checkpoint",
    "plan",
    "restore",
    "rewrite_checkpoint",
    "suggest",
]

if TYPE_CHECKING:
    from .checker import IncompatibleCheckpointError, assert_compatible, check
    from .checkpoint import Checkpoint, open_checkpoint
    from .compare import Report
    from .conversion import convert, plan
    from .errors import (
        CheckpointNotFoundError,
        ChecksumMismatchError,
        CkptMigrateError,
        CorruptCheckpointError,
        OutputError,
        UnsupportedCheckpointError,
    )
    from .formats.bundle_reader import BundleReader
    from .formats.bundle_writer import BundleWriter
    from .inspection import InspectReport, inspect_checkpoint
    from .mapping.located import MapError
    from .mapping.retarget import TargetMismatchError
    from .mapping.schema import load_map
    from .names import Role
    from .restoring import RestoreError, restore
    from .rewrite import rewrite_checkpoint
    from .suggestion import suggest
    from .verification import VerificationError

_LAZY = {
    "Checkpoint": "checkpoint",
    "open_checkpoint": "checkpoint",
    "CheckpointNotFoundError": "errors",
    "ChecksumMismatchError": "errors",
    "CkptMigrateError": "errors",
    "CorruptCheckpointError": "errors",
    "OutputError": "errors",
    "UnsupportedCheckpointError": "errors",
    "BundleReader": "formats.bundle_reader",
    "BundleWriter": "formats.bundle_writer",
    "InspectReport": "inspection",
    "inspect_checkpoint": "inspection",
    "Role": "names",
    "rewrite_checkpoint": "rewrite",
    "suggest": "suggestion",
    "restore": "restoring",
    "RestoreError": "restoring",
    "check": "checker",
    "assert_compatible": "checker",
    "IncompatibleCheckpointError": "checker",
    "Report": "compare",
    "convert": "conversion",
    "plan": "conversion",
    "load_map": "mapping.schema",
    "MapError": "mapping.located",
    "TargetMismatchError": "mapping.retarget",
    "VerificationError": "verification",
}


def __getattr__(name: str) -> Any:
    # Lazy re-exports keep `import ckptmigrate` (and so `ckptmigrate --help`) cheap.
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value  # resolved once; tools reading __dict__ (pdoc) see it
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # The public API, resolved or not (a module's default dir() shows its __dict__: the
    # lazy names only once used, and this module's own imports).
    return sorted({*__all__, *(n for n in globals() if n.startswith("__"))})
