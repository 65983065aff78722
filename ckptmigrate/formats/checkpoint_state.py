"""The `checkpoint` state file: a text-format CheckpointState proto naming the latest
checkpoint prefix (``model_checkpoint_path``) and the ones kept (``all_model_checkpoint_paths``,
with their ``all_model_checkpoint_timestamps``). Relative paths are relative to the directory
holding the file.

TensorFlow reads the file as UTF-8 and parses it with protobuf's ``text_format.Merge``, and
writes it with ``text_format.MessageToString``; so does this module, with the message declared
from checkpoint_state.proto in a private descriptor pool (no TensorFlow import). Parsing
therefore accepts exactly what TensorFlow accepts: C escapes (octal ``\\NNN``, ``\\xHH``,
``\\n``, ``\\"``, ``\\\\`` ...) spelling UTF-8 bytes, raw UTF-8, repeated fields (the last
``model_checkpoint_path`` wins), comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .messages import DOUBLE, OPTIONAL, REPEATED, STRING, ProtoFile

STATE_FILENAME = "checkpoint"

# A state file lists every checkpoint kept, ~100 bytes each: 1 MiB is 10,000 of them.
# protobuf's Python parser takes up to 2.5 s per MiB, so a larger file is refused rather
# than parsed for minutes.
MAX_STATE_BYTES = 1 << 20
# protobuf's unescaping (text_encoding.CUnescape) scans a run of n backslashes n times over
# (about 15 ms per million steps): the runs' total squared length is bounded, so a hostile
# 32 KiB file cannot cost TensorFlow's 14 s. Names TensorFlow writes have runs of two.
_LONG_RUN = 16
_MAX_RUN_COST = 10_000_000
_BACKSLASH_RUN = re.compile(rb"\\{%d,}" % (_LONG_RUN + 1))

# tensorflow/core/protobuf/checkpoint_state.proto (proto3), in the package TensorFlow uses
# so that protobuf's error messages name the type as TensorFlow's do.
_STATE_FILE = ProtoFile(
    "ckptmigrate_checkpoint_state.proto",
    "tensorflow",
    "proto3",
    {
        "CheckpointState": [
            ("model_checkpoint_path", 1, STRING, OPTIONAL, None),
            ("all_model_checkpoint_paths", 2, STRING, REPEATED, None),
            ("all_model_checkpoint_timestamps", 3, DOUBLE, REPEATED, None),
            ("last_preserved_timestamp", 4, DOUBLE, OPTIONAL, None),
        ]
    },
)


class StateFileError(ValueError):
    """The state file is not a CheckpointState TensorFlow would read. Callers translate
    this into a user-facing error with the path."""


@dataclass(frozen=True, slots=True)
class CheckpointState:
    latest: str | None
    all_paths: tuple[str, ...]
    all_timestamps: tuple[float, ...] = ()
    last_preserved_timestamp: float = 0.0


def _message_class() -> Any:
    return _STATE_FILE.message_class("CheckpointState")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def parse_state(data: bytes) -> CheckpointState | None:
    """The state file's paths, or None if it sets no (or an empty) ``model_checkpoint_path``.

    Raises:
        StateFileError: the bytes are not UTF-8, not a text-format CheckpointState (a syntax
            error, an unknown field, a bad escape, an escape spelling invalid UTF-8), or a
            path holds a NUL character, which no file name can.
    """
    from google.protobuf import text_format

    if len(data) > MAX_STATE_BYTES:
        raise StateFileError(
            f"it is larger than a state file of 10,000 checkpoints ({MAX_STATE_BYTES:,} bytes)"
        )
    runs = [m.end() - m.start() for m in _BACKSLASH_RUN.finditer(data)]
    if sum(n * n for n in runs) > _MAX_RUN_COST:
        raise StateFileError(
            f"it holds a run of {max(runs):,} backslashes, which no checkpoint name has "
            "(TensorFlow's parser takes time quadratic in the run's length)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StateFileError(
            f"the file is not UTF-8 (byte {data[e.start]:#04x} at offset {e.start}); "
            "TensorFlow cannot read it either"
        ) from e
    state = _message_class()()
    try:
        text_format.Merge(text, state)
    except text_format.ParseError as e:
        raise StateFileError(
            f"not a text-format CheckpointState ({_one_line(str(e))}); TensorFlow ignores "
            "such a file (tf.train.latest_checkpoint returns None)"
        ) from e
    latest = str(state.model_checkpoint_path)
    all_paths = tuple(str(p) for p in state.all_model_checkpoint_paths)
    for field, value in [("model_checkpoint_path", latest)] + [
        ("all_model_checkpoint_paths", p) for p in all_paths
    ]:
        if "\0" in value:
            raise StateFileError(
                f"its {field} {value!r} holds a NUL character, which no file name can"
            )
    if not latest:
        return None
    return CheckpointState(
        latest,
        all_paths,
        tuple(float(t) for t in state.all_model_checkpoint_timestamps),
        float(state.last_preserved_timestamp),
    )


def looks_like_state_file(head: bytes) -> bool:
    return head.lstrip().startswith(b"model_checkpoint_path")


def render_state(prefix_name: str) -> str:
    """The state file naming ``prefix_name`` as the latest and only checkpoint, written as
    TensorFlow writes it (``text_format.MessageToString`` of a CheckpointState)."""
    from google.protobuf import text_format

    state = _message_class()()
    state.model_checkpoint_path = prefix_name
    state.all_model_checkpoint_paths.append(prefix_name)
    return str(text_format.MessageToString(state))


def resolve_state_path(state_dir: Path, recorded: str) -> Path:
    path = Path(recorded)
    return path if path.is_absolute() else state_dir / path
