"""What kind of target the user named: the one place ``check``, ``convert --target``,
``suggest`` and ``restore`` decide it. Detection only looks (suffixes, files present); it
ends in a kind for every input, and the loaders say what is wrong with a bad one."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from ..errors import CkptMigrateError
from ..formats.locate import is_safetensors_path
from ..formats.remote import is_url
from .graph_text import GRAPH_TEXT_SUFFIXES
from .live import is_builder_spec
from .spec import SPEC_SUFFIXES

__all__ = ["DetectedTarget", "TargetKind", "detect_target"]

_KERAS_H5_SUFFIXES = (".h5", ".hdf5")


class TargetKind(Enum):
    """The kinds of target, each with its own loader."""

    LIVE = "a live object (Keras model, tf.Module, tf.train.Checkpoint, tf.Graph)"
    BUILDER = "a builder (pkg.module:function or file.py:function)"
    SPEC = "a spec file (.yaml/.json)"
    METAGRAPH = "a TF1 .meta graph"
    GRAPH_TEXT = "a TF1 graph.pbtxt (text GraphDef)"
    KERAS_ARCHIVE = "a Keras .keras file"
    KERAS_H5 = "a Keras 3 .weights.h5 or a legacy Keras .h5 (full model or weights)"
    SAVED_MODEL = "a SavedModel directory"
    CHECKPOINT = "a checkpoint (directory, prefix, .index/.data file, or URL)"


@dataclass(frozen=True)
class DetectedTarget:
    """A target and its kind; ``path`` for the kinds read from a local file or directory."""

    kind: TargetKind
    given: Any
    path: Path | None = None

    @property
    def text(self) -> str:
        """The target as the user wrote it (a live object's type name)."""
        if self.kind is TargetKind.LIVE:
            return f"{type(self.given).__module__}.{type(self.given).__qualname__}"
        return str(self.given)


def detect_target(target: str | Path | Any) -> DetectedTarget:
    """The kind of ``target``.

    Raises:
        CkptMigrateError: a URL to something other than a checkpoint.
    """
    if not isinstance(target, str | Path):
        return DetectedTarget(TargetKind.LIVE, target)
    text = str(target)
    if isinstance(target, str) and is_url(target):  # Path() would fold the '//' of s3://
        foreign = (".meta", ".keras", *_KERAS_H5_SUFFIXES, *SPEC_SUFFIXES, *GRAPH_TEXT_SUFFIXES)
        if text.lower().endswith(foreign):
            raise CkptMigrateError(
                "only checkpoints (and SavedModels' variables) are read from URLs as targets",
                path=text,
                hint="download the file and pass its local path.",
            )
        return DetectedTarget(TargetKind.CHECKPOINT, target)
    path = Path(text).expanduser()
    if not path.exists() and is_builder_spec(text):
        return DetectedTarget(TargetKind.BUILDER, target)
    name = path.name.lower()
    if path.is_file():
        if is_safetensors_path(path):  # before specs: a sharded model's index is .json
            return DetectedTarget(TargetKind.CHECKPOINT, target, path)
        if name.endswith(SPEC_SUFFIXES):
            return DetectedTarget(TargetKind.SPEC, target, path)
        if name.endswith(".meta"):
            return DetectedTarget(TargetKind.METAGRAPH, target, path)
        if name.endswith(GRAPH_TEXT_SUFFIXES):
            return DetectedTarget(TargetKind.GRAPH_TEXT, target, path)
        if name.endswith(".keras"):
            return DetectedTarget(TargetKind.KERAS_ARCHIVE, target, path)
        if name.endswith(_KERAS_H5_SUFFIXES):
            return DetectedTarget(TargetKind.KERAS_H5, target, path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return DetectedTarget(TargetKind.SAVED_MODEL, target, path)
    return DetectedTarget(TargetKind.CHECKPOINT, target, path)
