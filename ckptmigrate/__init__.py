"""ckptmigrate: make TensorFlow checkpoints fit the model you want to restore them into.

Importing this package does not import TensorFlow; only the paths that need it do.
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
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
