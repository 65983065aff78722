"""The exception hierarchy. Every failure a user can cause is one of these.

The CLI maps any :class:`CkptMigrateError` to exit code 2 and prints ``str(error)``,
which is always one paragraph: what happened, where (file, variable), and a hint.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Library messages name an option by a token, ``[[overwrite]]``, never by a CLI flag: a
# Python caller reads ``overwrite=True`` (``str(error)``), the command line reads its own
# flag (``error.render(flags)``; cli.py owns the flags).
API_SPELLING: Mapping[str, str] = {
    "overwrite": "overwrite=True",
    "map": "a map (map=...)",
    "target": "target=...",
    "fill_missing_from_target": "fill_missing_from_target=True",
    "format_keras": 'format="keras"',
    "verify": "verify=True",
    "check_crc": "check_crc=True",
    "strict": "strict=True",
    "require_all": "require_all=True",
    "min_match": "min_match",
    "values": "values=True",
    "ignore": "ignore",
    "params": "params=",
    "max_shard_size": "max_shard_size=",
    "num_shards": "num_shards=",
    "workers": "workers=",
    "max_memory": "max_memory=",
    "dask": "dask=",
    "check_command": "ckptmigrate.check(checkpoint, target)",
    "check_map_command": "ckptmigrate.check(checkpoint, target, map=...)",
    "suggest_command": "ckptmigrate.suggest(checkpoint, target)",
}
_OPTION_TOKEN = re.compile(r"\[\[([a-z_]+)\]\]")
# user:password@ in a URL (an S3-compatible endpoint, a store URL), wherever it appears.
_URL_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")


def _rebuilt(cls: type[CkptMigrateError], state: dict[str, Any]) -> CkptMigrateError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    return error


def redact_credentials(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``: errors quote
    store clients' messages, and reports record command lines; neither may leak them."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def spell_options(text: str, spelling: Mapping[str, str]) -> str:
    """``text`` with every ``[[option]]`` token spelled as ``spelling`` says (an unknown
    name is left as written)."""
    return _OPTION_TOKEN.sub(lambda m: spelling.get(m[1], m[0]), text)


class CkptMigrateError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        variable: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.variable = variable
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return self.render(API_SPELLING)

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised on a Dask worker, an error reaches the caller pickled: rebuilt from its
        # fields (message, path, hint...), not by calling __init__ again, whose arguments
        # differ between subclasses; so the CLI still spells its options as flags.
        return (_rebuilt, (type(self), self.__dict__))

    def render(self, spelling: Mapping[str, str]) -> str:
        """The one-paragraph message, with options spelled as ``spelling`` says (the
        Python API's keywords for ``str()``, the CLI's flags on the command line)."""
        parts = []
        where = self.path or ""
        if self.variable is not None:
            where = (
                f"{where} (variable {self.variable!r})" if where else f"variable {self.variable!r}"
            )
        parts.append(f"{where}: {self.message}" if where else self.message)
        if self.hint:
            parts.append(f"Hint: {self.hint}")
        return redact_credentials(spell_options(" ".join(parts), spelling))


class CheckpointNotFoundError(CkptMigrateError):
    """The path does not lead to a checkpoint (missing files, wrong kind of file)."""


class CorruptCheckpointError(CkptMigrateError):
    """The files exist but their content is not a valid checkpoint."""


class ChecksumMismatchError(CorruptCheckpointError):
    """A tensor's bytes do not match the CRC32C recorded in the index."""


class UnsupportedCheckpointError(CkptMigrateError):
    """A valid checkpoint using a feature this version cannot handle."""


def first_line(e: BaseException) -> str:
    """``Type: first line of the message``: TensorFlow's errors run to pages of context."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


class OutputError(CkptMigrateError):
    """The output location is unusable (exists, inside the source, not writable, disk full)."""

    @classmethod
    def from_os_error(cls, e: OSError, path: object) -> OutputError:
        """A failed write, worded for the user (a full disk says so)."""
        if e.errno == errno.ENOSPC:
            return cls(
                "the disk is full; nothing was written to the destination",
                path=str(path),
                hint="free space or choose another output location.",
            )
        return cls(f"cannot write: {e.strerror or e}", path=str(path))


class TensorFlowRequiredError(CkptMigrateError):
    """A code path needs TensorFlow and it could not be imported."""


class InterruptedAfterWriting(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) after the output was published, e.g. during --verify: the
    output is complete, only what came after it was cut short."""

    def __init__(self, output: object, during: str) -> None:
        super().__init__(f"{output} was written; {during} was interrupted")
        self.output = output
        self.during = during


class InterruptedLeavingChanges(InterruptedAfterWriting):
    """Ctrl-C (or SIGTERM) that changed the destination without publishing the output:
    objects a clean-up could not delete, an old output deleted to be replaced. Reported
    as InterruptedAfterWriting is (``interrupted: <message>``), never as "nothing was
    written"."""

    def __init__(self, output: object, message: str) -> None:
        KeyboardInterrupt.__init__(self, f"{output}: {message}")
        self.output = output
        self.during = message
