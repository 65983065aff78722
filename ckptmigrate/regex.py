"""Regular expressions written by users (map selectors, ``inspect --filter``, ``check
--ignore``) run in linear time: they are matched against names from checkpoints nobody
vetted, and a backtracking engine lets ``(.*)/(.*)/(.*)/kernel`` against a crafted 6 KB key,
or ``(a+)+b``, run for minutes.

Patterns are checked (and their errors worded) by Python's ``re``, then compiled with RE2
(google-re2), which never backtracks. Two gaps are closed rather than papered over:

- RE2 lacks look-around and back-references; a pattern using them runs on Python's ``re``
  (backtracking, so only the pattern's own author can make it slow) and says so in
  ``engine``.
- RE2's ``\\w``, ``\\d``, ``\\s`` and ``\\b`` are ASCII, Python's are Unicode: a pattern
  with one of them is matched by Python's ``re`` against a name that is not ASCII, so a
  selector matches exactly the names it matches in Python.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Protocol

__all__ = ["RegexMatch", "UserRegex", "compile_user_regex"]

# Escapes whose meaning differs between RE2 (ASCII) and Python (Unicode).
_UNICODE_SENSITIVE = re.compile(r"\\[wWdDsSbB]")


class RegexMatch(Protocol):
    """What both engines' match objects offer."""

    def group(self, group: int | str = ..., /) -> Any: ...

    def groups(self) -> tuple[Any, ...]: ...


class UserRegex:
    """A compiled user pattern; ``engine`` says which engine runs it."""

    __slots__ = ("_python", "_re2", "engine", "groupindex", "groups", "pattern")

    def __init__(self, pattern: str, python: re.Pattern[str], linear: Any | None) -> None:
        self.pattern = pattern
        self.groups = python.groups
        self.groupindex = dict(python.groupindex)
        self._python = python
        self._re2 = linear
        self.engine = "re2" if linear is not None else "python re (look-around/back-reference)"

    def _engine_for(self, text: str) -> Any:
        if self._re2 is None:
            return self._python
        if not text.isascii() and _UNICODE_SENSITIVE.search(self.pattern):
            return self._python
        return self._re2

    def fullmatch(self, text: str) -> RegexMatch | None:
        """The match of the whole of ``text``, or None."""
        match: RegexMatch | None = self._engine_for(text).fullmatch(text)
        return match

    def search(self, text: str) -> RegexMatch | None:
        """The first match anywhere in ``text``, or None."""
        match: RegexMatch | None = self._engine_for(text).search(text)
        return match

    def __repr__(self) -> str:
        return f"UserRegex({self.pattern!r}, engine={self.engine!r})"


def compile_user_regex(pattern: str) -> UserRegex:
    """Compile a user's pattern for linear-time matching where RE2 can express it.

    Raises:
        re.error: the pattern is not a valid (Python) regular expression.
    """
    # Python warns on stderr about syntax it may read differently one day ("possible
    # nested set"): a pattern from a map or the command line is the user's, not ours to
    # lint, and a hostile map must not fill stderr (seen in the fuzz soak).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        python = re.compile(pattern)
    return UserRegex(pattern, python, _re2_compile(pattern))


def _re2_compile(pattern: str) -> Any | None:
    import re2

    options = re2.Options()
    options.log_errors = False  # an unsupported feature is an answer, not an error to log
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None
