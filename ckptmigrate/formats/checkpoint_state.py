"""The `checkpoint` state file: a text-format CheckpointState proto naming the latest
checkpoint prefix (``model_checkpoint_path``) and the ones kept (``all_model_checkpoint_paths``).
Relative paths are relative to the directory holding the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

STATE_FILENAME = "checkpoint"

_FIELD = re.compile(r'^\s*(\w+)\s*:\s*"((?:[^"\\]|\\.)*)"\s*$')


@dataclass(frozen=True, slots=True)
class CheckpointState:
    latest: str | None
    all_paths: tuple[str, ...]


def _unescape(text: str) -> str:
    # Text-format strings use C escapes (\", \\, \n, octal \ooo for raw bytes).
    raw = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    return raw.encode("latin-1").decode("utf-8", "surrogateescape")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def parse_state(text: str) -> CheckpointState | None:
    """The state file's paths, or None if the text has no ``model_checkpoint_path``."""
    latest = None
    all_paths: list[str] = []
    for line in text.splitlines():
        match = _FIELD.match(line)
        if not match:
            continue
        name, value = match.group(1), _unescape(match.group(2))
        if name == "model_checkpoint_path":
            latest = value
        elif name == "all_model_checkpoint_paths":
            all_paths.append(value)
    if latest is None:
        return None
    return CheckpointState(latest, tuple(all_paths))


def looks_like_state_file(head: bytes) -> bool:
    return head.lstrip().startswith(b"model_checkpoint_path")


def render_state(prefix_name: str) -> str:
    quoted = _escape(prefix_name)
    return f'model_checkpoint_path: "{quoted}"\nall_model_checkpoint_paths: "{quoted}"\n'


def resolve_state_path(state_dir: Path, recorded: str) -> Path:
    path = Path(recorded)
    return path if path.is_absolute() else state_dir / path
